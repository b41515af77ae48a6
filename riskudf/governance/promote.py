"""A promotion through the gate: evidence, tests, decision, record, and the alias change.

Rollback is a promotion of an earlier version: same evidence, same record."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.config import GateConf, RiskConf
from riskudf.governance import gate
from riskudf.governance import statistics as st
from riskudf.governance.evidence import (
    EvidenceError,
    choose_cohorts,
    cohort_documents,
    grade_rows,
    load_version,
    matured_dates,
    migration_matrix,
    score_cohorts,
    training_dates,
)
from riskudf.governance.gate import TestResult
from riskudf.governance.robustness import SUITE
from riskudf.lakehouse.delta import append, ensure_table_and_database, schema
from riskudf.lakehouse.schemas import (
    MODEL_PROMOTIONS_COLUMNS,
    MODEL_PROMOTIONS_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.model import aliases
from riskudf.model.artifact import Manifest
from riskudf.training.dataset import Knowledge
from riskudf.training.evaluate import GradeRow

log = logging.getLogger(__name__)

MATURED, TEST_SPLIT = "matured", "test_split"


@dataclass(frozen=True)
class Promotion:
    promotion_id: str
    model_name: str
    model_version: str
    previous_champion: str | None
    decision: str  # promoted, refused, overridden
    results: list[TestResult]
    evidence: str
    report: Path


# Long on purpose: the gate's steps in order, each a named call.
def promote(
    spark: SparkSession,
    conf: RiskConf,
    *,
    model_name: str,
    version: str | None,
    by: str,
    today: dt.date,
    rollback: bool = False,
    reason: str | None = None,
    override_reason: str | None = None,
    cohorts: Sequence[dt.date] = (),
    knowledge: Knowledge = "observation",
) -> Promotion:
    """Test ``version`` of ``model_name`` (default: its challenger; ``rollback``: the champion
    before the current one) and make it champion unless a test is red (or red with an
    ``override_reason``, recorded). Every decision is written to model_promotions and to a
    readable report; a refusal changes no alias."""
    if not by.strip():
        raise EvidenceError("a promotion names who decides it (--by)")
    aliases_table = conf.tables.qualified("model_aliases")
    now = aliases.current(spark, aliases_table, model_name)
    if rollback:
        if version is not None:
            raise EvidenceError("name a --version or ask for the rollback, not both")
        previous = now[aliases.CHAMPION].previous_version if aliases.CHAMPION in now else None
        if previous is None:
            raise EvidenceError(f"model {model_name} has no earlier champion to roll back to")
        version = previous
    if version is None:
        if aliases.CHALLENGER not in now:
            raise EvidenceError(f"model {model_name} has no challenger: name a --version")
        version = str(now[aliases.CHALLENGER].model_version)
    before = now.get(aliases.CHAMPION)
    if before is not None and before.model_version == version:
        raise EvidenceError(f"{version} is already the champion of {model_name}")
    candidate = load_version(spark, conf, version, allow_unpublished=bool(override_reason))
    scale = [band.grade for band in conf.grading.master_scale]
    dates = choose_cohorts(
        cohorts, matured_dates(spark, conf, today=today), training_dates(spark, candidate)
    )
    documents = cohort_documents(spark, conf, dates, knowledge=knowledge, today=today)
    documents = documents.persist(StorageLevel.MEMORY_AND_DISK)
    scored = score_cohorts(documents, conf, candidate).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        current = grade_rows(scored, scale)
        matrix = None
        if before is not None:
            champion = load_version(spark, conf, str(before.model_version))
            matrix = migration_matrix(score_cohorts(documents, conf, champion), scored, scale)
    finally:
        scored.unpersist()
        documents.unpersist()
    initial = [GradeRow(**row) for row in candidate.manifest.training.get("test_by_grade") or []]
    results = gate_results(
        current,
        initial,
        initial_auc=initial_auc_of(initial, candidate.manifest.metrics.get("test_auc")),
        matrix=matrix,
        gate_conf=conf.gate,
        robustness=robustness_tests(spark, conf, model_name, candidate.manifest),
        red_kinds=conf.training.robustness.red_kinds,
    )
    decision = gate.decide(results, override_reason)
    promotion_id = uuid.uuid4().hex
    evidence = (
        f"matured cohorts {', '.join(map(str, dates))} (knowledge {knowledge}): "
        f"{sum(r.n for r in current)} obligors, {sum(r.defaults for r in current)} defaults; "
        f"test split of {candidate.manifest.training_table} version "
        f"{candidate.manifest.training_table_version}: {sum(r.n for r in initial)} obligors"
    )
    promotion = Promotion(
        promotion_id,
        model_name,
        version,
        before.model_version if before else None,
        decision,
        results,
        evidence,
        Path(conf.monitoring.report_dir)
        / "promotions"
        / f"{model_name}-{version}-{promotion_id[:8]}.md",
    )
    write_report(promotion, by=by, override_reason=override_reason)
    record(spark, conf, promotion, by=by, override_reason=override_reason)
    if decision != "refused":
        move_aliases(spark, conf, promotion, str(candidate.path), by=by, reason=reason)
    return promotion


def initial_auc_of(initial: Sequence[GradeRow], test_auc: float | None) -> float | None:
    """The test split's AUC on grades, as the current one is computed (grouping into grades
    lowers an AUC: comparing it with the AUC on PDs would flag every model); the AUC on PDs
    only for a model that records no test split per grade."""
    if initial:
        defaults = np.array([r.defaults for r in initial])
        others = np.array([r.n - r.defaults for r in initial])
        found = st.auc_change_test(defaults, others, 0.0)
        if found is not None:
            return found.auc
    return test_auc


def gate_results(
    current: Sequence[GradeRow],
    initial: Sequence[GradeRow],
    *,
    initial_auc: float | None,
    matrix: np.ndarray | None,
    gate_conf: GateConf,
    robustness: Sequence[dict[str, Any]] | None = None,
    red_kinds: Sequence[str] = ("direction", "personal_data"),
) -> list[TestResult]:
    """Every test of the gate on the matured cohorts and on the test split; ``robustness``:
    the tests of the candidate's robustness report (None: it has none)."""
    results = gate.calibration_tests(current, MATURED, gate_conf)
    if initial:
        results += gate.calibration_tests(initial, TEST_SPLIT, gate_conf)
        results.append(gate.concentration_test(current, initial, MATURED, gate_conf))
    else:
        results.append(
            TestResult(
                "herfindahl",
                MATURED,
                gate.PORTFOLIO,
                None,
                None,
                st.NOT_ASSESSED,
                "the model records no test split per grade",
            )
        )
    if initial_auc is not None:
        results.append(gate.discrimination_test(current, initial_auc, MATURED, gate_conf))
    results += gate.stability_tests(matrix, MATURED, gate_conf)
    results += robustness_results(robustness, red_kinds)
    return results


def robustness_results(
    tests: Sequence[dict[str, Any]] | None, red_kinds: Sequence[str]
) -> list[TestResult]:
    """One result per robustness test: a pass green, a failure red for ``red_kinds`` and
    yellow for the others; the statistic is the fail rate."""
    if not tests:
        return [
            TestResult(
                "robustness",
                TEST_SPLIT,
                gate.PORTFOLIO,
                None,
                None,
                st.NOT_ASSESSED,
                "the model has no robustness report (make robustness MODEL=...)",
            )
        ]
    results = []
    for t in tests:
        if t["status"] == "pass":
            colour = st.GREEN
        elif t["status"] == "fail":
            colour = st.RED if t["kind"] in red_kinds else st.YELLOW
        else:
            colour = st.NOT_ASSESSED
        results.append(
            TestResult(
                f"robustness:{t['test']}",
                TEST_SPLIT,
                gate.PORTFOLIO,
                t["fail_rate"],
                None,
                colour,
                f"{t['kind']}: {t['detail']} ({t['threshold']})",
            )
        )
    return results


def robustness_tests(
    spark: SparkSession, conf: RiskConf, model_name: str, manifest: Manifest
) -> list[dict[str, Any]] | None:
    """The version's robustness tests: the latest run in model_robustness (the training job's,
    or a later ``jobs/robustness.py`` run under other thresholds), else its manifest's report;
    None when neither has one."""
    table = conf.tables.qualified("model_robustness")
    if spark.catalog.tableExists(table):
        rows = (
            spark.table(table)
            .where(
                (F.col("model_name") == model_name)
                & (F.col("model_version") == manifest.model_version)
            )
            .collect()  # one row per test of one version
        )
        if rows:
            order = {test.name: i for i, test in enumerate(SUITE)}
            return sorted((row.asDict() for row in rows), key=lambda t: order.get(t["test"], 99))
    summary = manifest.training.get("robustness")
    return list(summary["tests"]) if summary else None


def record(
    spark: SparkSession,
    conf: RiskConf,
    promotion: Promotion,
    *,
    by: str,
    override_reason: str | None,
) -> None:
    table = conf.tables.qualified("model_promotions")
    ensure_table_and_database(
        spark,
        table,
        MODEL_PROMOTIONS_COLUMNS,
        comment=MODEL_PROMOTIONS_COMMENT,
        properties=RETENTION_PROPERTIES,
    )
    row = (
        promotion.promotion_id,
        promotion.model_name,
        promotion.model_version,
        promotion.previous_champion,
        dt.datetime.now(dt.UTC),
        by,
        promotion.decision,
        override_reason if promotion.decision == "overridden" else None,
        promotion.evidence,
        [r.as_row() for r in promotion.results],
        str(promotion.report),
    )
    append(spark.createDataFrame([row], schema(MODEL_PROMOTIONS_COLUMNS)), table)


def move_aliases(
    spark: SparkSession,
    conf: RiskConf,
    promotion: Promotion,
    model_dir: str,
    *,
    by: str,
    reason: str | None,
) -> None:
    """champion -> the version, and a challenger alias on that version removed: one commit."""
    table = conf.tables.qualified("model_aliases")
    changes = [
        aliases.Change(other, None, None, f"promoted to champion ({promotion.promotion_id})")
        for other, row in aliases.current(spark, table, promotion.model_name).items()
        if other != aliases.CHAMPION and row.model_version == promotion.model_version
    ]
    changes.append(
        aliases.Change(
            aliases.CHAMPION,
            promotion.model_version,
            model_dir,
            reason or f"{promotion.decision} through the gate",
        )
    )
    aliases.set_aliases(
        spark,
        table,
        name=promotion.model_name,
        changes=changes,
        by=by,
        promotion_id=promotion.promotion_id,
    )


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def write_report(promotion: Promotion, *, by: str, override_reason: str | None) -> None:
    """The decision and every test as a Markdown page beside the monitoring reports."""
    lines = [
        f"# Promotion of {promotion.model_name} {promotion.model_version}: "
        f"{promotion.decision.upper()}",
        "",
        f"- promotion id: `{promotion.promotion_id}`; decided by {by}",
        f"- champion before: {promotion.previous_champion or 'none'}",
        f"- evidence: {promotion.evidence}",
    ]
    if promotion.decision == "overridden":
        lines.append(f"- **override** of red tests, reason: {override_reason}")
    if promotion.decision == "refused":
        lines.append("- **refused**: a red test; no alias changed")
    lines += [
        "",
        "| test | scope | grade | statistic | p-value | colour | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in promotion.results:
        lines.append(
            f"| {r.test} | {r.scope} | {r.grade} | {_figure(r.statistic)} | "
            f"{_figure(r.pvalue)} | {r.colour} | {r.detail} |"
        )
    promotion.report.parent.mkdir(parents=True, exist_ok=True)
    promotion.report.write_text("\n".join(lines) + "\n")
