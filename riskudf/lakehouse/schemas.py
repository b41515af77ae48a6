"""Every table's columns, comments and properties, from the inputs to the BI views, in one place."""

from __future__ import annotations

# Required input columns and their Spark types; extra columns are allowed and ignored.
PORTFOLIO_COLUMNS = {"obligor_id": "string", "segment": "string", "exposure": "double"}
CREDIT_REPORT_COLUMNS = {
    "report_id": "string",
    "obligor_id": "string",
    "report_date": "date",
    "text": "string",
}
FILING_COLUMNS = {
    "filing_id": "string",
    "obligor_id": "string",
    "filing_date": "date",
    "form_type": "string",
    "text": "string",
}
OUTCOME_COLUMNS = {"obligor_id": "string", "observation_date": "date", "default_12m": "int"}

# Output columns: (name, type, not null, comment). The comments land in the metastore.
ColumnSpec = tuple[str, str, bool, str]

SCORED_PORTFOLIO_COLUMNS: tuple[ColumnSpec, ...] = (
    ("obligor_id", "STRING", True, "obligor key (pseudonymous), as in the portfolio table"),
    ("as_of_date", "DATE", True, "the date the portfolio was scored as of"),
    ("pd", "DOUBLE", True, "probability of default within 12 months, a fraction from 0 to 1"),
    ("grade", "STRING", True, "grade on the master scale of the scoring config, e.g. AAA to CC"),
    ("decision", "STRING", True, "one of approve, review, decline"),
    ("n_tokens", "INT", True, "tokens in the assembled document, before any cut"),
    ("truncated", "BOOLEAN", True, "true when the document was longer than the model window"),
    ("n_chunks", "INT", True, "model windows scored for the document (1 until chunking)"),
    ("n_filings", "INT", True, "filings in the lookback window that went into the document"),
    ("report_age_days", "INT", True, "days from the credit report's date to the as-of date"),
    ("model_version", "STRING", True, "model_version from the model manifest"),
    ("run_id", "STRING", True, "the scoring run, see score_runs"),
    ("scored_at", "TIMESTAMP", True, "when the run wrote this row (UTC)"),
    (
        "fingerprint",
        "STRING",
        False,
        "sha256 of the document, the model artifact and the score-affecting conf; "
        "equal fingerprints give equal model outputs",
    ),
    (
        "carried_forward",
        "BOOLEAN",
        False,
        "true: pd, n_tokens, truncated, n_chunks, reasons copied from an earlier run (incremental)",
    ),
    ("scored_run_id", "STRING", False, "the run whose model call gave pd (run_id when rescored)"),
    (
        "reasons",
        "ARRAY<STRUCT<code: STRING, description: STRING, weight: DOUBLE>>",
        False,
        "up to 4 reason codes of a flagged decision (conf reasons.decisions), largest first; "
        "weight: PD drop when the text behind the code is removed; null for other decisions",
    ),
)

# What the run log keeps of each Python worker that scored (score_runs.scoring_workers, see
# riskudf.scoring.worker.WorkerStats).
WORKER_FIELDS = (
    "executor: STRING, host: STRING, pid: INT, tasks: INT, batches: INT, rows: BIGINT, "
    "model_loads: INT, device: STRING, precision: STRING, resources: ARRAY<STRING>, "
    "max_batch_rows: INT, max_batch_chars: BIGINT, peak_rss_mb: DOUBLE"
)
# What a --reproduce run found (score_runs.reproduction, see riskudf.scoring.reproduce).
REPRODUCTION_FIELDS = (
    "of_run_id: STRING, inputs: STRING, rows_compared: BIGINT, rows_differing: BIGINT, "
    "rows_missing: BIGINT, max_pd_diff: DOUBLE, pd_tolerance: DOUBLE, precision: STRING, "
    "environment_changes: STRING"
)
SCORE_RUNS_COLUMNS: tuple[ColumnSpec, ...] = (
    ("run_id", "STRING", True, "unique id of the scoring run"),
    ("as_of_date", "DATE", True, "the as-of date scored"),
    ("started_at", "TIMESTAMP", True, "when the run started (UTC)"),
    ("finished_at", "TIMESTAMP", True, "when the run ended (UTC)"),
    (
        "status",
        "STRING",
        True,
        "one of success, failed, reproduced (a --reproduce check, which writes no scores)",
    ),
    ("rows_in", "BIGINT", False, "rows of the portfolio table read by the run"),
    ("rows_scored", "BIGINT", False, "rows written to scored_portfolio"),
    ("rows_quarantined", "BIGINT", False, "portfolio rows not scored, see scoring_quarantine"),
    ("records_quarantined", "BIGINT", False, "report and filing records set aside"),
    ("model_version", "STRING", False, "model_version from the model manifest"),
    ("input_versions", "MAP<STRING, BIGINT>", False, "Delta version read of each input table"),
    ("duration_s", "DOUBLE", False, "wall time of the run in seconds"),
    ("error", "STRING", False, "exception class of a failed run; never input text"),
    (
        "alerts_fired",
        "INT",
        False,
        "runs before monitoring became its own phase only: alerts of severity alert; since then "
        "null, see monitor_runs.alerts_fired",
    ),
    ("mode", "STRING", False, "full, incremental or reproduce, as requested"),
    ("rows_carried_forward", "BIGINT", False, "of rows_scored, copied from carried_from_run_id"),
    ("carried_from_run_id", "STRING", False, "the earlier run reused; null when none"),
    (
        "scoring_workers",
        f"ARRAY<STRUCT<{WORKER_FIELDS}>>",
        False,
        "one entry per Python worker that scored: its executor, tasks, batches, rows, model "
        "loads (1 on its first task, 0 after), device, precision, the resources its tasks were "
        "given, the largest Arrow batch (rows, characters) and its peak memory",
    ),
    (
        "knowledge_time",
        "TIMESTAMP",
        False,
        "inputs as known at this time (UTC): each input read at its last Delta version "
        "committed then; the run's start unless --inputs-as-of",
    ),
    (
        "late_records",
        "MAP<STRING, BIGINT>",
        False,
        "per input table: records dated on or before the as-of date (portfolio: obligors) "
        "written after the knowledge time, and so left out",
    ),
    (
        "environment",
        "MAP<STRING, STRING>",
        False,
        "versions of python, torch, transformers, tokenizers, pyspark and delta-spark on the "
        "driver; part of every row's fingerprint",
    ),
    (
        "reproduction",
        f"STRUCT<{REPRODUCTION_FIELDS}>",
        False,
        "mode reproduce only: the run re-scored, how its inputs were read, and how its stored "
        "rows compare (rows compared, differing, largest PD difference)",
    ),
    (
        "redactions",
        "MAP<STRING, BIGINT>",
        False,
        "personal data replaced by a placeholder before the model, per kind (NAME, ADDRESS, "
        "BIRTH_DATE, ...), over the run's scorable documents; counts only, never values",
    ),
)

# Monitoring tables: every row carries the run it describes (run_id, as_of_date); a rerun of the
# monitoring of a run replaces that run's rows. They are partitioned by as_of_date
# (MONITOR_PARTITION) so that runs of different dates write disjoint files and never conflict.
# A whole-table row has slice_key and slice_value null; an attribute that is null for an obligor
# is the slice value ':null'.
_RUN_KEY: tuple[ColumnSpec, ...] = (
    ("run_id", "STRING", True, "the scoring run described, see score_runs"),
    ("as_of_date", "DATE", True, "as-of date of that run"),
)
_MONITORED_AT: ColumnSpec = (
    "monitored_at",
    "TIMESTAMP",
    True,
    "when monitoring wrote the row (UTC)",
)
_SLICE: tuple[ColumnSpec, ...] = (
    ("slice_key", "STRING", False, "the slicing column, e.g. segment; null for the whole table"),
    ("slice_value", "STRING", False, "the slice, e.g. retail; null for the whole table"),
)

MONITOR_PROFILE_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("window_start", "DATE", True, "first day of the profiled window (the as-of date)"),
    ("window_end", "DATE", True, "day after the window, exclusive"),
    ("granularity", "STRING", True, "window length: 1 day (one as-of snapshot)"),
    ("model_version", "STRING", False, "model_version of the scored rows"),
    *_SLICE,
    ("column_name", "STRING", True, "profiled column; :table for table-level counts"),
    ("data_type", "STRING", True, "numeric, categorical or table"),
    ("count", "BIGINT", True, "rows in the slice"),
    ("num_nulls", "BIGINT", True, "rows where the column is null"),
    ("percent_null", "DOUBLE", False, "num_nulls / count, 0 to 1"),
    ("avg", "DOUBLE", False, "mean of the non-null values (numeric)"),
    ("stddev", "DOUBLE", False, "sample standard deviation (numeric)"),
    ("min", "DOUBLE", False, "smallest value (numeric)"),
    ("max", "DOUBLE", False, "largest value (numeric)"),
    (
        "quantiles",
        "ARRAY<DOUBLE>",
        False,
        "at probabilities 0, .01, .05, .1, .25, .5, .75, .9, .95, .99, 1 "
        "(percentile_approx, accuracy 10000: rank error at most count/10000)",
    ),
    (
        "distinct_count",
        "BIGINT",
        False,
        "distinct non-null values; exact except for pd (HyperLogLog++, rsd 0.01)",
    ),
    (
        "frequent_items",
        "ARRAY<STRUCT<item: STRING, count: BIGINT>>",
        False,
        "up to 10 most frequent values with counts (categorical)",
    ),
    _MONITORED_AT,
)

MONITOR_HISTOGRAM_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    *_SLICE,
    ("column_name", "STRING", True, "the column"),
    ("bin_index", "BIGINT", False, "fine bin of a numeric column; null for categories and nulls"),
    ("bin_lower", "DOUBLE", False, "inclusive lower bound of the bin"),
    ("bin_upper", "DOUBLE", False, "exclusive upper bound of the bin"),
    ("category", "STRING", False, "value of a categorical column; null for bins and nulls"),
    ("count", "BIGINT", True, "rows in the bin or category"),
    _MONITORED_AT,
)

MONITOR_DRIFT_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("drift_type", "STRING", True, "BASELINE (model reference) or CONSECUTIVE (previous run)"),
    ("reference_run_id", "STRING", False, "the previous run compared with; null for BASELINE"),
    ("reference_as_of_date", "DATE", False, "as-of date of the previous run; null for BASELINE"),
    ("reference_model_version", "STRING", False, "model whose baseline or run is the reference"),
    *_SLICE,
    ("column_name", "STRING", True, "the compared column"),
    ("data_type", "STRING", True, "numeric or categorical"),
    ("count", "BIGINT", True, "non-null values in this run"),
    ("reference_count", "BIGINT", True, "non-null values in the reference"),
    ("count_delta", "BIGINT", True, "count minus reference_count"),
    ("avg_delta", "DOUBLE", False, "mean minus reference mean (numeric, from the fine bins)"),
    ("psi", "DOUBLE", False, "population stability index: sum (a - e) ln(a / e), e: reference"),
    ("psi_bins", "INT", False, "bins used by PSI and JS: reference deciles, or categories"),
    ("ks_statistic", "DOUBLE", False, "two-sample Kolmogorov-Smirnov D (numeric)"),
    ("ks_pvalue", "DOUBLE", False, "asymptotic two-sided p-value of D"),
    ("ks_error_bound", "DOUBLE", False, "max |D - exact D|: 0 for integer columns"),
    ("js_distance", "DOUBLE", False, "Jensen-Shannon distance, base 2 (0 to 1), on psi bins"),
    ("wasserstein_distance", "DOUBLE", False, "earth mover distance in the column unit"),
    ("wasserstein_error_bound", "DOUBLE", False, "max error: the fine bin width, 0 for integers"),
    ("chi_squared_statistic", "DOUBLE", False, "homogeneity test of the categories"),
    ("chi_squared_pvalue", "DOUBLE", False, "p-value of the chi-squared statistic"),
    _MONITORED_AT,
)

MONITOR_MIGRATION_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("previous_run_id", "STRING", True, "the previous successful run"),
    ("previous_as_of_date", "DATE", True, "its as-of date"),
    *_SLICE,
    ("record_type", "STRING", True, "cell (one from/to pair) or summary (the slice)"),
    ("from_grade", "STRING", False, "grade in the previous run; null: new obligor or summary"),
    ("to_grade", "STRING", False, "grade in this run; null: obligor left or summary"),
    ("notches", "INT", False, "to minus from on the master scale; positive is a downgrade"),
    ("count", "BIGINT", True, "obligors in the cell, or matched obligors of the slice"),
    ("rate", "DOUBLE", False, "cell count / obligors with that from_grade (matched)"),
    ("upgrade_share", "DOUBLE", False, "summary: share of matched obligors upgraded"),
    ("downgrade_share", "DOUBLE", False, "summary: share downgraded"),
    ("stable_share", "DOUBLE", False, "summary: share with the same grade"),
    ("moved_over_notches", "INT", False, "summary: N of moved_over_share (conf)"),
    ("moved_over_share", "DOUBLE", False, "summary: share moving more than N notches"),
    ("new_obligors", "BIGINT", False, "summary: in this run only"),
    ("exited_obligors", "BIGINT", False, "summary: in the previous run only"),
    _MONITORED_AT,
)

MONITOR_BACKTEST_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("cohort_date", "DATE", True, "as-of date of the scores whose outcomes matured"),
    ("cohort_run_id", "STRING", True, "the run that wrote those scores"),
    ("horizon_months", "INT", True, "outcome horizon"),
    *_SLICE,
    ("grade", "STRING", False, "the grade; null for all grades"),
    ("n", "BIGINT", True, "scored obligors with an outcome"),
    ("defaults", "BIGINT", True, "of which defaulted within the horizon"),
    ("mean_pd", "DOUBLE", True, "mean predicted PD"),
    ("observed_dr", "DOUBLE", True, "defaults / n"),
    ("jeffreys_lower", "DOUBLE", True, "Jeffreys interval of the DR: Beta(d+.5, n-d+.5) 2.5 %"),
    ("jeffreys_upper", "DOUBLE", True, "97.5 % quantile of that Beta"),
    ("jeffreys_pvalue", "DOUBLE", True, "one-sided: P(DR <= mean_pd); small: PD too low"),
    ("auc", "DOUBLE", False, "area under the ROC curve (all grades rows)"),
    ("auc_error_bound", "DOUBLE", False, "max |AUC - exact AUC| from 1e-4 PD bins"),
    ("gini", "DOUBLE", False, "2 AUC - 1"),
    ("ks_statistic", "DOUBLE", False, "max gap of defaulter and non-defaulter PD CDFs"),
    ("brier", "DOUBLE", False, "mean (pd - default)^2, exact"),
    ("log_loss", "DOUBLE", False, "mean log loss, pd clipped to [eps, 1 - eps], exact"),
    ("hosmer_lemeshow_statistic", "DOUBLE", False, "over PD decile groups"),
    ("hosmer_lemeshow_pvalue", "DOUBLE", False, "chi-squared with groups - 2 df"),
    ("hosmer_lemeshow_groups", "INT", False, "groups used"),
    _MONITORED_AT,
)

MONITOR_ESTIMATES_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("cohort_date", "DATE", True, "this run's date, or a matured cohort's"),
    ("grade", "STRING", False, "the grade; null for the whole portfolio"),
    ("obligors", "BIGINT", True, "scored obligors (matured cohorts: those with an outcome)"),
    ("expected_defaults", "DOUBLE", True, "sum of PDs: defaults expected if PDs are calibrated"),
    ("expected_dr", "DOUBLE", True, "mean PD"),
    ("dr_lower", "DOUBLE", True, "lower end of the band of the default rate (simulated)"),
    ("dr_upper", "DOUBLE", True, "upper end of that band"),
    ("expected_auc", "DOUBLE", False, "AUC of the expected confusion (portfolio rows)"),
    ("auc_lower", "DOUBLE", False, "lower end of its band (simulated outcomes)"),
    ("auc_upper", "DOUBLE", False, "upper end of its band"),
    ("band_level", "DOUBLE", True, "the bands' coverage (monitoring.estimate_level)"),
    ("realised_obligors", "BIGINT", False, "matured cohorts: obligors with an outcome"),
    ("realised_defaults", "BIGINT", False, "matured cohorts: defaults within the horizon"),
    ("realised_dr", "DOUBLE", False, "matured cohorts: the realised default rate"),
    ("realised_auc", "DOUBLE", False, "matured cohorts: the realised AUC (portfolio rows)"),
    _MONITORED_AT,
)

MONITOR_FAIRNESS_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("cohort_date", "DATE", True, "as-of date of the decisions: this run, or a matured cohort"),
    ("attribute", "STRING", True, "protected or proxy attribute, e.g. age_band"),
    ("group_value", "STRING", True, "the group"),
    ("reference_group", "STRING", True, "the reference group of the attribute (conf)"),
    ("n", "BIGINT", True, "obligors in the group"),
    ("approvals", "BIGINT", True, "of which decision approve"),
    ("approval_rate", "DOUBLE", True, "approvals / n"),
    ("disparate_impact", "DOUBLE", False, "approval_rate / reference approval_rate"),
    ("n_non_default", "BIGINT", False, "obligors without default (matured cohorts only)"),
    ("approval_rate_non_default", "DOUBLE", False, "approvals among them (true positive rate)"),
    (
        "equal_opportunity_difference",
        "DOUBLE",
        False,
        "approval_rate_non_default minus that of the reference group",
    ),
    _MONITORED_AT,
)

MONITOR_ALERTS_COLUMNS: tuple[ColumnSpec, ...] = (
    ("alert_id", "STRING", True, "unique id of the alert"),
    ("run_id", "STRING", True, "the scoring run the alert was raised on, see score_runs"),
    ("as_of_date", "DATE", True, "as-of date of that run"),
    ("rule", "STRING", True, "the monitoring rule, e.g. psi_pd or default_rate_by_grade"),
    ("severity", "STRING", True, "one of warn, alert"),
    ("metric", "STRING", True, "the measured metric, e.g. population_stability_index"),
    ("slice_key", "STRING", False, "the slicing column, e.g. segment; null for the whole table"),
    ("slice_value", "STRING", False, "the slice, e.g. retail; null for the whole table"),
    ("value", "DOUBLE", True, "the measured value, in the unit of the metric"),
    ("threshold", "DOUBLE", True, "the threshold the value crossed, same unit"),
    ("created_at", "TIMESTAMP", True, "when the alert was raised (UTC)"),
    ("status", "STRING", True, "open when raised; acknowledgements and closures: alert_actions"),
    ("acknowledged_at", "TIMESTAMP", False, "legacy, null: see alert_actions"),
)
MONITOR_ALERTS_COMMENT = (
    "alerts raised by portfolio monitoring (drift, calibration, fairness); who acknowledged or "
    "closed one, and automatic closures, are in alert_actions"
)

MONITOR_RUNS_COLUMNS: tuple[ColumnSpec, ...] = (
    *_RUN_KEY,
    ("status", "STRING", True, "one of success, failed, skipped (monitoring disabled)"),
    ("started_at", "TIMESTAMP", True, "when monitoring of the run started (UTC)"),
    ("finished_at", "TIMESTAMP", True, "when it ended (UTC)"),
    ("error", "STRING", False, "exception class of a failed monitoring; never input text"),
    ("alerts_fired", "INT", False, "alerts of severity alert raised; null unless success"),
    ("warnings", "INT", False, "alerts of severity warn raised; null unless success"),
    (
        "input_versions",
        "MAP<STRING, BIGINT>",
        False,
        "Delta version read of each table monitoring used: the portfolio at the run's own "
        "input version, outcomes and scored_portfolio as of the monitoring's start",
    ),
)
MONITOR_RUNS_COMMENT = (
    "one row per monitoring of a published scoring run (after its score_runs success row); "
    "append-only: monitoring a run again adds a row"
)

ALERT_ACTIONS_COLUMNS: tuple[ColumnSpec, ...] = (
    ("alert_id", "STRING", True, "the alert, see monitor_alerts"),
    ("run_id", "STRING", True, "the run the alert was raised on"),
    ("as_of_date", "DATE", True, "as-of date of that run"),
    ("action", "STRING", True, "ack (seen, being handled) or close"),
    ("acted_by", "STRING", True, "who: an analyst's name, or riskudf for automatic closures"),
    ("acted_at", "TIMESTAMP", True, "when (UTC)"),
    ("note", "STRING", False, "why; for automatic closures the reason, e.g. superseded by run"),
)
ALERT_ACTIONS_COMMENT = (
    "append-only log of acknowledgements and closures of monitor_alerts; an alert with any "
    "action here is no longer in v_alerts_open"
)
MONITOR_PARTITION = "as_of_date"

SCORED_PORTFOLIO_COMMENT = (
    "PD, grade and decision per obligor and as-of date; one row each, from the latest run of "
    "the date (see score_runs for its status)"
)
SCORE_RUNS_COMMENT = (
    "one row per scoring run, written when the run ends; append-only, never purged (counts, "
    "versions and ids only)"
)
SCORED_HISTORY_COMMENT = (
    "every run's scored rows, superseded runs included (append-only, kept for "
    "tables.retention_days); which run was current when: v_score_history"
)
SCORING_QUARANTINE_COMMENT = (
    "rows and records a run could not score, with a reason code; no input text"
)

# Written by monitoring (issue 3); created empty so that the BI view over it exists from day one.

# Delta table properties. Retention: the log keeps 90 days of history; files a commit removed
# stay 30 days before VACUUM may delete them, so time travel (VERSION AS OF) and the change data
# feed reach back 30 days. Every as-of date stays in the table itself (one partition per date).
# Deletion vectors and column mapping stay off: delta-rs and DuckDB read these tables directly.
RETENTION_PROPERTIES = {
    "delta.logRetentionDuration": "interval 90 days",
    "delta.deletedFileRetentionDuration": "interval 30 days",
    "delta.enableDeletionVectors": "false",
}
SCORED_PORTFOLIO_PROPERTIES = {
    **RETENTION_PROPERTIES,
    "delta.enableChangeDataFeed": "true",
}


def history_properties(retention_days: int) -> dict[str, str]:
    """Properties of the tables that keep every run (scored_history, score_runs): their log,
    and so their own commit history, lasts as long as the retention. Their rows stay in the
    table itself, never removed by a rerun; the files of rows the retention purge deletes go
    with VACUUM after the usual 30 days, not another retention period."""
    return {
        **RETENTION_PROPERTIES,
        "delta.logRetentionDuration": f"interval {retention_days} days",
    }


SCORING_QUARANTINE_COLUMNS: tuple[ColumnSpec, ...] = (
    ("run_id", "STRING", True, "the scoring run, see score_runs"),
    ("as_of_date", "DATE", True, "the as-of date of that run"),
    ("source_table", "STRING", True, "the input table the row or record came from"),
    ("record_key", "STRING", False, "its key there (obligor_id, report_id or filing_id)"),
    ("obligor_id", "STRING", False, "the obligor concerned; null when the key itself is null"),
    (
        "reason_code",
        "STRING",
        True,
        "why it was set aside, see riskudf/documents/quarantine.py REASONS",
    ),
    ("detail", "STRING", False, "counts and ids only; never input text"),
    ("quarantined_at", "TIMESTAMP", True, "when the run wrote this row (UTC)"),
)

SCORING_LOCKS_COLUMNS: tuple[ColumnSpec, ...] = (
    ("as_of_date", "DATE", True, "the as-of date a run is scoring"),
    ("run_id", "STRING", True, "the run that holds the date"),
    ("holder", "STRING", True, "host and process id of that run's driver"),
    ("acquired_at", "TIMESTAMP", True, "UTC"),
    ("expires_at", "TIMESTAMP", True, "after this the lock counts as abandoned (UTC)"),
)

SCORING_LOCK_RELEASES_COLUMNS: tuple[ColumnSpec, ...] = (
    ("as_of_date", "DATE", True, "the as-of date whose lease an operator released"),
    ("run_id", "STRING", True, "the run that held it"),
    ("holder", "STRING", True, "host and process id of that run's driver"),
    ("released_by", "STRING", True, "who released it"),
    ("reason", "STRING", True, "why, as the operator gave it"),
    ("released_at", "TIMESTAMP", True, "when (UTC)"),
)
SCORING_LOCK_RELEASES_COMMENT = (
    "leases on as-of dates that an operator force-released (jobs/leases.py release), with why"
)


MODEL_REGISTRY_COLUMNS: tuple[ColumnSpec, ...] = (
    ("model_version", "STRING", True, "model_version of the manifest"),
    ("created_at", "TIMESTAMP", True, "when the model was published (UTC)"),
    ("model_dir", "STRING", True, "where the model directory was published"),
    ("backbone", "STRING", True, "the pretrained encoder it was fine-tuned from"),
    ("method", "STRING", False, "full or lora"),
    ("training_table", "STRING", True, "the Delta table it was trained on (name or path)"),
    ("training_table_version", "BIGINT", False, "that table's Delta version"),
    ("parent_model", "STRING", False, "the model version it replaced at model_dir, if any"),
    ("calibration", "STRING", True, "calibration method: none, temperature, platt, isotonic"),
    ("metrics", "MAP<STRING, DOUBLE>", True, "validation_* and test_* figures of the manifest"),
    (
        "verdict",
        "STRING",
        False,
        "transformer_better or benchmark_better (TF-IDF + LR, validation)",
    ),
    ("published", "BOOLEAN", False, "false: set aside at model_dir, the benchmark won"),
    ("robustness", "STRING", False, "the robustness report's verdict (risk.model_robustness)"),
    ("quantized_from", "STRING", False, "an int8 version: the fp32 version it was made from"),
)
MODEL_REGISTRY_COMMENT = "one row per trained model: published, or set aside (published false)"

MODEL_ALIASES_COLUMNS: tuple[ColumnSpec, ...] = (
    ("model_name", "STRING", True, "the model (its directory's name, e.g. demo)"),
    ("alias", "STRING", True, "champion, challenger, or another challenger's name"),
    ("model_version", "STRING", False, "the version the alias points at from now; null: removed"),
    ("model_dir", "STRING", False, "that version's directory (immutable)"),
    ("previous_version", "STRING", False, "the version it pointed at before"),
    ("changed_at", "TIMESTAMP", True, "when (UTC)"),
    ("changed_by", "STRING", True, "who"),
    ("reason", "STRING", True, "why, in words"),
    ("promotion_id", "STRING", False, "the promotion record that decided it, if any"),
)
GATE_TEST_TYPE = (
    "ARRAY<STRUCT<test: STRING, scope: STRING, grade: STRING, statistic: DOUBLE, "
    "pvalue: DOUBLE, colour: STRING, detail: STRING>>"
)
MODEL_PROMOTIONS_COLUMNS: tuple[ColumnSpec, ...] = (
    ("promotion_id", "STRING", True, "this decision"),
    ("model_name", "STRING", True, "the model"),
    ("model_version", "STRING", True, "the version put to the gate"),
    ("previous_champion", "STRING", False, "the champion before the decision"),
    ("decided_at", "TIMESTAMP", True, "when (UTC)"),
    ("decided_by", "STRING", True, "who"),
    ("decision", "STRING", True, "promoted, refused (a red test) or overridden (red, with reason)"),
    ("override_reason", "STRING", False, "the written reason of an override"),
    ("evidence", "STRING", True, "the matured cohorts scored and the test split used"),
    ("tests", GATE_TEST_TYPE, True, "each test: statistic, p-value, colour (green/yellow/red)"),
    ("report", "STRING", False, "the readable report's path"),
)
MODEL_PROMOTIONS_COMMENT = "every promotion decision of the gate, refusals included, never updated"

MODEL_ROBUSTNESS_COLUMNS: tuple[ColumnSpec, ...] = (
    ("model_name", "STRING", True, "the model (its directory's name, e.g. demo)"),
    ("model_version", "STRING", True, "the version tested"),
    ("assessed_at", "TIMESTAMP", True, "when the suite ran (UTC)"),
    ("source", "STRING", True, "the documents perturbed: the test split of a training table"),
    ("test", "STRING", True, "the perturbation, e.g. typos, going_concern_added"),
    ("kind", "STRING", True, "invariance, direction or personal_data"),
    ("expect", "STRING", True, "same (PD unchanged), up or down"),
    ("cases", "INT", True, "test documents the perturbation applied to"),
    ("failed", "INT", True, "cases that failed"),
    ("fail_rate", "DOUBLE", False, "failed / cases; null when not assessed"),
    ("mean_pd_change", "DOUBLE", False, "mean calibrated PD change, after minus before"),
    ("max_abs_pd_change", "DOUBLE", False, "largest absolute calibrated PD change"),
    ("grade_flip_rate", "DOUBLE", False, "share of cases whose grade changed"),
    ("decision_flip_rate", "DOUBLE", False, "share of cases whose decision changed"),
    ("threshold", "STRING", True, "the pass threshold of conf"),
    ("status", "STRING", True, "pass, fail or not_assessed"),
    ("detail", "STRING", True, "counts behind the status"),
)
MODEL_ROBUSTNESS_COMMENT = (
    "the robustness report of each model version (latest run per version; earlier runs in the "
    "table's history)"
)

SHADOW_SCORES_COLUMNS: tuple[ColumnSpec, ...] = (
    ("obligor_id", "STRING", True, "obligor key (pseudonymous)"),
    ("as_of_date", "DATE", True, "the date scored as of"),
    ("model_name", "STRING", True, "the model whose challenger this is"),
    ("alias", "STRING", True, "the challenger's alias"),
    ("model_version", "STRING", True, "the challenger's version"),
    ("pd", "DOUBLE", True, "the challenger's probability of default within 12 months"),
    ("grade", "STRING", True, "its grade on the master scale"),
    ("decision", "STRING", True, "its decision: approve, review, decline"),
    ("segment", "STRING", False, "the obligor's segment (portfolio)"),
    ("run_id", "STRING", True, "the nightly run that scored it beside the champion"),
)
MONITOR_SHADOW_COLUMNS: tuple[ColumnSpec, ...] = (
    ("run_id", "STRING", True, "the nightly run"),
    ("as_of_date", "DATE", True, "its as-of date"),
    ("model_name", "STRING", True, "the model"),
    ("alias", "STRING", True, "the challenger's alias"),
    ("model_version", "STRING", True, "the challenger's version"),
    ("champion_version", "STRING", True, "the champion's version (scored_portfolio)"),
    ("segment", "STRING", True, "a segment, or 'all'"),
    ("obligors", "BIGINT", True, "obligors both scored"),
    ("grade_flips", "BIGINT", True, "obligors whose grade differs"),
    ("grade_flip_share", "DOUBLE", False, "grade_flips / obligors"),
    ("decision_flips", "BIGINT", True, "obligors whose decision differs"),
    ("decision_flip_share", "DOUBLE", False, "decision_flips / obligors"),
    ("psi", "DOUBLE", False, "PSI of the challenger's PDs against the champion's (its deciles)"),
    (
        "matured_as_of",
        "DATE",
        False,
        "segment all: the latest cohort with matured outcomes that the challenger scored in "
        "shadow; null when there is none yet",
    ),
    (
        "matured_champion_version",
        "STRING",
        False,
        "the champion that scored that cohort in the same run as the challenger",
    ),
    ("matured_obligors", "BIGINT", False, "obligors of that cohort scored by both, with outcomes"),
    ("matured_defaults", "BIGINT", False, "of which defaulted within the horizon"),
    ("champion_auc", "DOUBLE", False, "that champion's AUC on the cohort (PD bins of 1e-4)"),
    ("challenger_auc", "DOUBLE", False, "the challenger's AUC on the same obligors"),
    ("auc_difference", "DOUBLE", False, "challenger_auc - champion_auc"),
    (
        "auc_difference_pvalue",
        "DOUBLE",
        False,
        "DeLong's paired test of the difference, two-sided",
    ),
    ("computed_at", "TIMESTAMP", True, "when (UTC)"),
)
MONITOR_SHADOW_COMMENT = (
    "per run, challenger and segment: grade and decision flips, PSI of PDs; on the latest "
    "matured cohort, both AUCs and DeLong's test"
)
SHADOW_SCORES_COMMENT = (
    "challengers' scores of the nightly documents, never used for decisions; the champion's "
    "are in scored_portfolio"
)

MODEL_ALIASES_COMMENT = "every change of a model alias, never updated: the latest row is current"


MONITOR_TABLES: dict[str, tuple[tuple[ColumnSpec, ...], str]] = {
    "monitor_profile": (MONITOR_PROFILE_COLUMNS, "per run, slice and column: profile metrics"),
    "monitor_histogram": (MONITOR_HISTOGRAM_COLUMNS, "per run, slice and column: fine bins"),
    "monitor_drift": (MONITOR_DRIFT_COLUMNS, "drift against the model baseline and last run"),
    "monitor_migration": (MONITOR_MIGRATION_COLUMNS, "grade migration against the last run"),
    "monitor_backtest": (MONITOR_BACKTEST_COLUMNS, "matured cohorts: PD against outcomes"),
    "monitor_estimates": (
        MONITOR_ESTIMATES_COLUMNS,
        "default rates and AUC estimated from the PDs alone, with bands; realised beside them "
        "once a cohort matures",
    ),
    "monitor_fairness": (MONITOR_FAIRNESS_COLUMNS, "approval rates per protected group"),
    "monitor_alerts": (MONITOR_ALERTS_COLUMNS, MONITOR_ALERTS_COMMENT),
}
# The run logs of monitoring: append-only (blind appends never conflict), not partitioned.
LOG_TABLES: dict[str, tuple[tuple[ColumnSpec, ...], str]] = {
    "monitor_runs": (MONITOR_RUNS_COLUMNS, MONITOR_RUNS_COMMENT),
    "alert_actions": (ALERT_ACTIONS_COLUMNS, ALERT_ACTIONS_COMMENT),
}


# --- views -------------------------------------------------------------------------------------

ViewColumn = tuple[str, str]  # (name, comment)

LATEST_SCORES_COLUMNS: tuple[ViewColumn, ...] = (
    ("obligor_id", "obligor key (pseudonymous)"),
    ("as_of_date", "as-of date of the latest successful run that scored the obligor"),
    ("pd", "probability of default within 12 months, a fraction from 0 to 1"),
    ("grade", "grade on the master scale, e.g. AAA (best) to CC (worst)"),
    ("decision", "one of approve, review, decline"),
    ("model_version", "model that produced the score"),
    ("run_id", "scoring run, see v_run_history"),
    ("scored_at", "when the run wrote the score (UTC)"),
)
PORTFOLIO_SUMMARY_COLUMNS: tuple[ViewColumn, ...] = (
    ("as_of_date", "as-of date of a successful run"),
    ("segment", "retail or corporate, from the current portfolio table; unknown if gone"),
    ("grade", "grade on the master scale"),
    ("obligors", "number of obligors"),
    ("exposure", "sum of exposure at default, in the portfolio currency"),
    ("mean_pd", "mean probability of default, a fraction from 0 to 1 (not weighted)"),
    ("lgd", "loss given default applied to the segment, a fraction (conf bi.lgd)"),
    ("expected_loss", "sum of PD x exposure x LGD, in the portfolio currency"),
)
ALERTS_OPEN_COLUMNS: tuple[ViewColumn, ...] = (
    ("alert_id", "unique id of the alert"),
    ("run_id", "scoring run the alert was raised on: the current run of its date"),
    ("as_of_date", "as-of date of that run"),
    ("rule", "monitoring rule"),
    ("severity", "one of warn, alert"),
    ("metric", "measured metric"),
    ("slice_key", "slicing column, null for the whole portfolio"),
    ("slice_value", "slice, null for the whole portfolio"),
    ("value", "measured value, in the unit of the metric"),
    ("threshold", "threshold crossed, same unit"),
    ("created_at", "when the alert was raised (UTC)"),
)
RUN_HISTORY_COLUMNS: tuple[ViewColumn, ...] = (
    ("run_id", "unique id of the scoring run"),
    ("as_of_date", "as-of date scored"),
    ("status", "one of success, failed, reproduced"),
    ("is_current", "true when the scored table holds this run's rows for its date"),
    ("started_at", "UTC"),
    ("finished_at", "UTC"),
    ("duration_s", "wall time in seconds"),
    ("rows_in", "obligors in the portfolio"),
    ("rows_scored", "rows written"),
    ("rows_quarantined", "portfolio rows set aside, see scoring_quarantine"),
    ("model_version", "model used"),
    ("input_versions", "JSON object: Delta version read of each input table"),
    ("error", "exception class of a failed run, else null"),
    (
        "monitoring_status",
        "latest monitoring of the run: success, failed or skipped; null when not recorded "
        "(failed scoring runs, runs before monitor_runs)",
    ),
    (
        "alerts_fired",
        "alerts of severity alert raised by that monitoring (monitor_runs; older runs: "
        "score_runs.alerts_fired)",
    ),
    ("mode", "full, incremental or reproduce"),
    ("knowledge_time", "inputs as known at this time (UTC); null for runs before it existed"),
)
SCORE_HISTORY_COLUMNS: tuple[ViewColumn, ...] = (
    ("obligor_id", "obligor key (pseudonymous)"),
    ("as_of_date", "as-of date scored"),
    ("pd", "probability of default within 12 months, a fraction from 0 to 1"),
    ("grade", "grade on the master scale"),
    ("decision", "one of approve, review, decline"),
    ("model_version", "model that produced the score"),
    ("run_id", "scoring run, see v_run_history"),
    ("scored_at", "when the run wrote the score (UTC)"),
    ("current_from", "when the run finished and its rows became the date's current rows (UTC)"),
    (
        "current_until",
        "when a later run of the same date replaced them (UTC); null while they are current",
    ),
    ("superseded_by_run_id", "that later run; null while current"),
    ("is_current", "true when these are the date's rows in scored_portfolio"),
)
