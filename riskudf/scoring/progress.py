"""Progress of a run as JSON log lines: run id, stage, rows done, rows per second.

Ids, counts and timings only; never input text. Task-level detail stays in the Spark UI.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

LOGGER = "riskudf.scoring.progress"


class Progress:
    """Times the stages of one run; ``done`` logs a stage as one JSON line."""

    def __init__(self, run_id: str, as_of: dt.date, mode: str) -> None:
        self.run_id = run_id
        self.as_of = as_of
        self.mode = mode
        self._log = logging.getLogger(LOGGER)
        self._start = self._last = time.monotonic()

    def done(
        self, stage: str, rows: int | None = None, **counts: int | str | None
    ) -> dict[str, object]:
        now = time.monotonic()
        seconds = now - self._last
        self._last = now
        line: dict[str, object] = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "mode": self.mode,
            "stage": stage,
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds, 1) if rows is not None and seconds > 0 else None,
            "elapsed_s": round(now - self._start, 3),
            **counts,
        }
        self._log.info(json.dumps(line, sort_keys=False))
        return line
