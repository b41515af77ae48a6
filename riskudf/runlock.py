"""One run per as-of date at a time: a lease row in a small Delta table.

A run claims its date with a MERGE that inserts the lease row only if none is there. Two runs
that claim at once conflict inside Delta (the second commit fails its conflict check), so one
wins and the other sees the winner's row. A lease whose holder is gone (its time is up, or its
driver process on this host no longer exists) is taken over by the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from dataclasses import dataclass

from delta.exceptions import DeltaConcurrentModificationException
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.tables import SCORING_LOCKS_COLUMNS, schema

log = logging.getLogger(__name__)
_ATTEMPTS = 8


class RunLockedError(RuntimeError):
    """Another run holds the as-of date."""


@dataclass(frozen=True)
class Lease:
    as_of_date: dt.date
    run_id: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime


def _is_conflict(exc: Exception) -> bool:
    """Delta's optimistic-concurrency conflict, converted by PySpark or raw from Py4J."""
    if isinstance(exc, DeltaConcurrentModificationException):
        return True
    java = getattr(exc, "java_exception", None)
    return java is not None and "Concurrent" in java.getClass().getName()


def this_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_abandoned(lease: Lease, now: dt.datetime) -> bool:
    """The lease's time is up, or it belongs to a dead driver process on this host."""
    if lease.expires_at <= now:
        return True
    host, _, pid = lease.holder.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid))


def current_lease(spark: SparkSession, table: str, as_of: dt.date) -> Lease | None:
    row = spark.table(table).where(F.col("as_of_date") == F.lit(as_of)).first()
    if row is None:
        return None
    return Lease(
        row["as_of_date"],
        row["run_id"],
        row["holder"],
        row["acquired_at"].replace(tzinfo=dt.UTC),
        row["expires_at"].replace(tzinfo=dt.UTC),
    )


def acquire(
    spark: SparkSession, table: str, *, as_of: dt.date, run_id: str, lease_minutes: int
) -> None:
    """Claim ``as_of`` for ``run_id`` or raise RunLockedError naming the holder."""
    for _ in range(_ATTEMPTS):
        now = dt.datetime.now(dt.UTC)
        held = current_lease(spark, table, as_of)
        if held is not None and held.run_id != run_id and not is_abandoned(held, now):
            raise RunLockedError(
                f"as-of date {as_of} is being scored by run {held.run_id} ({held.holder}, "
                f"since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC); this run stops without "
                f"writing. The hold lapses at {held.expires_at:%Y-%m-%d %H:%M:%S} UTC."
            )
        if held is not None and held.run_id != run_id:
            log.warning("taking over the abandoned hold of run %s on %s", held.run_id, as_of)
        row = (as_of, run_id, this_holder(), now, now + dt.timedelta(minutes=lease_minutes))
        claim = spark.createDataFrame([row], schema(SCORING_LOCKS_COLUMNS))
        stale = held.run_id if held is not None else ""
        try:
            (
                DeltaTable.forName(spark, table)
                .alias("t")
                .merge(claim.alias("s"), "t.as_of_date = s.as_of_date")
                .whenMatchedUpdateAll(condition=F.col("t.run_id") == F.lit(stale))
                .whenNotMatchedInsertAll()
                .execute()
            )
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            time.sleep(0.2)
            continue
        held = current_lease(spark, table, as_of)
        if held is not None and held.run_id == run_id:
            return
    raise RunLockedError(f"could not claim as-of date {as_of} for run {run_id}")


def release(spark: SparkSession, table: str, *, as_of: dt.date, run_id: str) -> None:
    condition = (F.col("as_of_date") == F.lit(as_of)) & (F.col("run_id") == F.lit(run_id))
    for _ in range(_ATTEMPTS):
        try:
            DeltaTable.forName(spark, table).delete(condition)
            return
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            time.sleep(0.2)
    log.warning("run %s: could not release its hold on %s; it lapses by itself", run_id, as_of)
