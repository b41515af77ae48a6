"""Your own data: a Delta table by path, with a date column, or without free text (Spark)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from riskudf.lakehouse.delta import SchemaError
from riskudf.training.data import LabelError, load_labelled

ROWS = [
    ("a1", "paid on time", 0, dt.date(2024, 1, 31), "retail", 0.25, None),
    ("a2", None, 1, dt.date(2024, 2, 29), "corporate", 0.9, 3),
    ("a3", "missed payment", 1, dt.date(2024, 3, 31), None, None, 0),
]
SCHEMA = (
    "loan_id string, narrative string, defaulted int, as_of date, segment string, "
    "utilisation double, dpd int"
)


def load_loans(spark, table: str, **options):  # type: ignore[no-untyped-def]
    """``load_labelled`` on the loans table: its id and label columns."""
    return load_labelled(spark, table, id_col="loan_id", label_col="defaulted", **options)


def _table(spark, path: Path, rows=ROWS) -> str:  # type: ignore[no-untyped-def]
    spark.createDataFrame(rows, SCHEMA).write.format("delta").save(str(path))
    return str(path)


def test_a_delta_path_with_a_date_column(spark, tmp_path: Path) -> None:
    table = _table(spark, tmp_path / "loans")
    data = load_loans(
        spark,
        table,
        text_col="narrative",
        date_col="as_of",
        keep=["segment"],
        numeric=["utilisation", "dpd"],
        categorical=["segment"],  # also the segment column: comes once
    )
    assert (data.table, data.version) == (table, 0)
    frame = data.frame.sort_values("id")
    assert list(frame.columns) == ["id", "text", "label", "utilisation", "dpd", "segment", "as_of"]
    assert frame["dpd"].tolist()[1:] == [3.0, 0.0] and frame["dpd"].isna().tolist()[0]
    assert frame["utilisation"].dtype == "float64"
    assert frame["text"].tolist() == ["paid on time", "", "missed payment"]
    assert frame["label"].tolist() == [0, 1, 1]
    assert frame["segment"].tolist() == ["retail", "corporate", None]
    assert frame["as_of"].tolist() == [
        dt.date(2024, 1, 31),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 31),
    ]


def test_a_table_without_free_text_is_serialised(spark, tmp_path: Path) -> None:
    table = _table(spark, tmp_path / "tabular")
    data = load_loans(spark, table, text_col=None, text_from=["segment", "utilisation", "dpd"])
    texts = dict(zip(data.frame["id"], data.frame["text"], strict=True))
    assert texts == {
        "a1": "segment: retail; utilisation: 0.25",
        "a2": "segment: corporate; utilisation: 0.9; dpd: 3",
        "a3": "dpd: 0",
    }
    assert list(data.frame.columns) == ["id", "label", "text"]


def test_labels_other_than_0_and_1_are_refused(spark, tmp_path: Path) -> None:
    rows = [*ROWS, ("a4", "x", 2, dt.date(2024, 4, 30), "retail", 0.1, 0)]
    table = _table(spark, tmp_path / "bad", rows)
    with pytest.raises(LabelError, match="1 rows that are not 0 or 1"):
        load_labelled(spark, table, id_col="loan_id", text_col="narrative", label_col="defaulted")
    with pytest.raises(SchemaError, match=r"bad: missing feature columns \['income'\]"):
        load_labelled(
            spark, table, text_col="narrative", label_col="defaulted", numeric=["dpd", "income"]
        )
