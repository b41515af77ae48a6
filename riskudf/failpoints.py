"""Failpoints: real faults on demand, for the fault tests and for drills on a cluster.

``RISKUDF_FAILPOINT=<site>:<action>[:<arg>]`` is read on the driver when a run starts.

- site ``udf``: in the scoring UDF, once the task has scored ``arg`` rows (default 0);
- sites ``after_lock``, ``before_commit``, ``between_commits``, ``before_run_log``: on the
  driver, at those points of riskudf.scoring.pipeline.score_portfolio;
- action ``raise`` (FailpointError), ``kill`` (SIGKILL to the process: the Python worker in
  the UDF, the driver elsewhere), ``oom`` (a real MemoryError: the process's address space is
  capped just above its size and then a large buffer is allocated), ``sleep`` (``arg`` seconds,
  driver sites only), ``pause`` and ``stall`` (driver sites only; the third part is a file path:
  the driver creates ``<path>.reached``, waits until ``<path>`` exists, then goes on (pause) or
  raises FailpointError (stall); drills of runs that overlap).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "RISKUDF_FAILPOINT"
DRIVER_SITES = ("after_lock", "before_commit", "between_commits", "before_run_log")
SITES = ("udf", *DRIVER_SITES)
ACTIONS = ("raise", "kill", "oom", "sleep", "pause", "stall")
WAITS = ("pause", "stall")
WAIT_LIMIT_S = 900


class FailpointError(RuntimeError):
    """Raised on purpose by a failpoint."""


@dataclass(frozen=True)
class Failpoint:
    site: str
    action: str
    arg: float = 0.0
    path: str = ""  # pause and stall: the release file


def parse(text: str | None) -> Failpoint | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SITES or parts[1] not in ACTIONS:
        raise ValueError(
            f"{ENV}={text!r}: expected <site>:<action>[:<arg>] with site in {SITES} "
            f"and action in {ACTIONS}"
        )
    if parts[1] in ("sleep", *WAITS) and parts[0] == "udf":
        raise ValueError(f"{ENV}={text!r}: {parts[1]} is for driver sites only")
    if parts[1] in WAITS:
        if len(parts) != 3 or not parts[2]:
            raise ValueError(f"{ENV}={text!r}: {parts[1]} needs a file path")
        return Failpoint(parts[0], parts[1], path=parts[2])
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
    if point.action in WAITS:
        _wait_for_release(point.path)
        if point.action == "stall":
            raise FailpointError(f"failpoint {point.site}:{point.action}")


def _wait_for_release(path: str) -> None:
    Path(f"{path}.reached").touch()
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise FailpointError(f"failpoint: {path} was not created in {WAIT_LIMIT_S}s")
        time.sleep(0.2)


def hit(point: Failpoint | None, site: str) -> None:
    """Act if ``point`` is set for ``site`` (driver sites)."""
    if point is not None and point.site == site:
        act(point)
