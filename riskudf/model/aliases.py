"""Model aliases (``demo@champion``, ``demo@challenger``) in an append-only Delta table: every
change is a row (who, when, from which version to which, why); the latest row of a model and
alias is its current value. The table is small: reading it on the driver reads no portfolio."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.lakehouse.delta import append, ensure_table_and_database, schema
from riskudf.lakehouse.schemas import (
    MODEL_ALIASES_COLUMNS,
    MODEL_ALIASES_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.model.artifact import ArtifactError
from riskudf.model.registry import version_dir

CHAMPION = "champion"
CHALLENGER = "challenger"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class AliasError(ArtifactError):
    """A model reference that names no version: unknown model or alias, or a bad name."""


@dataclass(frozen=True)
class AliasRow:
    model_name: str
    alias: str
    model_version: str | None
    model_dir: str | None
    previous_version: str | None
    changed_at: dt.datetime
    changed_by: str
    reason: str
    promotion_id: str | None = None


def parse_reference(text: str) -> tuple[str, str] | None:
    """``name@alias`` as (name, alias); None for anything else (a plain directory)."""
    name, at, alias = text.partition("@")
    if not at or "/" in text or not NAME.fullmatch(name) or not ALIAS.fullmatch(alias):
        return None
    return name, alias


def ensure_aliases(spark: SparkSession, table: str) -> None:
    ensure_table_and_database(
        spark,
        table,
        MODEL_ALIASES_COLUMNS,
        comment=MODEL_ALIASES_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def history(spark: SparkSession, table: str, name: str) -> list[AliasRow]:
    """Every change of the model's aliases, oldest first."""
    if not spark.catalog.tableExists(table):
        return []
    rows = spark.table(table).where(F.col("model_name") == name).orderBy("changed_at").collect()
    return [AliasRow(**row.asDict()) for row in rows]


def current(spark: SparkSession, table: str, name: str) -> dict[str, AliasRow]:
    """The model's aliases now: alias -> its latest row (removed aliases left out)."""
    latest: dict[str, AliasRow] = {}
    for row in history(spark, table, name):
        latest[row.alias] = row
    return {alias: row for alias, row in latest.items() if row.model_version is not None}


@dataclass(frozen=True)
class Change:
    alias: str
    version: str | None  # None removes the alias
    model_dir: str | Path | None
    reason: str


def set_aliases(
    spark: SparkSession,
    table: str,
    *,
    name: str,
    changes: list[Change],
    by: str,
    promotion_id: str | None = None,
) -> list[AliasRow]:
    """Apply ``changes`` to ``name``'s aliases in one append (one Delta commit: all or none)."""
    for change in changes:
        if not NAME.fullmatch(name) or not ALIAS.fullmatch(change.alias):
            raise AliasError(f"{name}@{change.alias}: not a model name and alias (demo@champion)")
        if not change.reason.strip():
            raise AliasError(f"{name}@{change.alias}: an alias change says why")
    if not by.strip():
        raise AliasError(f"{name}: an alias change names who made it")
    ensure_aliases(spark, table)
    before = current(spark, table, name)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for step, change in enumerate(changes):
        previous = before.get(change.alias)
        rows.append(
            AliasRow(
                model_name=name,
                alias=change.alias,
                model_version=change.version,
                model_dir=None if change.model_dir is None else str(change.model_dir),
                previous_version=previous.model_version if previous else None,
                # One microsecond apart: the rows of one commit keep their order.
                changed_at=now + dt.timedelta(microseconds=step),
                changed_by=by,
                reason=change.reason,
                promotion_id=promotion_id,
            )
        )
    values = [tuple(getattr(r, c) for c, _, _, _ in MODEL_ALIASES_COLUMNS) for r in rows]
    append(spark.createDataFrame(values, schema(MODEL_ALIASES_COLUMNS)), table)
    return rows


def set_alias(
    spark: SparkSession,
    table: str,
    *,
    name: str,
    alias: str,
    version: str | None,
    model_dir: str | Path | None,
    by: str,
    reason: str,
    promotion_id: str | None = None,
) -> AliasRow:
    """Point ``name@alias`` at ``version`` (None removes it), appending the change."""
    change = Change(alias, version, model_dir, reason)
    return set_aliases(spark, table, name=name, changes=[change], by=by, promotion_id=promotion_id)[
        0
    ]


def resolve(spark: SparkSession, table: str, reference: str) -> AliasRow:
    """The version that ``name@alias`` points at now."""
    parsed = parse_reference(reference)
    if parsed is None:
        raise AliasError(f"{reference!r} is not a model alias (name@alias)")
    name, alias = parsed
    found = current(spark, table, name).get(alias)
    if found is None or found.model_dir is None:
        known = ", ".join(sorted(current(spark, table, name))) or "none"
        raise AliasError(
            f"model {name} has no {alias} in {table} (its aliases: {known}); a version becomes "
            "champion through jobs/promote.py (make promote)"
        )
    return found


@dataclass(frozen=True)
class Located:
    path: Path
    version: str | None  # the version the reference named; None for a plain directory
    reference: str


def locate(
    spark: SparkSession,
    reference: str,
    *,
    aliases_table: str,
    registry_table: str,
    version: str | None = None,
) -> Located:
    """Where a model is: ``version`` from the registry when given and registered (a rerun of a
    past run uses its own model, whatever the aliases say now), else ``name@alias`` from the
    aliases table, else ``reference`` as a directory."""
    if version is not None:
        found = version_dir(spark, registry_table, version)
        if found is not None:
            return Located(Path(found), version, f"registry {version}")
    if parse_reference(reference) is not None and not Path(reference).exists():
        row = resolve(spark, aliases_table, reference)
        assert row.model_dir is not None
        return Located(Path(row.model_dir), row.model_version, reference)
    return Located(Path(reference), None, reference)
