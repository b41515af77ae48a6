"""One run per as-of date at a time: a lease row in a small Delta table.

A run claims its date with a MERGE that inserts the lease row only if none is there. Two runs
that claim at once conflict inside Delta (the second commit fails its conflict check), so one
wins and the other sees the winner's row. A lease whose holder is gone (its time is up, or its
driver process on this host no longer exists) is taken over by the next run.

A live run keeps its lease with a heartbeat (``hold``): a daemon thread pushes ``expires_at``
forward while the run lives, but only while the row is still this run's and unexpired. Before
each commit the run calls ``Hold.check()`` (fencing): it raises LeaseLostError when the date was
taken over, released or let lapse, so a run that lost its date writes nothing.

Times are epoch instants throughout: written as ``timestamp_micros`` of the driver's clock and
read back as ``unix_micros``. PySpark's ``collect()`` would turn a TIMESTAMP into a naive
datetime in the driver process's local time zone, whatever the session time zone says.

Operators list leases and force-release a stuck one (``jobs/leases.py``); each forced release
is recorded in ``scoring_lock_releases``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from delta.exceptions import DeltaConcurrentModificationException
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.lakehouse.delta import ensure_table
from riskudf.lakehouse.schemas import (
    RETENTION_PROPERTIES,
    SCORING_LOCK_RELEASES_COLUMNS,
    SCORING_LOCK_RELEASES_COMMENT,
    SCORING_LOCKS_COLUMNS,
)

log = logging.getLogger(__name__)
_ATTEMPTS = 8
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class RunLockedError(RuntimeError):
    """Another run holds the as-of date."""


class LeaseLostError(RunLockedError):
    """This run no longer holds its as-of date: taken over, released, or lapsed."""


class NoLeaseError(LookupError):
    """No lease to release on that as-of date."""


class ReleaseConflictError(RuntimeError):
    """A forced release kept conflicting with other writers of the lease table."""


@dataclass(frozen=True)
class Lease:
    as_of_date: dt.date
    run_id: str
    holder: str
    acquired_at: dt.datetime  # UTC
    expires_at: dt.datetime  # UTC

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at <= now


def _is_conflict(exc: Exception) -> bool:
    """Delta's optimistic-concurrency conflict, converted by PySpark or raw from Py4J."""
    if isinstance(exc, DeltaConcurrentModificationException):
        return True
    java = getattr(exc, "java_exception", None)
    return java is not None and "Concurrent" in java.getClass().getName()


def this_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def now_utc() -> dt.datetime:
    return _at(_now_us())


def _now_us() -> int:
    return time.time_ns() // 1000


def _at(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def _lease_us(lease_minutes: float) -> int:
    if not lease_minutes > 0:
        raise ValueError(f"lease_minutes must be positive, got {lease_minutes}")
    return round(lease_minutes * 60_000_000)


def _instant(micros: int) -> Column:
    """A TIMESTAMP literal for an epoch instant, whatever the session or driver time zone."""
    return F.timestamp_micros(F.lit(micros))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_gone(lease: Lease) -> bool:
    """The lease's driver ran on this host and its process no longer exists."""
    host, _, pid = lease.holder.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid))


def is_abandoned(lease: Lease, now: dt.datetime) -> bool:
    """The lease's time is up, or it belongs to a dead driver process on this host."""
    return lease.expired(now) or _process_gone(lease)


def _read(spark: SparkSession, table: str, where: Column | None = None) -> list[Lease]:
    df = spark.table(table)
    if where is not None:
        df = df.where(where)
    rows = df.select(
        "as_of_date",
        "run_id",
        "holder",
        F.unix_micros("acquired_at").alias("acquired_us"),
        F.unix_micros("expires_at").alias("expires_us"),
    ).collect()
    leases = [
        Lease(
            row["as_of_date"],
            row["run_id"],
            row["holder"],
            _at(row["acquired_us"]),
            _at(row["expires_us"]),
        )
        for row in rows
    ]
    return sorted(leases, key=lambda lease: (lease.as_of_date, lease.run_id))


def current_lease(spark: SparkSession, table: str, as_of: dt.date) -> Lease | None:
    found = _read(spark, table, F.col("as_of_date") == F.lit(as_of))
    return found[0] if found else None


def leases(spark: SparkSession, table: str) -> list[Lease]:
    """Every lease in the table, by as-of date (none when the table does not exist yet)."""
    if not spark.catalog.tableExists(table):
        return []
    return _read(spark, table)


def _retry(action: str, attempt: Callable[[], object]) -> bool:
    """Run ``attempt()`` again on Delta conflicts; False when every attempt conflicted."""
    for _ in range(_ATTEMPTS):
        try:
            attempt()
            return True
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            log.info("%s: Delta conflict, retrying", action)
            time.sleep(0.2)
    return False


def acquire(
    spark: SparkSession, table: str, *, as_of: dt.date, run_id: str, lease_minutes: float
) -> Lease:
    """Claim ``as_of`` for ``run_id`` (for ``lease_minutes``, fractions allowed) and return the
    lease, or raise RunLockedError naming the holder."""
    lease_us = _lease_us(lease_minutes)
    for _ in range(_ATTEMPTS):
        now = _now_us()
        held = current_lease(spark, table, as_of)
        other = held is not None and held.run_id != run_id
        if held is not None and other and not is_abandoned(held, _at(now)):
            raise RunLockedError(
                f"as-of date {as_of} is being scored by run {held.run_id} ({held.holder}, "
                f"since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC); this run stops without "
                f"writing. The hold lapses at {held.expires_at:%Y-%m-%d %H:%M:%S} UTC."
            )
        claim = spark.range(1).select(
            F.lit(as_of).alias("as_of_date"),
            F.lit(run_id).alias("run_id"),
            F.lit(this_holder()).alias("holder"),
            _instant(now).alias("acquired_at"),
            _instant(now + lease_us).alias("expires_at"),
        )
        # Decided again inside the MERGE, so that a lease renewed since the read above stays.
        takeover = (F.col("t.run_id") == F.col("s.run_id")) | (
            F.col("t.expires_at") <= F.col("s.acquired_at")
        )
        if held is not None and other and _process_gone(held):
            takeover |= (F.col("t.run_id") == F.lit(held.run_id)) & (
                F.col("t.holder") == F.lit(held.holder)
            )
        try:
            (
                DeltaTable.forName(spark, table)
                .alias("t")
                .merge(claim.alias("s"), "t.as_of_date = s.as_of_date")
                .whenMatchedUpdateAll(condition=takeover)
                .whenNotMatchedInsertAll()
                .execute()
            )
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            time.sleep(0.2)
            continue
        won = current_lease(spark, table, as_of)
        if won is not None and won.run_id == run_id:
            if held is not None and other:
                log.warning("taking over the abandoned hold of run %s on %s", held.run_id, as_of)
            return won
    raise RunLockedError(f"could not claim as-of date {as_of} for run {run_id}")


def release(spark: SparkSession, table: str, *, as_of: dt.date, run_id: str) -> None:
    """Give up ``run_id``'s lease on ``as_of``; a lease of another run is left alone."""
    condition = (F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == F.lit(run_id))
    if not _retry(
        f"release of {as_of}", lambda: DeltaTable.forName(spark, table).delete(condition)
    ):
        log.warning("run %s: could not release its hold on %s; it lapses by itself", run_id, as_of)


def _lost(lease: Lease | None, *, as_of: dt.date, run_id: str, now: dt.datetime) -> str | None:
    """Why ``run_id`` no longer holds ``as_of``, or None while it does."""
    if lease is None:
        return f"run {run_id} lost as-of date {as_of}: its lease was released"
    if lease.run_id != run_id:
        return (
            f"run {run_id} lost as-of date {as_of}: taken over by run {lease.run_id} "
            f"({lease.holder}) at {lease.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    if lease.expired(now):
        return (
            f"run {run_id} lost as-of date {as_of}: its lease lapsed at "
            f"{lease.expires_at:%Y-%m-%d %H:%M:%S} UTC without renewal"
        )
    return None


def ensure_held(spark: SparkSession, table: str, *, as_of: dt.date, run_id: str) -> Lease:
    """The lease, if ``run_id`` still holds ``as_of`` unexpired; else LeaseLostError (fencing:
    call it before each commit)."""
    lease = current_lease(spark, table, as_of)
    reason = _lost(lease, as_of=as_of, run_id=run_id, now=now_utc())
    if reason is not None or lease is None:
        raise LeaseLostError(reason)
    return lease


def renew(
    spark: SparkSession, table: str, *, as_of: dt.date, run_id: str, lease_minutes: float
) -> Lease:
    """Push ``run_id``'s lease on ``as_of`` to now + ``lease_minutes`` and return it; raise
    LeaseLostError if the lease is no longer this run's or has lapsed (it is not revived)."""
    now = _now_us()
    mine = (
        (F.col("as_of_date") == F.lit(as_of))
        & (F.col("run_id") == F.lit(run_id))
        & (F.col("expires_at") > _instant(now))
    )
    expires: dict[str, str | Column] = {"expires_at": _instant(now + _lease_us(lease_minutes))}
    renewed = _retry(
        f"renewal of {as_of}", lambda: DeltaTable.forName(spark, table).update(mine, expires)
    )
    if not renewed:
        log.warning("run %s: renewal of its hold on %s kept conflicting", run_id, as_of)
    return ensure_held(spark, table, as_of=as_of, run_id=run_id)


class Hold:
    """A lease held by a live run, renewed by a heartbeat thread; made by ``hold``."""

    def __init__(
        self,
        spark: SparkSession,
        table: str,
        *,
        as_of: dt.date,
        run_id: str,
        lease_minutes: float,
        heartbeat_seconds: float,
    ) -> None:
        if not 0 < heartbeat_seconds * 2 <= _lease_us(lease_minutes) / 1e6:
            raise ValueError(
                f"heartbeat_seconds must be positive and at most half the lease, "
                f"got {heartbeat_seconds} for {lease_minutes} minutes"
            )
        self.spark = spark
        self.table = table
        self.as_of = as_of
        self.run_id = run_id
        self.lease_minutes = lease_minutes
        self.heartbeat_seconds = heartbeat_seconds
        self.lost: str | None = None  # set by the heartbeat when it finds the lease gone
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-heartbeat-{as_of}", daemon=True
        )

    def check(self) -> Lease:
        """Raise LeaseLostError unless this run still holds its date (call before a commit)."""
        if self.lost is not None:
            raise LeaseLostError(self.lost)
        return ensure_held(self.spark, self.table, as_of=self.as_of, run_id=self.run_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                renew(
                    self.spark,
                    self.table,
                    as_of=self.as_of,
                    run_id=self.run_id,
                    lease_minutes=self.lease_minutes,
                )
            except LeaseLostError as exc:
                self.lost = str(exc)
                log.error("%s; the run must stop before its next commit", exc)
                return
            except Exception as exc:
                # The lease stands until it lapses; the next beat tries again.
                log.warning(
                    "run %s: could not renew its hold on %s (%s)",
                    self.run_id,
                    self.as_of,
                    type(exc).__name__,
                )

    def _start(self) -> None:
        self._thread.start()

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@contextmanager
def hold(
    spark: SparkSession,
    table: str,
    *,
    as_of: dt.date,
    run_id: str,
    lease_minutes: float,
    heartbeat_seconds: float,
) -> Iterator[Hold]:
    """Claim ``as_of`` (RunLockedError if another run holds it), renew the lease every
    ``heartbeat_seconds`` while the block runs, then stop renewing and release it."""
    held = Hold(
        spark,
        table,
        as_of=as_of,
        run_id=run_id,
        lease_minutes=lease_minutes,
        heartbeat_seconds=heartbeat_seconds,
    )
    acquire(spark, table, as_of=as_of, run_id=run_id, lease_minutes=lease_minutes)
    held._start()
    try:
        yield held
    finally:
        held._stop_beating()
        release(spark, table, as_of=as_of, run_id=run_id)


def ensure_tables(spark: SparkSession, *, locks: str, releases: str) -> None:
    """Create the lease table and the record of forced releases if they do not exist."""
    ensure_table(
        spark, locks, SCORING_LOCKS_COLUMNS, comment="internal: which run holds which as-of date"
    )
    _ensure_releases(spark, releases)


def _ensure_releases(spark: SparkSession, releases: str) -> None:
    ensure_table(
        spark,
        releases,
        SCORING_LOCK_RELEASES_COLUMNS,
        comment=SCORING_LOCK_RELEASES_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def force_release(
    spark: SparkSession,
    table: str,
    *,
    releases: str,
    as_of: dt.date,
    reason: str,
    released_by: str,
) -> Lease:
    """Delete the lease on ``as_of`` whoever holds it, record who released it and why in
    ``releases``, and return the released lease. NoLeaseError if there is none.

    The run that held it, if still alive, fails its next ``Hold.check()``.
    """
    if not reason.strip():
        raise ValueError("a forced release needs a reason")
    if not released_by.strip():
        raise ValueError("a forced release needs the name of who releases it")
    lease = current_lease(spark, table, as_of) if spark.catalog.tableExists(table) else None
    if lease is None:
        raise NoLeaseError(f"no lease on as-of date {as_of} in {table}")
    _ensure_releases(spark, releases)
    target = spark.range(1).select(
        F.lit(as_of).alias("as_of_date"), F.lit(lease.run_id).alias("run_id")
    )
    metrics: list[DataFrame] = []
    deleted = _retry(
        f"forced release of {as_of}",
        lambda: metrics.append(
            DeltaTable.forName(spark, table)
            .alias("t")
            .merge(target.alias("s"), "t.as_of_date = s.as_of_date AND t.run_id = s.run_id")
            .whenMatchedDelete()
            .execute()
        ),
    )
    if not deleted:
        raise ReleaseConflictError(f"as-of date {as_of}: the release kept conflicting; try again")
    row = metrics[-1].first()
    if row is None or row["num_deleted_rows"] != 1:
        raise NoLeaseError(f"the lease on as-of date {as_of} changed while releasing; list again")
    record = spark.range(1).select(
        F.lit(as_of).alias("as_of_date"),
        F.lit(lease.run_id).alias("run_id"),
        F.lit(lease.holder).alias("holder"),
        F.lit(released_by).alias("released_by"),
        F.lit(reason).alias("reason"),
        _instant(_now_us()).alias("released_at"),
    )
    record.writeTo(releases).append()
    log.warning("the lease of run %s on %s was released by an operator", lease.run_id, as_of)
    return lease


def lease_lines(found: list[Lease], *, now: dt.datetime) -> list[str]:
    """A table of leases for the terminal: date, run, holder, acquired, expires, expired."""
    header = ("as_of_date", "run_id", "holder", "acquired (UTC)", "expires (UTC)", "expired")
    rows = [
        (
            lease.as_of_date.isoformat(),
            lease.run_id,
            lease.holder,
            f"{lease.acquired_at:%Y-%m-%d %H:%M:%S}",
            f"{lease.expires_at:%Y-%m-%d %H:%M:%S}",
            "yes" if lease.expired(now) else "no",
        )
        for lease in found
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
