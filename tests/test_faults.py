"""Bad input, faults mid-run and concurrent runs, on real Spark and Delta with a tiny model."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import PD_ATOL, reasons_close
from pyspark.sql import functions as F

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.config import load_config
from riskudf.documents.quarantine import REASONS
from riskudf.failpoints import Failpoint, FailpointError, parse
from riskudf.lakehouse import leases
from riskudf.lakehouse.delta import InputError
from riskudf.scoring.pipeline import score_portfolio

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 28)
TODAY = dt.datetime.now(dt.UTC).date()
RUN_COLUMNS = ("run_id", "scored_run_id", "scored_at", "quarantined_at")


def state(spark, db: str, *, with_run: bool = True) -> dict[str, list[tuple]]:
    """The scored and quarantine rows of AS_OF, sorted, and every run's rows in scored_history;
    or without the run's own ids and the model's outputs (see outputs), and no history."""
    out = {}
    tables = ("scored_portfolio", "scoring_quarantine")
    for table in (*tables, "scored_history") if with_run else tables:
        df = spark.table(f"{db}.{table}").where(F.col("as_of_date") == AS_OF)
        if not with_run:
            df = df.drop(*RUN_COLUMNS, "pd", "reasons")
        out[table] = sorted((tuple(r) for r in df.collect()), key=repr)
    return out


def outputs(spark, db: str) -> dict[str, tuple]:
    """The model's outputs of AS_OF by obligor: (pd, reasons)."""
    rows = spark.table(f"{db}.scored_portfolio").where(F.col("as_of_date") == AS_OF).collect()
    return {r["obligor_id"]: (r["pd"], r["reasons"]) for r in rows}


def persisted(spark) -> set[int]:
    """The ids of the RDDs Spark holds persisted (cached DataFrames among them), except Delta's
    caches of its tables' states (which come and go with the tables' versions)."""
    rdds = spark.sparkContext._jsc.getPersistentRDDs()
    return {i for i, rdd in rdds.items() if not str(rdd.rdd().name()).startswith("Delta ")}


def last_run(spark, db: str):
    return spark.table(f"{db}.score_runs").orderBy(F.col("finished_at").desc()).first()


@pytest.fixture(scope="module")
def bad_lakehouse(spark) -> str:
    """A small demo lakehouse with one planted fault of each kind."""
    db = "faults"
    write_demo_tables(
        spark, database=db, n_obligors=24, spec=DemoSpec(seed=5), filing_lookback_days=730
    )
    ids = sorted(r["obligor_id"] for r in spark.table(f"{db}.portfolio").collect())
    spark.createDataFrame(
        [
            ("DUP-1", "retail", 10.0),
            ("DUP-1", "retail", 20.0),
            (None, "retail", 5.0),
            ("   ", "corporate", 5.0),
            ("NOREPORT-1", "retail", 1.0),
        ],
        "obligor_id string, segment string, exposure double",
    ).writeTo(f"{db}.portfolio").append()
    planted = AS_OF - dt.timedelta(days=1)  # after the demo's latest reports (as_of - 3 days)
    spark.createDataFrame(
        [
            ("PLANT-empty", ids[0], planted, " \n "),
            ("PLANT-binary", ids[1], planted, "\x00\x89PNG\x1a\x0b" * 40),
            ("PLANT-future", ids[2], TODAY + dt.timedelta(days=30), "a report from the future"),
            ("PLANT-dup", ids[3], planted, "copy one"),
            ("PLANT-dup", ids[3], planted, "copy two"),
            ("PLANT-huge", ids[4], planted, "Delinquency noted. " * 15_000),
            ("DUP-1-r", "DUP-1", dt.date(2026, 1, 1), "report of a duplicated obligor"),
        ],
        "report_id string, obligor_id string, report_date date, text string",
    ).writeTo(f"{db}.credit_reports").append()
    spark.createDataFrame(
        [("PLANT-filing", ids[5], dt.date(2026, 10, 1), "8-K", "\ufffd\ufffd\ufffd")],
        "filing_id string, obligor_id string, filing_date date, form_type string, text string",
    ).writeTo(f"{db}.filings").append()
    return db


@pytest.fixture(scope="module")
def clean(spark, bad_lakehouse, tiny_model, tmp_path_factory):
    """The conf, the ids planted on, and the state after one clean run."""
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = bad_lakehouse
    data["scoring"]["model"] = str(tiny_model)
    data["scoring"]["partitions"] = 3
    path = tmp_path_factory.mktemp("conf") / "faults.yaml"
    data["monitoring"]["report_dir"] = str(path.parent / "reports")
    # The faults are in scoring and its commits; monitoring has its own tests (and a run's
    # monitoring failure, test_monitoring_phase).
    data["monitoring"]["enabled"] = False
    path.write_text(yaml.safe_dump(data))
    conf = load_config(path)
    result = score_portfolio(spark, conf, as_of=AS_OF)
    ids = sorted(
        r["obligor_id"]
        for r in spark.table(f"{bad_lakehouse}.portfolio").collect()
        if r["obligor_id"] and r["obligor_id"].startswith("OBL")
    )
    plain = state(spark, bad_lakehouse, with_run=False), outputs(spark, bad_lakehouse)
    return conf, ids, result, state(spark, bad_lakehouse), plain


def test_every_obligor_is_scored_or_quarantined_once(spark, bad_lakehouse, clean) -> None:
    _, ids, result, _, _ = clean
    db = bad_lakehouse
    quarantine = spark.table(f"{db}.scoring_quarantine").where(F.col("run_id") == result.run_id)
    got = sorted(
        (r["source_table"].split(".")[1], r["record_key"] or "", r["reason_code"])
        for r in quarantine.collect()
    )
    assert got == sorted(
        [
            ("portfolio", "", "NULL_KEY"),
            ("portfolio", "", "NULL_KEY"),
            ("portfolio", "DUP-1", "DUPLICATE_KEY"),
            ("portfolio", "NOREPORT-1", "NO_REPORT"),
            ("portfolio", ids[0], "EMPTY_TEXT"),
            ("portfolio", ids[1], "NOT_TEXT"),
            ("portfolio", ids[3], "DUPLICATE_KEY"),
            ("portfolio", ids[4], "TOO_LARGE"),
            ("credit_reports", "PLANT-future", "FUTURE_DATE"),
            ("credit_reports", "PLANT-dup", "DUPLICATE_KEY"),
            ("credit_reports", "PLANT-dup", "DUPLICATE_KEY"),
            ("filings", "PLANT-filing", "NOT_TEXT"),
        ]
    )
    scored = {r["obligor_id"] for r in spark.table(f"{db}.scored_portfolio").collect()}
    # The future-dated report and the bad filing are set aside; their obligors are still scored.
    assert scored == set(ids) - {ids[0], ids[1], ids[3], ids[4]}
    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (29, 20, 8)
    assert result.records_quarantined == 4
    assert result.reason_counts == {
        f"{db}.portfolio:NULL_KEY": 2,
        f"{db}.portfolio:DUPLICATE_KEY": 2,
        f"{db}.portfolio:NO_REPORT": 1,
        f"{db}.portfolio:EMPTY_TEXT": 1,
        f"{db}.portfolio:NOT_TEXT": 1,
        f"{db}.portfolio:TOO_LARGE": 1,
        f"{db}.credit_reports:FUTURE_DATE": 1,
        f"{db}.credit_reports:DUPLICATE_KEY": 2,
        f"{db}.filings:NOT_TEXT": 1,
    }
    run = last_run(spark, db)
    assert (run["status"], run["rows_scored"], run["rows_quarantined"]) == ("success", 20, 8)
    assert run["records_quarantined"] == 4
    # Nothing is left holding the date.
    assert spark.table(f"{db}.scoring_locks").count() == 0


@pytest.mark.parametrize("point", ["udf:raise:3", "udf:kill:3", "udf:oom:3"])
def test_a_fault_in_the_udf_leaves_the_tables_as_they_were(
    spark, bad_lakehouse, clean, point
) -> None:
    conf, _, _, before, _ = clean
    cached = persisted(spark)
    with pytest.raises(Exception) as raised:
        score_portfolio(spark, conf, as_of=AS_OF, failpoint=parse(point))
    assert persisted(spark) <= cached  # the run's caches are released
    assert "PLANT" not in str(raised.value)
    assert state(spark, bad_lakehouse) == before
    run = last_run(spark, bad_lakehouse)
    assert (run["status"], run["rows_scored"]) == ("failed", 0)
    assert spark.table(f"{bad_lakehouse}.scoring_locks").count() == 0


@pytest.mark.parametrize("site", ["before_commit", "between_commits", "before_run_log"])
def test_a_driver_failure_before_or_after_a_commit_is_rolled_back(
    spark, bad_lakehouse, clean, site
) -> None:
    conf, _, _, before, _ = clean
    cached = persisted(spark)
    with pytest.raises(FailpointError):
        score_portfolio(spark, conf, as_of=AS_OF, failpoint=Failpoint(site, "raise"))
    assert persisted(spark) <= cached  # the run's caches are released
    assert state(spark, bad_lakehouse) == before
    assert last_run(spark, bad_lakehouse)["error"] == "FailpointError"


def test_a_rerun_after_faults_matches_the_clean_run(spark, bad_lakehouse, clean) -> None:
    conf, _, first, _, plain = clean
    cached = persisted(spark)
    again = score_portfolio(spark, conf, as_of=AS_OF)
    assert persisted(spark) <= cached  # the run's caches are released
    rows = spark.table(f"{bad_lakehouse}.scored_portfolio").where(F.col("as_of_date") == AS_OF)
    assert {r["run_id"] for r in rows.collect()} == {again.run_id}
    # Every column but the run's id and times is identical; the model's outputs agree to float
    # noise (same model and inputs; batches may be composed differently).
    rest, model = plain
    assert state(spark, bad_lakehouse, with_run=False) == rest
    rescored = outputs(spark, bad_lakehouse)
    assert rescored.keys() == model.keys()
    for obligor, (pd_, reasons) in model.items():
        assert rescored[obligor][0] == pytest.approx(pd_, abs=PD_ATOL)
        assert reasons_close(rescored[obligor][1], reasons)
    assert (again.rows_scored, again.rows_quarantined) == (
        first.rows_scored,
        first.rows_quarantined,
    )


def test_two_runs_for_one_date_one_wins(spark, bad_lakehouse, clean) -> None:
    conf, *_ = clean
    outcome: dict[str, object] = {}

    def run(name: str, failpoint: Failpoint | None) -> None:
        try:
            outcome[name] = score_portfolio(spark, conf, as_of=AS_OF, failpoint=failpoint)
        except Exception as exc:
            outcome[name] = exc

    slow = threading.Thread(target=run, args=("slow", Failpoint("after_lock", "sleep", 20)))
    slow.start()
    locks = spark.table(f"{bad_lakehouse}.scoring_locks")
    deadline = time.monotonic() + 120
    while locks.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    run("late", None)
    slow.join()
    assert isinstance(outcome["late"], leases.RunLockedError)
    assert "is being scored by run" in str(outcome["late"])
    winner = outcome["slow"]
    assert not isinstance(winner, Exception), winner
    rows = spark.table(f"{bad_lakehouse}.scored_portfolio").where(F.col("as_of_date") == AS_OF)
    assert {r["run_id"] for r in rows.collect()} == {winner.run_id}
    assert rows.count() == rows.select("obligor_id").distinct().count() == winner.rows_scored
    runs = spark.table(f"{bad_lakehouse}.score_runs").orderBy(F.col("finished_at").desc())
    assert [(r["status"], r["error"]) for r in runs.limit(2).collect()] == [
        ("success", None),
        ("failed", "RunLockedError"),
    ]


def test_simultaneous_claims_have_one_winner(spark, bad_lakehouse, clean) -> None:
    table = f"{bad_lakehouse}.scoring_locks"
    day = dt.date(2020, 1, 1)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def claim(run_id: str) -> None:
        barrier.wait()
        try:
            leases.acquire(spark, table, as_of=day, run_id=run_id, lease_minutes=5)
            results[run_id] = "won"
        except leases.RunLockedError:
            results[run_id] = "lost"

    threads = [threading.Thread(target=claim, args=(f"claimant-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["lost", "won"]
    winner = next(k for k, v in results.items() if v == "won")
    holder = leases.current_lease(spark, table, day)
    assert holder is not None and holder.run_id == winner
    leases.release(spark, table, as_of=day, run_id=winner)
    assert leases.current_lease(spark, table, day) is None


def test_an_abandoned_hold_is_taken_over(spark, bad_lakehouse, clean) -> None:
    table = f"{bad_lakehouse}.scoring_locks"
    day = dt.date(2020, 2, 1)
    now = dt.datetime.now(dt.UTC)
    dead = dt.datetime(2020, 2, 1, tzinfo=dt.UTC)
    spark.createDataFrame(
        [(day, "crashed", "elsewhere:1", dead, dead + dt.timedelta(minutes=5))],
        "as_of_date date, run_id string, holder string, acquired_at timestamp, "
        "expires_at timestamp",
    ).writeTo(table).append()
    leases.acquire(spark, table, as_of=day, run_id="next", lease_minutes=5)
    lease = leases.current_lease(spark, table, day)
    assert lease is not None and lease.run_id == "next" and lease.expires_at > now
    leases.release(spark, table, as_of=day, run_id="next")


def test_bad_dates_and_an_empty_portfolio_fail_before_any_write(
    spark, tiny_model, make_conf
) -> None:
    conf = load_config(make_conf(database="never_written", model_dir=tiny_model))
    with pytest.raises(InputError, match=r"as-of date .* is in the future"):
        score_portfolio(spark, conf, as_of=TODAY + dt.timedelta(days=1))
    assert not spark.catalog.databaseExists("never_written")

    spark.sql("CREATE DATABASE IF NOT EXISTS empty_inputs")
    for table, columns in (
        ("portfolio", "obligor_id string, segment string, exposure double"),
        ("credit_reports", "report_id string, obligor_id string, report_date date, text string"),
        (
            "filings",
            "filing_id string, obligor_id string, filing_date date, form_type string, text string",
        ),
    ):
        spark.createDataFrame([], columns).writeTo(f"empty_inputs.{table}").using(
            "delta"
        ).createOrReplace()
    conf = load_config(make_conf(database="empty_inputs", model_dir=tiny_model))
    with pytest.raises(InputError, match=r"table empty_inputs\.portfolio is empty"):
        score_portfolio(spark, conf, as_of=AS_OF)
    assert not spark.catalog.tableExists("empty_inputs.scored_portfolio")


def _fuzz_text(rng: random.Random) -> str:
    kind = rng.choice(["bytes", "unicode", "huge", "empty", "space", "plain", "mixed"])
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))).decode("latin-1")
    if kind == "unicode":
        points = [rng.randrange(0x20, 0x2FFFF) for _ in range(rng.randrange(1, 300))]
        return "".join(chr(p) for p in points if not 0xD800 <= p <= 0xDFFF)
    if kind == "huge":
        return "Going concern doubt. " * rng.randrange(5_000, 12_000)
    if kind == "empty":
        return ""
    if kind == "space":
        return rng.choice([" ", "\n\n", "\u200b", "\t \u3000"])
    if kind == "plain":
        return "Payment history: 3 late payments; utilisation 92%."
    return "Utilisation 40% " + bytes(rng.randrange(256) for _ in range(20)).decode("latin-1")


def test_fuzzed_documents_keep_the_reconciliation(spark, tiny_model, make_conf) -> None:
    rng = random.Random(20261129)
    db = "fuzz"
    n = 36
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    ids = [f"FZ{i:03d}" for i in range(n)]
    spark.createDataFrame(
        [(i, rng.choice(["retail", "corporate"]), 1.0) for i in ids],
        "obligor_id string, segment string, exposure double",
    ).writeTo(f"{db}.portfolio").using("delta").createOrReplace()
    reports = [
        (f"R{k}", rng.choice(ids), dt.date(2026, 1, 1) + dt.timedelta(days=k), _fuzz_text(rng))
        for k in range(n + 6)
    ]
    spark.createDataFrame(
        reports, "report_id string, obligor_id string, report_date date, text string"
    ).writeTo(f"{db}.credit_reports").using("delta").createOrReplace()
    filings = [
        (f"F{k}", rng.choice(ids), dt.date(2026, 5, 1), "10-K", _fuzz_text(rng)) for k in range(12)
    ]
    spark.createDataFrame(
        filings,
        "filing_id string, obligor_id string, filing_date date, form_type string, text string",
    ).writeTo(f"{db}.filings").using("delta").createOrReplace()
    conf = load_config(
        make_conf(database=db, model_dir=tiny_model, scoring__max_document_chars=150_000)
    )

    result = score_portfolio(spark, conf, as_of=AS_OF)

    scored = [r["obligor_id"] for r in spark.table(f"{db}.scored_portfolio").collect()]
    quarantine = spark.table(f"{db}.scoring_quarantine").collect()
    obligor_rows = [r for r in quarantine if r["source_table"] == f"{db}.portfolio"]
    assert sorted(scored + [r["obligor_id"] for r in obligor_rows]) == ids
    assert {r["reason_code"] for r in quarantine} <= set(REASONS)
    assert (result.rows_scored, result.rows_quarantined) == (len(scored), len(obligor_rows))
    # The fuzz reached both sides and more than one reason.
    assert scored and len({r["reason_code"] for r in obligor_rows}) >= 3
    texts = [t for *_, t in reports] + [t for *_, t in filings]
    for row in quarantine:
        assert not any(len(t) > 8 and t in (row["detail"] or "") for t in texts)
