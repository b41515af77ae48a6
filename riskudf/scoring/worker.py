"""The per-worker model cache: loaded once per Python worker from the broadcast artifact."""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
from typing import Any

from pyspark import Broadcast
from pyspark.accumulators import AccumulatorParam

from riskudf.model.artifact import materialize_artifact
from riskudf.scoring.device import task_device
from riskudf.scoring.scorer import Scorer, ScoringOptions

_SCORERS: dict[str, Scorer] = {}
_LOADS: dict[str, int] = {}


def worker_load_count(key: str) -> int:
    """How many times this Python process has loaded the model ``key`` (should be once)."""
    return _LOADS.get(key, 0)


def set_task_threads() -> None:
    """Give torch the task's cores as threads (PySpark's OMP_NUM_THREADS alone is not enough)."""
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    cpus = context.cpus() if context is not None else 1
    if torch.get_num_threads() != cpus:
        torch.set_num_threads(max(1, cpus))


def get_scorer(key: str, artifact: Broadcast[dict[str, bytes]], options: ScoringOptions) -> Scorer:
    """The worker's cached scorer for ``key``; loads it from the broadcast on first use.

    A worker keeps one model: a different model, device or options replaces it, so that a
    reused worker never holds two copies (on a GPU, or on the CPU).
    """
    device = task_device(options.local_gpu)
    cache_key = f"{key}|{device}|{options}"
    scorer = _SCORERS.get(cache_key)
    if scorer is None:
        from riskudf.model.load import load_artifact

        _SCORERS.clear()
        local_dir = materialize_artifact(artifact.value)
        try:
            manifest, tokenizer, model = load_artifact(local_dir)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
        scorer = Scorer(
            tokenizer,
            model,
            positive_label=manifest.positive_label,
            device=device,
            options=options,
            calibration=manifest.calibration,
            chunking=manifest.chunking or None,
            features=manifest.features or None,
        )
        _SCORERS[cache_key] = scorer
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return scorer


_SUMMED = ("tasks", "batches", "rows", "model_loads")
_LARGEST = ("max_batch_rows", "max_batch_chars", "peak_rss_mb")


class WorkerStats(AccumulatorParam):
    """An accumulator of per-worker records keyed ``host:pid``: counts are summed, peaks kept.

    A task Spark runs twice (a retry, a recomputed cache block) is counted twice.
    """

    def zero(self, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {}

    def addInPlace(
        self, first: dict[str, dict[str, Any]], second: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        for worker, record in second.items():
            mine = first.get(worker)
            if mine is None:
                first[worker] = dict(record)
                continue
            for name in _SUMMED:
                mine[name] += record[name]
            for name in _LARGEST:
                mine[name] = max(mine[name], record[name])
            mine["resources"] = sorted(set(mine["resources"]) | set(record["resources"]))
        return first


def executor_label(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The executor this worker belongs to, as far as the cluster manager tells its processes:
    SPARK_EXECUTOR_ID (Kubernetes), the executorId of the log URL (standalone), CONTAINER_ID
    (YARN); else "driver" in local mode."""
    if environ.get("SPARK_EXECUTOR_ID"):
        return environ["SPARK_EXECUTOR_ID"]
    found = re.search(r"executorId=([^&]+)", environ.get("SPARK_LOG_URL_STDERR", ""))
    if found:
        return found[1]
    return environ.get("CONTAINER_ID", "driver")


class TaskRecord:
    """What one task saw: batches, rows and the largest batch, as it streams by."""

    def __init__(self) -> None:
        self.batches = 0
        self.rows = 0
        self.max_rows = 0
        self.max_chars = 0

    def count(self, texts: list[str]) -> None:
        self.batches += 1
        self.rows += len(texts)
        self.max_rows = max(self.max_rows, len(texts))
        self.max_chars = max(self.max_chars, sum(len(t) for t in texts))

    def stats(self, *, loads: int, device: str, precision: str) -> dict[str, dict[str, Any]]:
        """The accumulator update of this task, keyed by its worker."""
        from pyspark import TaskContext

        context = TaskContext.get()
        resources = context.resources() if context is not None else {}
        host = socket.gethostname()
        record = {
            "executor": executor_label(),
            "host": host,
            "pid": os.getpid(),
            "tasks": 1,
            "batches": self.batches,
            "rows": self.rows,
            "model_loads": loads,
            "device": device,
            "precision": precision,
            "resources": sorted(f"{k}:{a}" for k, r in resources.items() for a in r.addresses),
            "max_batch_rows": self.max_rows,
            "max_batch_chars": self.max_chars,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        return {f"{host}:{os.getpid()}": record}


def worker_rows(stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The accumulated records as run-log rows, in a stable order."""
    return [stats[worker] for worker in sorted(stats)]


def loads_by_executor(workers: list[dict[str, Any]]) -> dict[str, int]:
    """Model loads per executor, summed over its workers."""
    loads: dict[str, int] = {}
    for worker in workers:
        loads[worker["executor"]] = loads.get(worker["executor"], 0) + worker["model_loads"]
    return loads
