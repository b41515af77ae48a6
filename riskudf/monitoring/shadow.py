"""Champion against challengers, each run: grade and decision flips per segment, the PSI of
the challenger's PDs against the champion's, and on the latest matured cohort that the
challenger scored in shadow, both AUCs and DeLong's test of their difference. From
scored_portfolio, shadow_scores and outcomes: Spark aggregates; a few numbers per challenger and
segment, and counts per PD bin, come back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.governance.statistics import PlacementSums, paired_auc_test, placement_values
from riskudf.lakehouse.delta import ensure_table, replace_where, schema
from riskudf.lakehouse.schemas import (
    MONITOR_SHADOW_COLUMNS,
    MONITOR_SHADOW_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.monitoring.columns import bin_index
from riskudf.monitoring.metrics import PD_GRID, psi

ALL = "all"


def compare_shadow(
    spark: SparkSession, conf: RiskConf, *, run_id: str, as_of: dt.date
) -> list[dict[str, Any]]:
    """The comparison rows of the run (none without shadow scores); nothing written."""
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
    matured = {
        version: matured_auc(spark, conf, version, as_of)
        for version in {r["model_version"] for r in overall}
    }
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
                **(matured[row["model_version"]] if segment == ALL else NO_MATURED),
                "computed_at": now,
            }
        )
    return rows


NO_MATURED: dict[str, Any] = {
    "matured_as_of": None,
    "matured_champion_version": None,
    "matured_obligors": None,
    "matured_defaults": None,
    "champion_auc": None,
    "challenger_auc": None,
    "auc_difference": None,
    "auc_difference_pvalue": None,
}


def matured_auc(
    spark: SparkSession, conf: RiskConf, version: str, as_of: dt.date
) -> dict[str, Any]:
    """Champion against challenger ``version`` on the latest cohort whose outcomes matured by
    ``as_of``, that has outcomes and that the challenger scored in shadow: the champion's scores
    of that same run against the challenger's, both AUCs on the monitoring's PD bins, and
    DeLong's paired test of the difference (NO_MATURED's nulls where there is none)."""
    horizon = conf.monitoring.outcome_horizon_months
    outcomes_table = conf.tables.qualified("outcomes")
    history_table = conf.tables.qualified("scored_history")
    if not spark.catalog.tableExists(outcomes_table) or not spark.catalog.tableExists(
        history_table
    ):
        return NO_MATURED
    shadow = spark.table(conf.tables.qualified("shadow_scores")).where(
        (F.col("model_version") == F.lit(version))
        & (F.add_months(F.col("as_of_date"), horizon) <= F.lit(as_of))
    )
    dates = [r["as_of_date"] for r in shadow.select("as_of_date").distinct().collect()]
    outcomes = spark.table(outcomes_table).where(F.col("default_12m").isNotNull())
    labelled_dates = {
        r["observation_date"]
        for r in outcomes.where(F.col("observation_date").isin(dates))
        .select("observation_date")
        .distinct()
        .collect()
    } if dates else set()  # fmt: skip
    cohort = max(labelled_dates, default=None)
    if cohort is None:
        return NO_MATURED
    # The champion's scores of the run that scored the challenger's shadow rows (scored_history
    # keeps every run's; scored_portfolio only the date's latest).
    labelled = (
        shadow.where(F.col("as_of_date") == F.lit(cohort))
        .select("obligor_id", "run_id", bin_index(F.col("pd"), PD_GRID).alias("b"))
        .join(
            spark.table(history_table)
            .where(F.col("as_of_date") == F.lit(cohort))
            .select(
                "obligor_id",
                "run_id",
                bin_index(F.col("pd"), PD_GRID).alias("a"),
                F.col("model_version").alias("champion_then"),
            ),
            ["obligor_id", "run_id"],
        )
        .join(
            outcomes.where(F.col("observation_date") == F.lit(cohort)).select(
                "obligor_id", F.col("default_12m").cast("int").alias("y")
            ),
            "obligor_id",
        )
        .persist()
    )
    try:
        placed = labelled
        for column in ("a", "b"):
            placed = placed.join(F.broadcast(placements(spark, labelled, column)), column)
        then = [r["champion_then"] for r in labelled.select("champion_then").distinct().collect()]
        sums = {
            r["y"]: r
            for r in placed.select(
                "y",
                F.when(F.col("y") == 1, F.col("v10_a")).otherwise(F.col("v01_a")).alias("pa"),
                F.when(F.col("y") == 1, F.col("v10_b")).otherwise(F.col("v01_b")).alias("pb"),
            )
            .groupBy("y")
            .agg(
                F.count("*").alias("n"),
                F.sum("pa").alias("a"),
                F.sum("pb").alias("b"),
                F.sum(F.col("pa") * F.col("pa")).alias("aa"),
                F.sum(F.col("pb") * F.col("pb")).alias("bb"),
                F.sum(F.col("pa") * F.col("pb")).alias("ab"),
            )
            .collect()
        }
    finally:
        labelled.unpersist()
    defaulters, others = (
        PlacementSums(**{k: sums[y][k] for k in ("n", "a", "b", "aa", "bb", "ab")})
        if y in sums
        else PlacementSums(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        for y in (1, 0)
    )
    test = paired_auc_test(defaulters, others)
    auc_a = defaulters.a / defaulters.n if defaulters.n and others.n else None
    auc_b = defaulters.b / defaulters.n if defaulters.n and others.n else None
    if not defaulters.n + others.n:
        return NO_MATURED
    return {
        "matured_as_of": cohort,
        "matured_champion_version": ", ".join(sorted(then)),
        "matured_obligors": defaulters.n + others.n,
        "matured_defaults": defaulters.n,
        "champion_auc": auc_a,
        "challenger_auc": auc_b,
        "auc_difference": auc_b - auc_a if auc_a is not None and auc_b is not None else None,
        "auc_difference_pvalue": test.pvalue if test else None,
    }


def placements(spark: SparkSession, labelled: Any, column: str) -> Any:
    """Per PD bin of scoring ``column``: the placement values V10 and V01 (a small frame, from
    the bins' counts of defaulters and non-defaulters)."""
    counts = (
        labelled.groupBy(column)
        .agg(F.sum("y").alias("pos"), F.sum(1 - F.col("y")).alias("neg"))
        .orderBy(column)
        .collect()
    )
    bins = [int(r[column]) for r in counts]
    v10, v01 = placement_values(
        np.array([r["pos"] for r in counts], float), np.array([r["neg"] for r in counts], float)
    )
    return spark.createDataFrame(
        [(b, float(p), float(q)) for b, p, q in zip(bins, v10, v01, strict=True)],
        f"{column} long, v10_{column} double, v01_{column} double",
    )


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


def ensure_comparison_table(spark: SparkSession, conf: RiskConf) -> None:
    ensure_table(
        spark,
        conf.tables.qualified("monitor_shadow"),
        MONITOR_SHADOW_COLUMNS,
        comment=MONITOR_SHADOW_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def write(spark: SparkSession, conf: RiskConf, rows: list[dict[str, Any]], *, run_id: str) -> None:
    """The run's comparison rows, in place of its earlier ones (one commit)."""
    table = conf.tables.qualified("monitor_shadow")
    ensure_comparison_table(spark, conf)
    columns = [name for name, _, _, _ in MONITOR_SHADOW_COLUMNS]
    frame = spark.createDataFrame(
        [tuple(r[c] for c in columns) for r in rows], schema(MONITOR_SHADOW_COLUMNS)
    )
    replace_where(frame, table, F.col("run_id") == F.lit(run_id))
