"""What BI tools see: documented Delta tables and four analyst views (server.py serves them).

Analysts connect with Tableau, Power BI, Superset or DBeaver to a HiveServer2-compatible endpoint
(the Spark Thrift Server, started in the same JVM as :func:`publish_bi_objects` by
``jobs/serve_bi.py``), or read the Delta tables directly (delta-rs, DuckDB).

Consistency: a view reads each Delta table at one snapshot, and the scored rows of a run count
only once the run's ``success`` row is in ``score_runs`` (written after the scored table's single
commit). A query during a nightly run therefore sees the previous complete run, never a partial
one. Views carry no personal data: no report text, names or addresses, and no demographic columns.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from riskudf.config import BiConf, RiskConf, TablesConf
from riskudf.lakehouse.delta import MissingTableError, properties_sql, quote_name, sql_string
from riskudf.lakehouse.schemas import (
    ALERT_ACTIONS_COLUMNS,
    ALERT_ACTIONS_COMMENT,
    ALERTS_OPEN_COLUMNS,
    LATEST_SCORES_COLUMNS,
    MONITOR_ALERTS_COLUMNS,
    MONITOR_ALERTS_COMMENT,
    MONITOR_RUNS_COLUMNS,
    MONITOR_RUNS_COMMENT,
    MONITOR_SHADOW_COLUMNS,
    MONITOR_SHADOW_COMMENT,
    PORTFOLIO_SUMMARY_COLUMNS,
    RETENTION_PROPERTIES,
    RUN_HISTORY_COLUMNS,
    SCORE_HISTORY_COLUMNS,
    SCORE_RUNS_COLUMNS,
    SCORE_RUNS_COMMENT,
    SCORED_HISTORY_COMMENT,
    SCORED_PORTFOLIO_COLUMNS,
    SCORED_PORTFOLIO_COMMENT,
    SCORED_PORTFOLIO_PROPERTIES,
    SCORING_QUARANTINE_COLUMNS,
    SCORING_QUARANTINE_COMMENT,
    ColumnSpec,
    ViewColumn,
    history_properties,
)
from riskudf.monitoring.lifecycle import current_runs_sql
from riskudf.monitoring.run import MONITOR_TABLES, ensure_monitor_tables, monitor_table
from riskudf.monitoring.shadow import ensure_comparison_table
from riskudf.scoring.pipeline import ensure_output_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentedTable:
    name: str
    columns: tuple[ColumnSpec, ...]
    comment: str
    properties: Mapping[str, str]


def documented_tables(tables: TablesConf) -> tuple[DocumentedTable, ...]:
    """The output tables BI reads, with the comments and properties they must carry."""
    return (
        DocumentedTable(
            tables.qualified("scored_portfolio"),
            SCORED_PORTFOLIO_COLUMNS,
            SCORED_PORTFOLIO_COMMENT,
            SCORED_PORTFOLIO_PROPERTIES,
        ),
        DocumentedTable(
            tables.qualified("scored_history"),
            SCORED_PORTFOLIO_COLUMNS,
            SCORED_HISTORY_COMMENT,
            history_properties(tables.retention_days),
        ),
        DocumentedTable(
            tables.qualified("score_runs"),
            SCORE_RUNS_COLUMNS,
            SCORE_RUNS_COMMENT,
            history_properties(tables.retention_days),
        ),
        DocumentedTable(
            tables.qualified("monitor_alerts"),
            MONITOR_ALERTS_COLUMNS,
            MONITOR_ALERTS_COMMENT,
            RETENTION_PROPERTIES,
        ),
        DocumentedTable(
            tables.qualified("monitor_runs"),
            MONITOR_RUNS_COLUMNS,
            MONITOR_RUNS_COMMENT,
            RETENTION_PROPERTIES,
        ),
        DocumentedTable(
            tables.qualified("alert_actions"),
            ALERT_ACTIONS_COLUMNS,
            ALERT_ACTIONS_COMMENT,
            RETENTION_PROPERTIES,
        ),
        DocumentedTable(
            tables.qualified("monitor_shadow"),
            MONITOR_SHADOW_COLUMNS,
            MONITOR_SHADOW_COMMENT,
            RETENTION_PROPERTIES,
        ),
        DocumentedTable(
            tables.qualified("scoring_quarantine"),
            SCORING_QUARANTINE_COLUMNS,
            SCORING_QUARANTINE_COMMENT,
            RETENTION_PROPERTIES,
        ),
    )


def readable_tables(conf: RiskConf) -> tuple[str, ...]:
    """What BI users may read besides the views: the output tables (scores, history, run log,
    quarantine, monitoring, alerts, model registry, aliases, promotion records, challengers'
    shadow scores and their comparison). Never the inputs, whose text is personal."""
    tables = conf.tables
    return (
        *(table.name for table in documented_tables(tables)),
        *(monitor_table(conf, name) for name in MONITOR_TABLES),
        tables.qualified("model_registry"),
        tables.qualified("model_aliases"),
        tables.qualified("model_promotions"),
        tables.qualified("model_robustness"),
        tables.qualified("shadow_scores"),
    )


def _double(value: float) -> str:
    return f"CAST({float(value)!r} AS DOUBLE)"


def lgd_sql(bi: BiConf, segment: str) -> str:
    """LGD of a segment column as a SQL expression: per-segment values, else the default."""
    if not bi.lgd_by_segment:
        return _double(bi.lgd)
    cases = " ".join(
        f"WHEN {sql_string(seg)} THEN {_double(value)}"
        for seg, value in sorted(bi.lgd_by_segment.items())
    )
    return f"CASE {segment} {cases} ELSE {_double(bi.lgd)} END"


def sql_name(tables: TablesConf, table: str) -> str:
    """One of conf's tables as quoted SQL identifiers, for SQL text (views are served to BI)."""
    return quote_name(tables.qualified(table))


def _successful_scores(tables: TablesConf) -> str:
    """Scored rows whose run is recorded as successful (one Delta snapshot of each table)."""
    return (
        f"SELECT s.* FROM {sql_name(tables, 'scored_portfolio')} s "
        f"LEFT SEMI JOIN (SELECT run_id FROM {sql_name(tables, 'score_runs')} "
        "WHERE status = 'success') r ON s.run_id = r.run_id"
    )


def view_queries(conf: RiskConf) -> dict[str, str]:
    """The SELECT behind each analyst view, keyed by view name (unqualified)."""
    t = conf.tables

    def q(name: str) -> str:
        return sql_name(t, name)

    lgd = lgd_sql(conf.bi, "coalesce(p.segment, 'unknown')")
    return {
        "v_latest_scores": (
            "SELECT obligor_id, as_of_date, pd, grade, decision, model_version, run_id, scored_at "
            "FROM (SELECT *, row_number() OVER (PARTITION BY obligor_id ORDER BY as_of_date DESC) "
            f"AS rank_latest FROM ({_successful_scores(t)}) ok) ranked WHERE rank_latest = 1"
        ),
        "v_portfolio_summary": (
            "SELECT s.as_of_date, coalesce(p.segment, 'unknown') AS segment, s.grade, "
            "count(*) AS obligors, sum(p.exposure) AS exposure, avg(s.pd) AS mean_pd, "
            f"max({lgd}) AS lgd, sum(s.pd * p.exposure * {lgd}) AS expected_loss "
            f"FROM ({_successful_scores(t)}) s "
            f"LEFT JOIN {q('portfolio')} p ON s.obligor_id = p.obligor_id "
            "GROUP BY s.as_of_date, coalesce(p.segment, 'unknown'), s.grade"
        ),
        "v_alerts_open": (
            "SELECT a.alert_id, a.run_id, a.as_of_date, a.rule, a.severity, a.metric, "
            "a.slice_key, a.slice_value, a.value, a.threshold, a.created_at "
            f"FROM {q('monitor_alerts')} a "
            f"LEFT SEMI JOIN ({current_runs_sql(t.qualified('score_runs'))}) c "
            "ON a.run_id = c.run_id AND a.as_of_date = c.as_of_date "
            f"LEFT ANTI JOIN {q('alert_actions')} x ON a.alert_id = x.alert_id "
            "WHERE a.status = 'open'"
        ),
        "v_run_history": (
            "SELECT r.run_id, r.as_of_date, r.status, c.run_id IS NOT NULL AS is_current, "
            "r.started_at, r.finished_at, r.duration_s, r.rows_in, r.rows_scored, "
            "r.rows_quarantined, r.model_version, to_json(r.input_versions) AS input_versions, "
            "r.error, m.monitoring_status, "
            "coalesce(m.alerts_fired, r.alerts_fired) AS alerts_fired, r.mode, r.knowledge_time "
            f"FROM {q('score_runs')} r LEFT JOIN (SELECT DISTINCT run_id FROM "
            f"{q('scored_portfolio')}) c ON r.run_id = c.run_id "
            "LEFT JOIN (SELECT run_id, max_by(status, finished_at) AS monitoring_status, "
            "max_by(alerts_fired, finished_at) AS alerts_fired "
            f"FROM {q('monitor_runs')} GROUP BY run_id) m ON r.run_id = m.run_id"
        ),
        "v_shadow_comparison": (
            f"SELECT {', '.join(name for name, _, _, _ in MONITOR_SHADOW_COLUMNS)} "
            f"FROM {q('monitor_shadow')} m "
            f"LEFT SEMI JOIN ({current_runs_sql(t.qualified('score_runs'))}) c "
            "ON m.run_id = c.run_id AND m.as_of_date = c.as_of_date"
        ),
        "v_score_history": (
            "SELECT h.obligor_id, h.as_of_date, h.pd, h.grade, h.decision, h.model_version, "
            "h.run_id, h.scored_at, r.current_from, r.current_until, r.superseded_by_run_id, "
            "r.current_until IS NULL AS is_current "
            f"FROM {q('scored_history')} h JOIN ({run_periods_sql(t)}) r "
            "ON h.run_id = r.run_id AND h.as_of_date = r.as_of_date"
        ),
    }


def run_periods_sql(tables: TablesConf) -> str:
    """Each successful run's period as its date's current run: from its end to the end of the
    next successful run of the same date (null while current); as current_runs_sql ranks."""
    order = "OVER (PARTITION BY as_of_date ORDER BY finished_at, run_id)"
    return (
        "SELECT run_id, as_of_date, finished_at AS current_from, "
        f"lead(finished_at) {order} AS current_until, "
        f"lead(run_id) {order} AS superseded_by_run_id "
        f"FROM {sql_name(tables, 'score_runs')} WHERE status = 'success'"
    )


VIEW_DOCS: dict[str, tuple[str, tuple[ViewColumn, ...]]] = {
    "v_latest_scores": (
        "latest score per obligor from successful runs only; no personal data",
        LATEST_SCORES_COLUMNS,
    ),
    "v_portfolio_summary": (
        "per as-of date, segment and grade: obligors, exposure, mean PD and expected loss "
        "(PD x exposure x LGD); successful runs only; exposure and segment from the current "
        "portfolio table",
        PORTFOLIO_SUMMARY_COLUMNS,
    ),
    "v_alerts_open": (
        "monitoring alerts of each date's current run (its latest successful run) that nobody "
        "acknowledged or closed (alert_actions); alerts of failed or superseded runs are closed",
        ALERTS_OPEN_COLUMNS,
    ),
    "v_run_history": (
        "every scoring run: status, counts, duration, input versions, and its monitoring",
        RUN_HISTORY_COLUMNS,
    ),
    "v_shadow_comparison": (
        "champion against each challenger in each date's current run: grade and decision "
        "flips per segment, PSI of PDs, and on the latest matured cohort both AUCs with "
        "DeLong's test",
        tuple((name, comment) for name, _, _, comment in MONITOR_SHADOW_COLUMNS),
    ),
    "v_score_history": (
        "every run's scores, superseded runs included, with when each run's rows were the "
        "current rows of their date; kept for tables.retention_days",
        SCORE_HISTORY_COLUMNS,
    ),
}


def view_ddl(conf: RiskConf, view: str) -> str:
    comment, columns = VIEW_DOCS[view]
    cols = ", ".join(f"{name} COMMENT {sql_string(text)}" for name, text in columns)
    if view == "v_portfolio_summary":
        lgds = [f"{seg} {value}" for seg, value in sorted(conf.bi.lgd_by_segment.items())]
        comment += f"; LGD: {', '.join([*lgds, f'other {conf.bi.lgd}'])}"
    return (
        f"CREATE OR REPLACE VIEW {quote_name(f'{conf.tables.database}.{view}')} ({cols}) "
        f"COMMENT {sql_string(comment)} AS {view_queries(conf)[view]}"
    )


# --- tables ------------------------------------------------------------------------------------


def _table_properties(spark: SparkSession, table: str) -> dict[str, str]:
    rows = spark.sql(f"SHOW TBLPROPERTIES {quote_name(table)}").collect()
    return {row["key"]: row["value"] for row in rows}


def document_table(spark: SparkSession, table: DocumentedTable) -> list[str]:
    """Bring a table's comments and properties to what the code says; return what changed.

    Each change is a Delta metadata commit, which fails concurrent writers, so nothing is
    written when everything already matches (the normal case after the first run).
    """
    changes: list[str] = []
    name = quote_name(table.name)
    current = _table_properties(spark, table.name)
    missing = {k: v for k, v in table.properties.items() if current.get(k) != v}
    if missing:
        spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({properties_sql(missing)})")
        changes.append(f"properties {sorted(missing)}")
    detail = spark.sql(f"DESCRIBE DETAIL {name}").select("description").first()
    if detail is None or detail["description"] != table.comment:
        spark.sql(f"COMMENT ON TABLE {name} IS {sql_string(table.comment)}")
        changes.append("table comment")
    fields = {f.name: f.metadata.get("comment") for f in spark.table(table.name).schema.fields}
    for column, _, _, comment in table.columns:
        if column in fields and fields[column] != comment:
            spark.sql(f"ALTER TABLE {name} ALTER COLUMN {column} COMMENT {sql_string(comment)}")
            changes.append(f"comment of {column}")
    return changes


def publish_bi_objects(spark: SparkSession, conf: RiskConf) -> None:
    """Create or update everything BI reads: the output tables' docs, the monitor and alert
    tables, views."""
    portfolio = conf.tables.qualified("portfolio")
    if not spark.catalog.tableExists(portfolio):
        raise MissingTableError(f"table {portfolio} does not exist (run `make demo` first)")
    ensure_output_tables(spark, conf)
    ensure_monitor_tables(spark, conf)
    ensure_comparison_table(spark, conf)
    for table in documented_tables(conf.tables):
        changes = document_table(spark, table)
        if changes:
            log.info("%s: updated %s", table.name, ", ".join(changes))
    for view in VIEW_DOCS:
        spark.sql(view_ddl(conf, view))


def compact_scored_date(spark: SparkSession, conf: RiskConf, *, as_of: dt.date) -> dict[str, Any]:
    """Compact the date's files and Z-order them by obligor_id; return OPTIMIZE's metrics.

    A lookup of one obligor then reads few files (data skipping on obligor_id min/max stats).
    OPTIMIZE commits with dataChange=false: readers and the change data feed are unaffected.
    """
    table = conf.tables.qualified("scored_portfolio")
    row = spark.sql(
        f"OPTIMIZE {quote_name(table)} WHERE as_of_date = DATE'{as_of.isoformat()}' "
        "ZORDER BY (obligor_id)"
    ).first()
    metrics = row["metrics"].asDict() if row is not None else {}
    log.info(
        "%s as of %s: OPTIMIZE ZORDER BY obligor_id removed %s files, added %s",
        table,
        as_of,
        metrics.get("numFilesRemoved"),
        metrics.get("numFilesAdded"),
    )
    return metrics


def after_nightly_write(spark: SparkSession, conf: RiskConf, *, as_of: dt.date) -> None:
    """The nightly job's last step: compact and Z-order the new date, refresh the BI objects."""
    if conf.bi.zorder_after_write:
        compact_scored_date(spark, conf, as_of=as_of)
    publish_bi_objects(spark, conf)
