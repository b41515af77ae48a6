"""A failed or concurrent run changes nothing but its own date (issue 16): the undo is scoped
to the run's date, a run that lost its lease writes nothing, and "today" is the lender's."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from test_spark_submit import project, submit

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.config import load_config
from riskudf.failpoints import Failpoint
from riskudf.lakehouse import leases
from riskudf.lakehouse.delta import InputError, MissingTableError
from riskudf.scoring.pipeline import business_date, score_portfolio

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 28)


def wait_for(path: Path, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.5)


def test_business_date_is_the_lenders_calendar_date() -> None:
    evening = dt.datetime(2026, 11, 29, 16, 30, tzinfo=dt.UTC)
    assert business_date(evening, "UTC") == dt.date(2026, 11, 29)
    assert business_date(evening, "Asia/Singapore") == dt.date(2026, 11, 30)
    assert business_date(evening, "America/New_York") == dt.date(2026, 11, 29)


def test_the_future_date_check_uses_the_business_date(spark, tiny_model, make_conf) -> None:
    """Far east of UTC the business date runs ahead of UTC's, far west behind: whatever the
    hour, one of the two zones has another date than UTC now."""
    now = dt.datetime.now(dt.UTC)
    ahead, behind = "Pacific/Kiritimati", "Etc/GMT+12"  # UTC+14, UTC-12
    zone = ahead if business_date(now, ahead) != now.date() else behind
    local = business_date(now, zone)
    later = max(local, now.date())
    refused, accepted = ("UTC", zone) if zone == ahead else (zone, "UTC")

    def run(timezone: str) -> None:
        conf = load_config(
            make_conf(database="no_such_db", model_dir=tiny_model, scoring__timezone=timezone)
        )
        score_portfolio(spark, conf, as_of=later)

    with pytest.raises(InputError, match=rf"future \(today is .* in {re.escape(refused)}\)"):
        run(refused)
    # Past the date check, the run stops at the first input table (none exists).
    with pytest.raises(MissingTableError, match=r"no_such_db\.portfolio"):
        run(accepted)


@pytest.fixture(scope="module")
def lease_lakehouse(spark) -> str:
    write_demo_tables(
        spark, database="lease_test", n_obligors=12, spec=DemoSpec(seed=4), filing_lookback_days=730
    )
    return "lease_test"


def outputs(spark, db: str) -> dict[str, list[tuple]]:
    out = {}
    for table in ("scored_portfolio", "scoring_quarantine"):
        out[table] = sorted(repr(tuple(r)) for r in spark.table(f"{db}.{table}").collect())
    return out


def test_a_run_whose_lease_was_taken_aborts_before_commit(
    spark, lease_lakehouse, tiny_model, make_conf, tmp_path
) -> None:
    conf = load_config(
        make_conf(database=lease_lakehouse, model_dir=tiny_model, monitoring__enabled=False)
    )
    first = score_portfolio(spark, conf, as_of=AS_OF)
    before = outputs(spark, lease_lakehouse)
    locks = conf.tables.qualified("scoring_locks")
    gate = tmp_path / "release"
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            score_portfolio(
                spark,
                conf,
                as_of=AS_OF,
                failpoint=Failpoint("before_commit", "pause", path=str(gate)),
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(Path(f"{gate}.reached"))
        # An operator clears the hold and another run claims the date mid-run.
        leases.force_release(
            spark,
            locks,
            releases=conf.tables.qualified("scoring_lock_releases"),
            as_of=AS_OF,
            reason="test: hold cleared mid-run",
            released_by="tester",
        )
        leases.acquire(spark, locks, as_of=AS_OF, run_id="other", lease_minutes=10)
    finally:
        gate.touch()
        thread.join(600)
    assert isinstance(outcome.get("error"), leases.LeaseLostError)
    assert outputs(spark, lease_lakehouse) == before
    runs = spark.table(conf.tables.qualified("score_runs")).orderBy("started_at").collect()
    assert [(r["status"], r["error"]) for r in runs] == [
        ("success", None),
        ("failed", "LeaseLostError"),
    ]
    assert runs[0]["run_id"] == first.run_id
    # The other run's hold is untouched by the aborted run.
    assert leases.current_lease(spark, locks, AS_OF).run_id == "other"
    leases.release(spark, locks, as_of=AS_OF, run_id="other")


@pytest.mark.slow
def test_a_failed_run_leaves_another_dates_run_intact(spark, tiny_model, tmp_path) -> None:
    """Two dates scored by two driver processes: the first commits its rows and waits; the
    second scores and publishes its date; then the first fails. Its undo puts back its own
    date only: the second's rows and success row stay."""
    d1, d2 = dt.date(2026, 11, 27), dt.date(2026, 11, 28)
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["scoring"]["model_dir"] = str(tiny_model)
    data["monitoring"]["enabled"] = False
    conf = tmp_path / "test.yaml"
    conf.write_text(yaml.safe_dump(data))
    gate = tmp_path / "release"
    with project(tmp_path):
        made = submit(tmp_path, "demo/make_data.py", "--obligors", "20", "--conf", str(conf))
        assert made.returncode == 0, made.stderr[-3000:]
        env = {
            **os.environ,
            "SPARK_CONF_DIR": str(tmp_path / "conf/spark"),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "RISKUDF_FAILPOINT": f"before_run_log:stall:{gate}",
        }
        first = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "spark-submit"),
                "jobs/score_portfolio.py",
                "--as-of",
                d1.isoformat(),
                "--conf",
                str(conf),
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(Path(f"{gate}.reached"))
            second = submit(
                tmp_path, "jobs/score_portfolio.py", "--as-of", d2.isoformat(), "--conf", str(conf)
            )
            assert second.returncode == 0, second.stderr[-3000:]
        finally:
            gate.touch()
            _, err = first.communicate(timeout=600)
        assert first.returncode != 0, err[-3000:]
    warehouse = tmp_path / "lakehouse/warehouse/risk.db"
    scored = spark.read.format("delta").load(str(warehouse / "scored_portfolio"))
    runs = spark.read.format("delta").load(str(warehouse / "score_runs"))
    by_status = {r["status"]: r for r in runs.collect()}
    assert sorted(by_status) == ["failed", "success"]
    assert (by_status["failed"]["as_of_date"], by_status["failed"]["error"]) == (
        d1,
        "FailpointError",
    )
    winner = by_status["success"]
    assert winner["as_of_date"] == d2
    kept = scored.where(F.col("as_of_date") == d2)
    assert kept.count() == winner["rows_scored"] > 0
    assert {r["run_id"] for r in kept.select("run_id").distinct().collect()} == {winner["run_id"]}
    assert scored.where(F.col("as_of_date") == d1).count() == 0
