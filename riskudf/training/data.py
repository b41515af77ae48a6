"""Labelled training data from a Delta table, and the seeded split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.model_selection import train_test_split

from riskudf.config import RedactionConf
from riskudf.documents.redact import Redactor, known_columns_in
from riskudf.documents.windows import serialise_row
from riskudf.lakehouse.delta import MissingTableError, SchemaError


class LabelError(ValueError):
    """The label column holds values other than 0 and 1, or a single class."""


@dataclass(frozen=True)
class TrainingData:
    table: str
    version: int | None
    frame: pd.DataFrame  # columns: text, label, and the kept columns present
    redactions: dict[str, int] = field(default_factory=dict)  # per kind, over the rows read


def _is_path(table: str) -> bool:
    return "/" in table or table.startswith(("file:", "s3", "abfs", "gs:", "hdfs:"))


def read_training_table(
    spark: SparkSession, table: str, version: int | None = None
) -> tuple[DataFrame, int | None]:
    """A Delta table by name or path, pinned at ``version`` (default: its current version)."""
    from delta.tables import DeltaTable

    if _is_path(table):
        if not DeltaTable.isDeltaTable(spark, table):
            raise MissingTableError(f"no Delta table at {table}")
        delta = DeltaTable.forPath(spark, table)
    else:
        if not spark.catalog.tableExists(table):
            raise MissingTableError(f"table {table} does not exist")
        delta = DeltaTable.forName(spark, table)
    if version is None:
        version = int(delta.history(1).select("version").first()["version"])  # type: ignore[index]
    reader = spark.read.format("delta").option("versionAsOf", version)
    frame = reader.load(table) if _is_path(table) else reader.table(table)
    return frame, version


# Long on purpose: reads the table and checks it; each check raises its own error.
def load_labelled(
    spark: SparkSession,
    table: str,
    *,
    text_col: str | None,
    label_col: str,
    text_from: Sequence[str] = (),
    id_col: str | None = None,
    date_col: str | None = None,
    classes: Sequence[str] = (),
    max_rows: int = 0,
    seed: int = 42,
    keep: Sequence[str] = (),
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    redaction: RedactionConf | None = None,
    reference_pd_col: str | None = None,
    version: int | None = None,
) -> TrainingData:
    """Id, text and 0/1 label of a training table, on the driver (training sets fit in memory).

    Columns named in ``keep`` that the table has come along as strings (slice and segment
    columns); ``date_col`` comes along with its own type, for a time split. Without a
    ``text_col``, the text is the ``text_from`` columns serialised as ``field: value; ...``.
    With ``classes`` (grades), the label is the index of the label column's value among them.
    ``reference_pd_col`` comes along as double column ``reference_pd``.
    Feature columns come along as double (``numeric``) and string (``categorical``).
    The text goes through ``redaction`` (riskudf.documents.redact, the step scoring uses), with
    the known-value columns the table has.
    """
    df, version = read_training_table(spark, table, version)
    required = [col for col in (id_col, text_col, label_col, *text_from) if col]
    missing = [col for col in required if col not in df.columns]
    if missing:
        raise SchemaError(f"table {table}: missing columns {missing}")
    features = [*numeric, *categorical]
    missing = [col for col in features if col not in df.columns]
    if missing:
        raise SchemaError(f"table {table}: missing feature columns {missing}")
    if date_col and date_col not in df.columns:
        raise SchemaError(f"table {table}: missing date column {date_col}")
    if reference_pd_col and reference_pd_col not in df.columns:
        raise SchemaError(f"table {table}: missing reference PD column {reference_pd_col}")
    kept = [
        c
        for c in dict.fromkeys(keep)
        if c in df.columns and c not in ("id", "text", "label", date_col, *features)
    ]
    known = known_columns_in(redaction, df.columns) if redaction else {}
    known_cols = sorted({c for cols in known.values() for c in cols})
    label = F.col(label_col).cast("int")
    if classes:
        names = F.array(*[F.lit(name) for name in classes])
        label = (F.array_position(names, F.col(label_col).cast("string")) - 1).cast("int")
    selected = df.select(
        *([F.col(id_col).cast("string").alias("id")] if id_col else []),
        *(
            [F.coalesce(F.col(text_col).cast("string"), F.lit("")).alias("text")]
            if text_col
            else [F.col(c).cast("string").alias(f"_text_{i}") for i, c in enumerate(text_from)]
        ),
        label.alias("label"),
        *[F.col(c).cast("string") for c in kept],
        *[F.col(c).cast("double") for c in numeric],
        *[F.col(c).cast("string") for c in categorical],
        *([F.col(date_col)] if date_col else []),
        *(
            [F.col(reference_pd_col).cast("double").alias("reference_pd")]
            if reference_pd_col
            else []
        ),
        *[F.col(c).cast("string").alias(f"_known_{c}") for c in known_cols],
    )
    valid = list(range(len(classes))) if classes else [0, 1]
    bad = selected.where(~F.col("label").isin(*valid) | F.col("label").isNull()).count()
    if bad:
        allowed = list(classes) if classes else "0 or 1"
        raise LabelError(f"table {table}: column {label_col} has {bad} rows that are not {allowed}")
    if max_rows:
        total = selected.count()
        if total > max_rows:
            selected = selected.sample(fraction=min(1.0, 1.2 * max_rows / total), seed=seed)
            selected = selected.orderBy(F.rand(seed)).limit(max_rows)
    frame: pd.DataFrame = selected.toPandas()
    if not text_col:
        parts = [f"_text_{i}" for i in range(len(text_from))]
        values = frame[parts].rename(columns=dict(zip(parts, text_from, strict=True)))
        frame = frame.drop(columns=parts).assign(
            text=[serialise_row(row, text_from) for row in values.to_dict("records")]
        )
    redactions: dict[str, int] = {}
    if redaction is not None:
        redactor = Redactor.of(redaction)
        values = frame[[f"_known_{c}" for c in known_cols]].set_axis(known_cols, axis=1)
        texts, counts = redactor.redact_texts(frame["text"].tolist(), values, known)
        frame = frame.drop(columns=[f"_known_{c}" for c in known_cols]).assign(text=texts)
        totals = [sum(column) for column in zip(*counts, strict=True)] if counts else []
        redactions = dict(zip(redactor.kinds, totals, strict=False))
    if frame["label"].nunique() < 2:
        raise LabelError(f"table {table}: column {label_col} needs at least two classes")
    return TrainingData(table=table, version=version, frame=frame, redactions=redactions)


@dataclass(frozen=True)
class Splits:
    """Train (fits the weights), validation (early stopping: chooses the epoch), calibration
    (fits the calibration map on data that chose nothing) and test (held out, reported)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    dropped_in_gaps: int = 0  # time split: rows dated inside a gap, in no split

    def parts(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation}
        if not self.calibration.empty:
            named["calibration"] = self.calibration
        return {**named, "test": self.test}


def _check_classes(splits: Splits, how: str) -> Splits:
    """Every split holds every class of the data (AUC needs them)."""
    parts = splits.parts()
    classes = set().union(*(set(part["label"]) for part in parts.values()))
    for name, part in parts.items():
        lacking = sorted(classes - set(part["label"]))
        if lacking or len(classes) < 2:
            raise LabelError(
                f"{how} split: the {name} split ({len(part)} rows) lacks label classes {lacking}"
            )
    return splits


def split_stratified(
    frame: pd.DataFrame,
    *,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    calibration_fraction: float = 0.0,
    group_col: str = "id",
) -> Splits:
    """Train, validation, calibration and test, stratified on the label and seeded, by group:
    every row of one obligor (``group_col``; rows of several observation dates) lands in one
    split. A group is stratified on its worst label. Without ``group_col`` every row is a group.
    """
    if group_col in frame:
        groups = frame.groupby(group_col, sort=False)["label"].max().reset_index()
    else:
        groups = frame[["label"]].rename_axis("_row").reset_index()
        group_col = "_row"
        frame = frame.rename_axis("_row").reset_index()
    fractions = {"test": test_fraction, "calibration": calibration_fraction}
    fractions["validation"] = validation_fraction
    rest, taken, left = groups, {}, 1.0
    for name, fraction in fractions.items():
        if fraction <= 0:
            taken[name] = rest.iloc[0:0]
            continue
        rest, taken[name] = train_test_split(
            rest, test_size=fraction / left, random_state=seed, stratify=rest["label"]
        )
        left -= fraction
    taken["train"] = rest

    def rows_of(name: str) -> pd.DataFrame:
        part = frame[frame[group_col].isin(set(taken[name][group_col]))]
        order = {key: i for i, key in enumerate(taken[name][group_col])}
        part = part.iloc[part[group_col].map(order).argsort(kind="stable")]
        part = part.drop(columns=["_row"]) if group_col == "_row" else part
        return part.reset_index(drop=True)

    splits = Splits(
        rows_of("train"), rows_of("validation"), rows_of("test"), rows_of("calibration")
    )
    return _check_classes(splits, "stratified")


def split_by_time(
    frame: pd.DataFrame,
    *,
    date_col: str,
    validation_fraction: float,
    test_fraction: float,
    calibration_fraction: float = 0.0,
    gap_months: int = 0,
) -> Splits:
    """Train on the oldest dates, validate on the next, calibrate on the next, test on the
    newest.

    The cuts fall between dates, never inside one: all rows of a date land in one split, so the
    fractions are met as closely as the dates allow. Each split starts at least ``gap_months``
    after the last date of the split before it (the outcome horizon: the earlier split's labels
    have matured by then); rows dated inside a gap are left out and counted.
    """
    from riskudf.monitoring.run import add_months

    if date_col not in frame:
        raise LabelError(f"time split: no column {date_col}")
    if frame[date_col].isna().any():
        raise LabelError(f"time split: {int(frame[date_col].isna().sum())} rows without a date")
    ordered = frame.sort_values(date_col, kind="stable").reset_index(drop=True)
    share = ordered.groupby(date_col, sort=True).size().cumsum() / len(ordered)
    names = ["train", "validation", *(["calibration"] if calibration_fraction > 0 else []), "test"]
    tops = [
        1 - validation_fraction - calibration_fraction - test_fraction,
        1 - calibration_fraction - test_fraction,
        *([1 - test_fraction] if calibration_fraction > 0 else []),
    ]
    cuts = [share.index[share <= top] for top in tops]
    if any(len(cut) == 0 for cut in cuts) or len({len(cut) for cut in cuts}) < len(cuts):
        raise LabelError(f"time split: {share.size} distinct dates cannot make {', '.join(names)}")
    dates = ordered[date_col]
    bounds = [None, *[cut[-1] for cut in cuts], None]
    parts: dict[str, pd.DataFrame] = {}
    dropped = 0
    for i, name in enumerate(names):
        low, high = bounds[i], bounds[i + 1]
        inside = pd.Series(True, index=ordered.index)
        if low is not None:
            inside &= dates > low
        if high is not None:
            inside &= dates <= high
        rows = ordered[inside]
        if i > 0 and gap_months:
            earliest = add_months(parts[names[i - 1]][date_col].max(), gap_months)
            dropped += int((rows[date_col] < earliest).sum())
            rows = rows[rows[date_col] >= earliest]
        if rows.empty:
            raise LabelError(
                f"time split: no dates left for the {name} split"
                + (f" after a gap of {gap_months} months" if gap_months else "")
            )
        parts[name] = rows.reset_index(drop=True)
    splits = Splits(
        parts["train"],
        parts["validation"],
        parts["test"],
        parts.get("calibration", pd.DataFrame()),
        dropped_in_gaps=dropped,
    )
    return _check_classes(splits, "time")
