"""Champion against challengers, each run: grade and decision flips per segment, and the PSI of
the challenger's PDs against the champion's, from scored_portfolio and shadow_scores (Spark
aggregates; a few numbers per challenger and segment come back)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.lakehouse.delta import ensure_table, replace_where, schema
from riskudf.lakehouse.schemas import (
    MONITOR_SHADOW_COLUMNS,
    MONITOR_SHADOW_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.monitoring.metrics import psi

ALL = "all"


def compare_shadow(
    spark: SparkSession, conf: RiskConf, *, run_id: str, as_of: dt.date
) -> list[dict[str, Any]]:
    """The comparison rows of the run (none without shadow scores), written to monitor_shadow
    in place of the run's earlier ones."""
    shadow_table = conf.tables.qualified("shadow_scores")
    if not spark.catalog.tableExists(shadow_table):
        return []
    this_run = (F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == F.lit(run_id))
    shadow = spark.table(shadow_table).where(this_run)
    champion = (
        spark.table(conf.tables.qualified("scored_portfolio"))
        .where(this_run)
        .select(
            "obligor_id",
            F.col("pd").alias("champion_pd"),
            F.col("grade").alias("champion_grade"),
            F.col("decision").alias("champion_decision"),
            F.col("model_version").alias("champion_version"),
        )
    )
    pairs = shadow.join(champion, "obligor_id").withColumn(
        "segment", F.coalesce(F.col("segment"), F.lit("(null)"))
    )
    keys = ["model_name", "alias", "model_version", "champion_version"]
    flips = [
        F.count("*").alias("obligors"),
        F.sum((F.col("grade") != F.col("champion_grade")).cast("long")).alias("grade_flips"),
        F.sum((F.col("decision") != F.col("champion_decision")).cast("long")).alias(
            "decision_flips"
        ),
    ]
    by_segment = pairs.groupBy(*keys, "segment").agg(*flips).collect()
    overall = pairs.groupBy(*keys).agg(*flips).collect()
    if not overall:
        return []
    edges = decile_edges(pairs)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for row, segment in [*((r, ALL) for r in overall), *((r, r["segment"]) for r in by_segment)]:
        part = pairs.where(F.col("alias") == row["alias"])
        if segment != ALL:
            part = part.where(F.col("segment") == segment)
        n = int(row["obligors"])
        rows.append(
            {
                "run_id": run_id,
                "as_of_date": as_of,
                **{k: row[k] for k in keys},
                "segment": segment,
                "obligors": n,
                "grade_flips": int(row["grade_flips"]),
                "grade_flip_share": row["grade_flips"] / n if n else None,
                "decision_flips": int(row["decision_flips"]),
                "decision_flip_share": row["decision_flips"] / n if n else None,
                "psi": pd_psi(part, edges),
                "computed_at": now,
            }
        )
    write(spark, conf, rows, run_id=run_id)
    return rows


def decile_edges(pairs: Any) -> list[float]:
    """Inner decile edges of the champion's PDs (approximate quantiles, in Spark)."""
    probabilities = [i / 10 for i in range(1, 10)]
    found = pairs.select("champion_pd").approxQuantile("champion_pd", probabilities, 1e-4)
    return sorted(set(found))


def pd_psi(part: Any, edges: list[float]) -> float | None:
    """PSI of the challenger's PDs against the champion's, on the champion's deciles."""
    index_champion = _bin(F.col("champion_pd"), edges)
    index_challenger = _bin(F.col("pd"), edges)
    counts = (
        part.select(index_champion.alias("c"), index_challenger.alias("s"))
        .groupBy()
        .agg(
            *[F.sum((F.col("c") == i).cast("long")).alias(f"c{i}") for i in range(len(edges) + 1)],
            *[F.sum((F.col("s") == i).cast("long")).alias(f"s{i}") for i in range(len(edges) + 1)],
        )
        .first()
    )
    if counts is None:
        return None
    expected = np.array([counts[f"c{i}"] or 0 for i in range(len(edges) + 1)], float)
    actual = np.array([counts[f"s{i}"] or 0 for i in range(len(edges) + 1)], float)
    if expected.sum() == 0:
        return None
    return psi(expected, actual)


def _bin(column: Any, edges: list[float]) -> Any:
    """The bin of each value: i when edges[i-1] <= x < edges[i]."""
    expr = F.lit(len(edges))
    for i, edge in reversed(list(enumerate(edges))):
        expr = F.when(column < F.lit(edge), F.lit(i)).otherwise(expr)
    return expr


def write(spark: SparkSession, conf: RiskConf, rows: list[dict[str, Any]], *, run_id: str) -> None:
    table = conf.tables.qualified("monitor_shadow")
    ensure_table(
        spark,
        table,
        MONITOR_SHADOW_COLUMNS,
        comment=MONITOR_SHADOW_COMMENT,
        properties=RETENTION_PROPERTIES,
    )
    columns = [name for name, _, _, _ in MONITOR_SHADOW_COLUMNS]
    frame = spark.createDataFrame(
        [tuple(r[c] for c in columns) for r in rows], schema(MONITOR_SHADOW_COLUMNS)
    )
    replace_where(frame, table, F.col("run_id") == F.lit(run_id))
