"""Run leases on real Delta: driver time zones, heartbeat, fencing, forced release, the job."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from delta.tables import DeltaTable
from test_jobs import ROOT, job

from riskudf.config import ConfigError, load_config, parse_config
from riskudf.lakehouse import leases

DB = "leases"
LOCKS = f"{DB}.scoring_locks"
RELEASES = f"{DB}.scoring_lock_releases"
ZONES = ["America/New_York", "Asia/Shanghai"]
SECOND = 1 / 60  # lease_minutes


@pytest.fixture(scope="module")
def tables(spark) -> str:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    leases.ensure_tables(spark, locks=LOCKS, releases=RELEASES)
    return LOCKS


@contextmanager
def driver_zone(zone: str) -> Iterator[None]:
    """The driver process's local time zone set to ``zone`` for the block."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def plant(spark, day: dt.date, run_id: str, expires_in: dt.timedelta) -> None:
    """A lease row of ``run_id`` by this (live) process, written with aware UTC datetimes."""
    now = dt.datetime.now(dt.UTC)
    spark.createDataFrame(
        [(day, run_id, leases.this_holder(), now - dt.timedelta(hours=1), now + expires_in)],
        "as_of_date date, run_id string, holder string, acquired_at timestamp, "
        "expires_at timestamp",
    ).writeTo(LOCKS).append()


def take_over(spark, day: dt.date, *, run_id: str) -> None:
    """One commit hands the row to ``run_id``, as a run that saw the lease lapse would (retried
    while it conflicts with the holder's heartbeat)."""
    for _ in range(20):
        try:
            DeltaTable.forName(spark, LOCKS).update(
                f"as_of_date = DATE'{day}'", {"run_id": f"'{run_id}'", "holder": "'elsewhere:1'"}
            )
            return
        except Exception as exc:
            if not leases._is_conflict(exc):
                raise
    raise AssertionError("the takeover kept conflicting")


def near(moment: dt.datetime, expected: dt.datetime) -> bool:
    return abs(moment - expected) < dt.timedelta(seconds=30)


def assert_fresh_hour(held, run_id: str, start: dt.datetime) -> None:
    """``held`` is run_id's lease, taken at ``start`` for 60 minutes."""
    assert held is not None and held.run_id == run_id
    assert near(held.acquired_at, start)
    assert near(held.expires_at, start + dt.timedelta(minutes=60))


@pytest.mark.parametrize("zone", ZONES)
def test_a_fresh_lease_is_not_taken_over_in_any_driver_zone(spark, tables, zone) -> None:
    day = dt.date(2021, 1, 1 + ZONES.index(zone))
    with driver_zone(zone):
        start = dt.datetime.now(dt.UTC)
        leases.acquire(spark, tables, as_of=day, run_id="first", lease_minutes=60)
        with pytest.raises(leases.RunLockedError, match="is being scored by run first"):
            leases.acquire(spark, tables, as_of=day, run_id="second", lease_minutes=60)
        held = leases.current_lease(spark, tables, day)
    assert_fresh_hour(held, "first", start)
    leases.release(spark, tables, as_of=day, run_id="first")


@pytest.mark.parametrize("zone", ZONES)
def test_an_expired_lease_is_taken_over_in_any_driver_zone(spark, tables, zone) -> None:
    day = dt.date(2021, 2, 1 + ZONES.index(zone))
    plant(spark, day, "crashed", expires_in=-dt.timedelta(minutes=10))
    with driver_zone(zone):
        start = dt.datetime.now(dt.UTC)
        leases.acquire(spark, tables, as_of=day, run_id="next", lease_minutes=60)
        held = leases.current_lease(spark, tables, day)
    assert_fresh_hour(held, "next", start)
    leases.release(spark, tables, as_of=day, run_id="next")


def test_a_lapsed_lease_fails_the_check(spark, tables) -> None:
    day = dt.date(2021, 3, 1)
    plant(spark, day, "slow", expires_in=-dt.timedelta(seconds=1))
    with pytest.raises(leases.LeaseLostError, match=r"lease lapsed at .* without renewal"):
        leases.ensure_held(spark, tables, as_of=day, run_id="slow")
    with pytest.raises(leases.LeaseLostError, match="lease lapsed"):
        leases.renew(spark, tables, as_of=day, run_id="slow", lease_minutes=60)
    # A lapsed lease is not revived by a late renewal.
    held = leases.current_lease(spark, tables, day)
    assert held is not None and held.expired(leases.now_utc())
    leases.release(spark, tables, as_of=day, run_id="slow")


def test_the_heartbeat_keeps_a_lease_past_its_lease_time(spark, tables) -> None:
    day = dt.date(2021, 4, 1)
    # Long enough for a Delta UPDATE on a loaded two-core machine (seconds each).
    lease = 15 * SECOND
    with leases.hold(
        spark, tables, as_of=day, run_id="long", lease_minutes=lease, heartbeat_seconds=1
    ) as held:
        first = held.check()
        while leases.now_utc() < first.expires_at + dt.timedelta(seconds=2):
            time.sleep(0.5)
        with pytest.raises(leases.RunLockedError, match="is being scored by run long"):
            leases.acquire(spark, tables, as_of=day, run_id="other", lease_minutes=lease)
        renewed = held.check()
        assert held.lost is None
    assert (renewed.run_id, renewed.acquired_at) == ("long", first.acquired_at)
    assert renewed.expires_at > first.expires_at + dt.timedelta(seconds=2)
    assert leases.current_lease(spark, tables, day) is None


def test_a_lease_taken_over_fails_the_check(spark, tables) -> None:
    day = dt.date(2021, 5, 1)
    with leases.hold(
        spark, tables, as_of=day, run_id="mine", lease_minutes=1, heartbeat_seconds=1
    ) as held:
        held.check()
        take_over(spark, day, run_id="theirs")
        with pytest.raises(leases.LeaseLostError, match="taken over by run theirs"):
            held.check()
        deadline = time.monotonic() + 60
        while held.lost is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert held.lost is not None and "taken over by run theirs" in held.lost
    # Leaving the block releases only this run's lease: theirs stays.
    after = leases.current_lease(spark, tables, day)
    assert after is not None and after.run_id == "theirs"
    leases.release(spark, tables, as_of=day, run_id="theirs")


def test_a_forced_release_is_recorded_and_frees_the_date(spark, tables) -> None:
    day = dt.date(2021, 6, 1)
    stuck = leases.acquire(spark, tables, as_of=day, run_id="stuck", lease_minutes=60)
    start = dt.datetime.now(dt.UTC)
    released = leases.force_release(
        spark, tables, releases=RELEASES, as_of=day, reason="driver host lost", released_by="ops"
    )
    assert released == stuck
    rows = spark.table(RELEASES).where(f"as_of_date = DATE'{day}'").collect()
    assert [r.asDict() | {"released_at": None} for r in rows] == [
        {
            "as_of_date": day,
            "run_id": "stuck",
            "holder": leases.this_holder(),
            "released_by": "ops",
            "reason": "driver host lost",
            "released_at": None,
        }
    ]
    released_at = (
        spark.table(RELEASES)
        .where(f"as_of_date = DATE'{day}'")
        .selectExpr("unix_micros(released_at) AS us")
        .first()["us"]
    )
    assert near(dt.datetime.fromtimestamp(released_at / 1e6, dt.UTC), start)
    with pytest.raises(leases.NoLeaseError, match="no lease on as-of date 2021-06-01"):
        leases.force_release(
            spark, tables, releases=RELEASES, as_of=day, reason="again", released_by="ops"
        )
    leases.acquire(spark, tables, as_of=day, run_id="rerun", lease_minutes=60)
    assert leases.current_lease(spark, tables, day).run_id == "rerun"
    leases.release(spark, tables, as_of=day, run_id="rerun")


def test_the_leases_job_lists_and_releases(spark, make_conf, tmp_path, capsys) -> None:
    conf = str(make_conf(database="lease_job", model_dir=tmp_path))
    locks = "lease_job.scoring_locks"
    lease_job = job("leases")
    assert lease_job.main(["list", "--conf", conf]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"0 leases in {locks}"

    spark.sql("CREATE DATABASE IF NOT EXISTS lease_job")
    leases.ensure_tables(spark, locks=locks, releases="lease_job.scoring_lock_releases")
    day = dt.date(2021, 7, 1)
    held = leases.acquire(spark, locks, as_of=day, run_id="run-7", lease_minutes=60)
    assert lease_job.main(["list", "--conf", conf]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "as_of_date",
        "run_id",
        "holder",
        "acquired",
        "(UTC)",
        "expires",
        "(UTC)",
        "expired",
    ]
    assert out[1].split() == [
        "2021-07-01",
        "run-7",
        leases.this_holder(),
        *f"{held.acquired_at:%Y-%m-%d %H:%M:%S}".split(),
        *f"{held.expires_at:%Y-%m-%d %H:%M:%S}".split(),
        "no",
    ]
    assert out[2] == f"1 leases in {locks}"

    argv = ["release", "--as-of", "2021-07-01", "--reason", "stuck", "--by", "ops"]
    assert lease_job.main([*argv, "--conf", conf]) == 0
    assert capsys.readouterr().out == (
        f"released the lease of run run-7 ({leases.this_holder()}) on 2021-07-01\n"
    )
    record = spark.table("lease_job.scoring_lock_releases").collect()
    assert [(r["run_id"], r["released_by"], r["reason"]) for r in record] == [
        ("run-7", "ops", "stuck")
    ]
    assert leases.current_lease(spark, locks, day) is None
    # Nothing left to release: bad input.
    assert lease_job.main([*argv, "--conf", conf]) == 2


def test_lease_conf_takes_fractions_and_a_heartbeat_within_half() -> None:
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["scoring"]["model"] = "models/x"
    del data["scoring"]["lock_heartbeat_seconds"]  # a conf written before the heartbeat
    scoring = parse_config(data).scoring
    assert (scoring.lock_lease_minutes, scoring.lock_heartbeat_seconds) == (360, 60)
    data["scoring"] |= {"lock_lease_minutes": 0.05, "lock_heartbeat_seconds": 1.5}
    scoring = parse_config(data).scoring
    assert (scoring.lock_lease_minutes, scoring.lock_heartbeat_seconds) == (0.05, 1.5)
    data["scoring"] |= {"lock_lease_minutes": 1, "lock_heartbeat_seconds": 31}
    with pytest.raises(ConfigError, match=r"lock_heartbeat_seconds \(31\) must be at most half"):
        parse_config(data)


def test_a_heartbeat_over_half_the_lease_is_refused(spark, tables) -> None:
    day = dt.date(2021, 8, 1)
    with (
        pytest.raises(ValueError, match="at most half the lease"),
        leases.hold(
            spark, tables, as_of=day, run_id="x", lease_minutes=SECOND, heartbeat_seconds=0.6
        ),
    ):
        pass
    assert leases.current_lease(spark, tables, day) is None
