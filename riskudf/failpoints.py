"""Failpoints: real faults on demand, for the fault tests and for drills on a cluster.

``RISKUDF_FAILPOINT=<site>:<action>[:<arg>]`` is read on the driver when a run starts.

- site ``udf``: in the scoring UDF, once the task has scored ``arg`` rows (default 0);
- sites ``after_lock``, ``before_commit``, ``between_commits``, ``before_run_log``: on the
  driver, at those points of scoring.score_portfolio;
- action ``raise`` (FailpointError), ``kill`` (SIGKILL to the process: the Python worker in
  the UDF, the driver elsewhere), ``oom`` (a real MemoryError: the process's address space is
  capped just above its size and then a large buffer is allocated), ``sleep`` (``arg`` seconds,
  driver sites only).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from dataclasses import dataclass

ENV = "RISKUDF_FAILPOINT"
DRIVER_SITES = ("after_lock", "before_commit", "between_commits", "before_run_log")
SITES = ("udf", *DRIVER_SITES)
ACTIONS = ("raise", "kill", "oom", "sleep")


class FailpointError(RuntimeError):
    """Raised on purpose by a failpoint."""


@dataclass(frozen=True)
class Failpoint:
    site: str
    action: str
    arg: float = 0.0


def parse(text: str | None) -> Failpoint | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SITES or parts[1] not in ACTIONS:
        raise ValueError(
            f"{ENV}={text!r}: expected <site>:<action>[:<arg>] with site in {SITES} "
            f"and action in {ACTIONS}"
        )
    if parts[1] == "sleep" and parts[0] == "udf":
        raise ValueError(f"{ENV}={text!r}: sleep is for driver sites only")
    arg = float(parts[2]) if len(parts) == 3 else 0.0
    return Failpoint(parts[0], parts[1], arg)


def from_env() -> Failpoint | None:
    return parse(os.environ.get(ENV))


def _out_of_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), hard))
    try:
        buffer = bytearray(1 << 30)
        del buffer
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    raise AssertionError("the capped allocation did not fail")  # pragma: no cover


def act(point: Failpoint) -> None:
    """Do the failpoint's action now."""
    if point.action == "raise":
        raise FailpointError(f"failpoint {point.site}:{point.action}")
    if point.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if point.action == "oom":
        _out_of_memory()
    if point.action == "sleep":
        time.sleep(point.arg)


def hit(point: Failpoint | None, site: str) -> None:
    """Act if ``point`` is set for ``site`` (driver sites)."""
    if point is not None and point.site == site:
        act(point)
