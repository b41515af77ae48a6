"""A failed or concurrent run changes nothing but its own date (issue 16): the undo is scoped
to the run's date, a run that lost its lease writes nothing, and "today" is the lender's."""

from __future__ import annotations

import datetime as dt
import re
import threading
from pathlib import Path

import pytest
from test_spark_submit import wait_for

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.config import load_config
from riskudf.failpoints import Failpoint
from riskudf.lakehouse import leases
from riskudf.lakehouse.delta import InputError, MissingTableError
from riskudf.scoring.pipeline import business_date, score_portfolio

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 28)


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
