"""Incremental rescoring: which documents need the model, and which scores can be carried forward.

A document's fingerprint is the sha256 of the model artifact's key, the score-affecting conf and
the assembled document text (and, for a model with structured features, their values). Equal
fingerprints give equal model outputs (pd, n_tokens, truncated, n_chunks, reasons), so a row of
an earlier run with the same obligor and fingerprint can be reused, unless it lacks the reasons
its decision now needs (see split_by_fingerprint); everything else about a row (grade,
decision, report_age_days, lineage) is computed again by the run. Comparing the documents, not
the input tables' versions, also catches a filing that left the lookback window while no input
changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.config import ReasonsConf, ScoringConf
from riskudf.lakehouse.delta import read_version

MODEL_OUTPUTS = ("pd", "n_tokens", "truncated", "n_chunks", "reasons")


def score_conf_key(
    conf: ScoringConf,
    reasons: ReasonsConf | None = None,
    environment: Mapping[str, str] | None = None,
) -> str:
    """Hash of the scoring settings that change model outputs.

    ``precision`` and the device (``auto`` resolves differently on a GPU) do: the window
    (max_length) is the manifest's and so part of the model key; the filing lookback shows in
    the document text; token_budget and arrow_batch_rows change how documents are batched, not
    what the model computes for them. So does how reasons are computed (enabled, method,
    max_reasons, library), but not which decisions get them: a row that lacks the reasons its
    decision needs is rescored (split_by_fingerprint), one that no longer needs them has them
    set to null after grading. ``environment`` (lineage.environment: library versions) does
    too: a new torch or transformers may compute a document differently.
    """
    affecting: dict[str, object] = {"precision": conf.precision, "gpu": conf.gpu is not None}
    if reasons is not None and reasons.enabled:
        affecting["reasons"] = reasons.model_dump(exclude={"decisions"})
    if environment is not None:
        affecting["environment"] = dict(environment)
    return hashlib.sha256(json.dumps(affecting, sort_keys=True).encode()).hexdigest()


def fingerprint_expr(
    document: Column, *, model_key: str, conf_key: str, features: Sequence[str] = ()
) -> Column:
    """sha256 of model key, conf key and document text (a hex string; never the text).

    ``features``: a fused model's feature columns, whose values (as JSON, named) are hashed
    after the text, so that a changed bureau attribute rescores an unchanged document. Text-only
    models pass none, and their fingerprints are those of earlier releases.
    """
    parts = [F.lit(f"{model_key}\n{conf_key}\n"), F.coalesce(document, F.lit(""))]
    if features:
        parts += [F.lit("\n"), F.to_json(F.struct(*[F.col(c) for c in features]))]
    return F.sha2(F.concat(*parts), 256)


def split_by_fingerprint(
    documents: DataFrame, previous: DataFrame | None, *, lacks_reasons: Column | None = None
) -> tuple[DataFrame, DataFrame | None]:
    """Documents that need the model, and carried rows with the earlier run's model outputs.

    ``documents`` has obligor_id, fingerprint, n_filings, report_age_days, redactions and
    document;
    ``previous`` has obligor_id, fingerprint, the model outputs and scored_run_id (one row per
    obligor). The carried rows have the model outputs, carried_forward true and scored_run_id,
    and the documents' own n_filings and report_age_days. ``lacks_reasons`` (over
    ``previous``): rows that are flagged under this run's grading but have no reasons (scored
    when they were not flagged, or before reasons existed); they go to the model again.
    """
    if previous is None:
        return documents, None
    keys = ["obligor_id", "fingerprint"]
    usable = F.col("fingerprint").isNotNull()
    if lacks_reasons is not None:
        usable = usable & ~F.coalesce(lacks_reasons, F.lit(False))
    reusable = previous.where(usable).select(*keys, *MODEL_OUTPUTS, "scored_run_id")
    to_score = documents.join(reusable.select(*keys), keys, "left_anti")
    carried = documents.join(reusable, keys, "inner").select(
        "obligor_id",
        "fingerprint",
        "n_filings",
        "report_age_days",
        "redactions",
        *MODEL_OUTPUTS,
        F.lit(True).alias("carried_forward"),
        "scored_run_id",
    )
    return to_score, carried


def previous_run(
    spark: SparkSession, *, scored_table: str, scored_version: int, runs_table: str, as_of: dt.date
) -> tuple[str, dt.date] | None:
    """The latest successful run on or before ``as_of`` whose rows are still in the table.

    Latest: the greatest as-of date, then the last to finish. Runs superseded by a rerun of
    their date, and failed runs, are skipped. Reads ``scored_table`` at ``scored_version``.
    """
    current = (
        read_version(spark, scored_table, scored_version, {})
        .where(F.col("as_of_date") <= F.lit(as_of))
        .select("run_id", "as_of_date")
        .distinct()
    )
    row = (
        spark.table(runs_table)
        .where((F.col("status") == "success") & (F.col("as_of_date") <= F.lit(as_of)))
        .join(current, ["run_id", "as_of_date"], "left_semi")
        .orderBy(F.col("as_of_date").desc(), F.col("finished_at").desc())
        .select("run_id", "as_of_date")
        .first()
    )
    return (str(row["run_id"]), row["as_of_date"]) if row else None


def previous_rows(
    spark: SparkSession, *, scored_table: str, scored_version: int, run: tuple[str, dt.date]
) -> DataFrame:
    """That run's rows, pinned at ``scored_version``, with scored_run_id filled in."""
    run_id, as_of = run
    return (
        read_version(spark, scored_table, scored_version, {})
        .where((F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == F.lit(run_id)))
        .select(
            "obligor_id",
            "fingerprint",
            *MODEL_OUTPUTS,
            F.coalesce(F.col("scored_run_id"), F.col("run_id")).alias("scored_run_id"),
        )
    )
