"""Incremental rescoring and backfill on small inline inputs, with the tiny model."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import PD_ATOL, publish_tiny, reasons_close
from pyspark.sql import functions as F

from riskudf.config import GpuConf, RiskConf, ScoringConf, load_config
from riskudf.lakehouse.delta import overwrite_table
from riskudf.lakehouse.schemas import SCORED_PORTFOLIO_COLUMNS
from riskudf.scoring.incremental import score_conf_key
from riskudf.scoring.pipeline import backfill, score_portfolio

ROOT = Path(__file__).resolve().parents[1]

D1 = dt.date(2026, 11, 20)
D2 = dt.date(2026, 11, 21)
LOOKBACK = 730
# C's filing is in the lookback window (as_of - 730 days, as_of] on D1 and leaves it on D2.
LEAVING = D1 - dt.timedelta(days=LOOKBACK - 1)
REPORT = "Payment history: {n} accounts, all paid as agreed. Utilisation {u} percent."
FILING = "Annual report: revenue grew {g} percent; no covenant breaches."
# Every column but pd and reasons (compared with a tolerance), the run's lineage and the
# carry-forward bookkeeping.
COMPARED = [
    name
    for name, _, _, _ in SCORED_PORTFOLIO_COLUMNS
    if name not in ("pd", "reasons", "run_id", "scored_at", "carried_forward", "scored_run_id")
]


def small_conf(make_conf, database: str, model_dir: Path, **overrides: object) -> RiskConf:
    return load_config(
        make_conf(
            database=database,
            model_dir=model_dir,
            scoring__partitions=2,
            monitoring__enabled=False,
            **{"reasons__decisions": ["review", "decline"], **overrides},
        )
    )


def write_inputs(spark, database: str) -> None:
    """A-F: A, B and C will change on D2; D has no report (quarantined); E, F stay as they are."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    portfolio = spark.createDataFrame(
        [(o, "retail" if o < "D" else "corporate", 1000.0) for o in "ABCDEF"],
        "obligor_id string, segment string, exposure double",
    )
    reports = spark.createDataFrame(
        [
            (f"R-{o}", o, dt.date(2026, 6, 1), REPORT.format(n=i + 2, u=10 * i + 5))
            for i, o in enumerate("ABCEF")
        ],
        "report_id string, obligor_id string, report_date date, text string",
    )
    filings = spark.createDataFrame(
        [
            ("F-C1", "C", LEAVING, "10-K", FILING.format(g=3)),
            ("F-C2", "C", dt.date(2026, 3, 1), "10-Q", FILING.format(g=1)),
            ("F-E1", "E", dt.date(2026, 2, 1), "10-K", FILING.format(g=7)),
        ],
        "filing_id string, obligor_id string, filing_date date, form_type string, text string",
    )
    overwrite_table(portfolio, f"{database}.portfolio")
    overwrite_table(reports, f"{database}.credit_reports")
    overwrite_table(filings, f"{database}.filings")


def rows_of(spark, database: str, as_of: dt.date) -> dict[str, dict]:
    table = spark.table(f"{database}.scored_portfolio").where(F.col("as_of_date") == as_of)
    return {r["obligor_id"]: r.asDict() for r in table.collect()}


def test_score_conf_key_changes_with_precision_device_and_reason_library_only(
    tmp_path: Path,
) -> None:
    base = ScoringConf(model_dir=str(tmp_path))
    assert score_conf_key(base) == score_conf_key(
        base.model_copy(update={"token_budget": 1024, "arrow_batch_rows": 64})
    )
    assert score_conf_key(base) != score_conf_key(base.model_copy(update={"precision": "bf16"}))
    gpu = GpuConf(discovery_script="conf/gpu/discover_gpus.sh")
    assert score_conf_key(base) != score_conf_key(base.model_copy(update={"gpu": gpu}))
    reasons = load_config(ROOT / "conf/local.yaml").reasons
    assert score_conf_key(base, reasons.model_copy(update={"enabled": False})) == score_conf_key(
        base
    )
    assert score_conf_key(base, reasons) != score_conf_key(base)
    # Which decisions get reasons is not a model output: rows are rescored only if they lack them.
    review_too = reasons.model_copy(update={"decisions": ("review", "decline")})
    assert reasons.decisions == ("decline",)
    assert score_conf_key(base, review_too) == score_conf_key(base, reasons)
    fewer = reasons.model_copy(update={"max_reasons": 2})
    assert score_conf_key(base, fewer) != score_conf_key(base, reasons)


def inputs_line(caplog: pytest.LogCaptureFixture, run_id: str) -> dict[str, object]:
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "riskudf.scoring.progress"
    ]
    return next(x for x in lines if x["run_id"] == run_id and x["stage"] == "inputs")


def test_incremental_rescores_changed_obligors_only_and_matches_a_full_run(
    spark,
    tiny_model,
    make_conf,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="riskudf.scoring.progress")
    # A job's logging setup (run by an earlier test) stops propagation to caplog's root handler.
    monkeypatch.setattr(logging.getLogger("riskudf.scoring.progress"), "propagate", True)
    write_inputs(spark, "incr_test")
    conf = small_conf(make_conf, "incr_test", tiny_model)
    first = score_portfolio(spark, conf, as_of=D1, mode="incremental")
    assert (first.rows_scored, first.rows_carried_forward) == (5, 0)
    assert first.carried_from_run_id is None
    assert inputs_line(caplog, first.run_id)["carried_from_run_id"] is None
    d1 = rows_of(spark, "incr_test", D1)

    # A gets a new report, B's report is corrected in place; C's older filing leaves the window.
    spark.sql(
        "INSERT INTO incr_test.credit_reports VALUES "
        f"('R-A2', 'A', DATE'{D2}', 'Payment history: 2 accounts, one 60 days past due.')"
    )
    spark.sql(
        "UPDATE incr_test.credit_reports "
        "SET text = 'Payment history: 3 accounts, one charged off.' WHERE report_id = 'R-B'"
    )
    second = score_portfolio(spark, conf, as_of=D2, mode="incremental")
    incremental = rows_of(spark, "incr_test", D2)

    assert (second.rows_scored, second.rows_carried_forward) == (5, 2)
    assert second.rows_quarantined == 1  # D: no report
    assert second.carried_from_run_id == first.run_id
    assert inputs_line(caplog, second.run_id)["carried_from_run_id"] == first.run_id
    rescored = {o for o, r in incremental.items() if not r["carried_forward"]}
    assert rescored == {"A", "B", "C"}
    assert {o: incremental[o]["scored_run_id"] for o in incremental} == {
        "A": second.run_id,
        "B": second.run_id,
        "C": second.run_id,
        "E": first.run_id,
        "F": first.run_id,
    }
    assert {r["run_id"] for r in incremental.values()} == {second.run_id}
    for o in "EF":  # the model outputs are D1's; the age of the report is D2's
        assert incremental[o]["pd"] == d1[o]["pd"]
        assert incremental[o]["reasons"] == d1[o]["reasons"]
        assert incremental[o]["report_age_days"] == d1[o]["report_age_days"] + 1
    assert incremental["C"]["n_filings"] == d1["C"]["n_filings"] - 1
    run_log = (
        spark.table("incr_test.score_runs")
        .where(F.col("run_id") == second.run_id)
        .select("mode", "rows_scored", "rows_carried_forward", "carried_from_run_id")
        .first()
    )
    assert tuple(run_log) == ("incremental", 5, 2, first.run_id)

    # A full run of D2 on the same inputs and model writes the same table.
    full = score_portfolio(spark, conf, as_of=D2, mode="full")
    assert (full.rows_scored, full.rows_carried_forward, full.carried_from_run_id) == (5, 0, None)
    reference = rows_of(spark, "incr_test", D2)
    assert reference.keys() == incremental.keys()
    for o in reference:
        assert {c: incremental[o][c] for c in COMPARED} == {c: reference[o][c] for c in COMPARED}
        # Batches differ (3 documents, not 5), so padding may move the last float bits.
        assert incremental[o]["pd"] == pytest.approx(reference[o]["pd"], abs=PD_ATOL)
        assert reasons_close(incremental[o]["reasons"], reference[o]["reasons"])
        assert reference[o]["carried_forward"] is False

    # A new model version (new manifest, new artifact key) forces a full rescore.
    retrained = tmp_path / "tiny-2"
    shutil.copytree(tiny_model, retrained)
    manifest = json.loads((retrained / "manifest.json").read_text())
    manifest["model_version"] = "tiny-2"
    (retrained / "manifest.json").write_text(json.dumps(manifest))
    new_model = small_conf(make_conf, "incr_test", retrained)
    third = score_portfolio(spark, new_model, as_of=D2, mode="incremental")
    assert (third.rows_scored, third.rows_carried_forward) == (5, 0)
    assert third.carried_from_run_id == full.run_id


def test_backfill_scores_three_dates_once_each_and_reruns_idempotently(
    spark, tiny_model, make_conf
) -> None:
    write_inputs(spark, "backfill_test")
    conf = small_conf(make_conf, "backfill_test", tiny_model)
    dates = [D1, D2, D2 + dt.timedelta(days=1)]
    first = backfill(spark, conf, start=dates[0], end=dates[-1], mode="incremental")
    assert [r.as_of for r in first] == dates
    # D1 has nothing to reuse; D2 rescores C (its filing left the window); D3 carries all.
    assert [(r.rows_scored, r.rows_carried_forward) for r in first] == [(5, 0), (5, 4), (5, 5)]
    assert [r.carried_from_run_id for r in first] == [None, first[0].run_id, first[1].run_id]

    # A full rerun of D2 and D3 (whose rows were all carried) replaces their rows; D1 keeps its own.
    again = backfill(spark, conf, start=dates[1], end=dates[-1], mode="full")
    assert [(r.as_of, r.rows_scored, r.rows_carried_forward) for r in again] == [
        (dates[1], 5, 0),
        (dates[2], 5, 0),
    ]
    table = spark.table("backfill_test.scored_portfolio")
    per_date = {
        (r["as_of_date"], r["run_id"]): r["count"]
        for r in table.groupBy("as_of_date", "run_id").count().collect()
    }
    assert per_date == {(r.as_of, r.run_id): 5 for r in [first[0], *again]}
    runs = spark.table("backfill_test.score_runs").where(F.col("status") == "success").count()
    assert runs == 5
    with pytest.raises(ValueError, match="before"):
        backfill(spark, conf, start=D2, end=D1)


@pytest.fixture(scope="module")
def fused_model(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained fused artifact: the tiny encoder with a head over exposure and segment."""
    import pandas as pd
    import torch

    from riskudf.model.features import fit_features
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder

    spec = fit_features(
        pd.DataFrame({"exposure": [500.0, 1500.0], "segment": ["retail", "corporate"]}),
        numeric=["exposure"],
        categorical=["segment"],
    )
    torch.manual_seed(3)
    model = FusedClassifier(load_encoder(tiny_backbone), spec, 2).eval()
    out = tmp_path_factory.mktemp("models") / "fused"
    return publish_tiny(model, tiny_backbone, out, version="fused-1", features=spec.to_dict())


def test_a_feature_model_scores_with_portfolio_columns_and_rescores_a_changed_one(
    spark, fused_model: Path, make_conf, tmp_path: Path
) -> None:
    import hashlib

    from riskudf.lakehouse.delta import SchemaError
    from riskudf.scoring.incremental import fingerprint_expr

    # Text-only fingerprints are those of earlier releases: sha256(model \n conf \n document).
    old = spark.createDataFrame([("doc",)], "document string").select(
        fingerprint_expr(F.col("document"), model_key="m", conf_key="c").alias("f")
    )
    assert old.first()["f"] == hashlib.sha256(b"m\nc\ndoc").hexdigest()

    write_inputs(spark, "feat_test")
    conf = small_conf(make_conf, "feat_test", fused_model)
    first = score_portfolio(spark, conf, as_of=D1, mode="incremental")
    assert (first.rows_scored, first.rows_quarantined) == (5, 1)
    d1 = rows_of(spark, "feat_test", D1)

    # Only A's exposure changes (its documents do not); C's filing leaves the window on D2.
    spark.sql("UPDATE feat_test.portfolio SET exposure = 9000.0 WHERE obligor_id = 'A'")
    second = score_portfolio(spark, conf, as_of=D2, mode="incremental")
    d2 = rows_of(spark, "feat_test", D2)
    assert (second.rows_scored, second.rows_carried_forward) == (5, 3)
    assert {o for o, r in d2.items() if not r["carried_forward"]} == {"A", "C"}
    assert d2["A"]["pd"] != pytest.approx(d1["A"]["pd"], abs=1e-4)  # the model read exposure
    assert d2["A"]["n_tokens"] == d1["A"]["n_tokens"]
    for o in "BEF":
        assert d2[o]["pd"] == d1[o]["pd"]

    # A full run on the same inputs gives the same PDs: the carried ones are still right.
    score_portfolio(spark, conf, as_of=D2, mode="full")
    full = rows_of(spark, "feat_test", D2)
    for o in full:
        assert full[o]["pd"] == pytest.approx(d2[o]["pd"], abs=PD_ATOL)

    # A model whose feature column the portfolio lacks fails before anything is written.
    other = tmp_path / "fused-2"
    shutil.copytree(fused_model, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["features"]["numeric"][0]["name"] = "bureau_score"
    (other / "manifest.json").write_text(json.dumps(manifest))
    runs = spark.table("feat_test.score_runs").count()
    with pytest.raises(SchemaError, match=r"feat_test.portfolio: missing feature columns \['bur"):
        score_portfolio(spark, small_conf(make_conf, "feat_test", other), as_of=D2)
    assert spark.table("feat_test.score_runs").count() == runs


def test_carried_rows_get_reasons_when_they_become_flagged(spark, tiny_model, make_conf) -> None:
    """The rule: a carried row keeps its reasons; a row that is flagged under this run's
    grading but has none (it was approved when scored) goes to the model again; a carried row
    that is no longer flagged has its reasons set to null."""
    write_inputs(spark, "reasons_test")
    nothing_flagged = {"grading__review_from_pd": 0.999, "grading__decline_from_pd": 0.999}
    everything_flagged = {"grading__review_from_pd": 0.0, "grading__decline_from_pd": 0.5}
    approve = small_conf(make_conf, "reasons_test", tiny_model, **nothing_flagged)
    flag = small_conf(make_conf, "reasons_test", tiny_model, **everything_flagged)
    dates = [D1, D2, D2 + dt.timedelta(days=1), D2 + dt.timedelta(days=2)]

    first = score_portfolio(spark, approve, as_of=dates[0], mode="incremental")
    d1 = rows_of(spark, "reasons_test", dates[0])
    assert {r["decision"] for r in d1.values()} == {"approve"}
    assert all(r["reasons"] is None for r in d1.values())

    second = score_portfolio(spark, flag, as_of=dates[1], mode="incremental")
    d2 = rows_of(spark, "reasons_test", dates[1])
    assert second.rows_carried_forward == 0  # same documents, but every row lacked reasons
    assert all(not r["carried_forward"] for r in d2.values())
    # No span of these documents matches a code: flagged rows get an empty list, not null.
    assert {o: r["reasons"] for o, r in d2.items()} == {o: [] for o in d1}
    # A, B, E and F have the documents (fingerprints) they had (C's older filing left the window).
    assert {o: d2[o]["fingerprint"] for o in "ABEF"} == {o: d1[o]["fingerprint"] for o in "ABEF"}

    third = score_portfolio(spark, flag, as_of=dates[2], mode="incremental")
    d3 = rows_of(spark, "reasons_test", dates[2])
    assert third.rows_carried_forward == 5
    assert {o: r["reasons"] for o, r in d3.items()} == {o: r["reasons"] for o, r in d2.items()}

    fourth = score_portfolio(spark, approve, as_of=dates[3], mode="incremental")
    d4 = rows_of(spark, "reasons_test", dates[3])
    assert fourth.rows_carried_forward == 5
    assert {o: (r["decision"], r["reasons"]) for o, r in d4.items()} == {
        o: ("approve", None) for o in d3
    }
    assert first.run_id != second.run_id
