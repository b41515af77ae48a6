"""The per-worker model cache: loaded once per Python worker from the broadcast artifact."""

from __future__ import annotations

import shutil

from pyspark import Broadcast

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
