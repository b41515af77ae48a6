"""The scoring pandas UDF: a factory, a per-worker model cache, device choice and batching.

The factory's closure holds only the broadcast artifact and plain options. The model is
materialised, verified and loaded on first use in each Python worker and cached in this module,
so that a reused worker (``spark.python.worker.reuse``) serves every later task without
loading it again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import BooleanType, DoubleType, IntegerType, StructField, StructType

from riskudf.failpoints import Failpoint, act
from riskudf.model.artifact import materialize_artifact
from riskudf.model.calibration import calibrate

SCORE_TYPE = StructType(
    [
        StructField("pd", DoubleType()),
        StructField("n_tokens", IntegerType()),
        StructField("truncated", BooleanType()),
        StructField("n_chunks", IntegerType()),
    ]
)


@dataclass(frozen=True)
class ScoringOptions:
    max_length: int
    token_budget: int
    precision: str = "fp32"
    failpoint: Failpoint | None = None


def plan_batches(lengths: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Group row indices into batches of similar length whose padded size fits the budget.

    Rows are taken in ascending length order (stable), so each batch pads to its last row.
    A row longer than the budget still gets a batch of its own.
    """
    order = np.argsort(lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        rows = end - start
        longest = int(lengths[order[end - 1]])
        if rows > 1 and rows * longest > token_budget:
            batches.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


def cut_to_window(ids: list[int], max_length: int, sep_id: int) -> list[int]:
    """Keep the head of a tokenised document so that it fits the window, ending with [SEP]."""
    if len(ids) <= max_length:
        return ids
    return [*ids[: max_length - 1], sep_id]


def pad_batch(windows: list[list[int]], pad_id: int) -> dict[str, Any]:
    """Right-pad token ids to the batch's longest row; the attention mask marks real tokens."""
    import torch

    longest = max(len(ids) for ids in windows)
    input_ids = torch.full((len(windows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(windows), longest), dtype=torch.long)
    for row, ids in enumerate(windows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


class Scorer:
    """A loaded classifier that turns documents into a PD, on one device."""

    def __init__(
        self,
        tokenizer: Any,
        model: Any,
        *,
        positive_label: int,
        device: str,
        options: ScoringOptions,
        calibration: dict[str, float] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model.to(device)
        self.positive_label = positive_label
        self.calibration = calibration
        self.device = device
        self.options = options

    def score(self, texts: list[str]) -> pd.DataFrame:
        import torch

        encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        n_tokens = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(texts))
        sep_id = self.tokenizer.sep_token_id
        windows = [cut_to_window(ids, self.options.max_length, sep_id) for ids in encoded]
        lengths = np.fromiter((len(ids) for ids in windows), dtype=np.int64, count=len(texts))
        pds = np.empty(len(texts), dtype=np.float64)
        autocast = self.options.precision == "bf16"
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, torch.bfloat16, enabled=autocast):
            for rows in plan_batches(lengths, self.options.token_budget):
                batch = pad_batch([windows[i] for i in rows], self.tokenizer.pad_token_id)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                logits = self.model(**batch).logits.float()
                probs = torch.softmax(logits, dim=-1)[:, self.positive_label]
                pds[rows] = probs.cpu().numpy()
        if self.calibration is not None:
            pds = calibrate(pds, **self.calibration)
        # A non-finite probability is no score: it reaches Spark as null (NOT_SCORED).
        pds[~np.isfinite(pds)] = np.nan
        return pd.DataFrame(
            {
                "pd": pds,
                "n_tokens": n_tokens.astype(np.int32),
                "truncated": n_tokens > self.options.max_length,
                "n_chunks": np.ones(len(texts), dtype=np.int32),
            }
        )


_SCORERS: dict[str, Scorer] = {}
_LOADS: dict[str, int] = {}


def worker_load_count(key: str) -> int:
    """How many times this Python process has loaded the model ``key`` (should be once)."""
    return _LOADS.get(key, 0)


def cuda_index(address: str, visible: str | None, device_count: int) -> int:
    """The torch device index of the GPU Spark assigned by its physical address.

    Where the cluster manager hides the other GPUs (CUDA_VISIBLE_DEVICES), the assigned one is
    numbered by its position in that list.
    """
    if visible:
        ids = [part.strip() for part in visible.split(",")]
        if address in ids:
            return ids.index(address)
    index = int(address)
    return index if index < device_count else 0


def task_device() -> str:
    """The GPU Spark assigned to the running task when there is one, else the CPU."""
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses and torch.cuda.is_available():
        index = cuda_index(
            gpus.addresses[0], os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()
        )
        return f"cuda:{index}"
    return "cpu"


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
    device = task_device()
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
        )
        _SCORERS[cache_key] = scorer
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return scorer


def make_pd_udf(artifact: Broadcast[dict[str, bytes]], *, key: str, options: ScoringOptions) -> Any:
    """A pandas UDF mapping a document column to struct<pd, n_tokens, truncated, n_chunks>.

    ``artifact`` is a Broadcast of the model directory's files (see load_artifact_bytes) and
    ``key`` identifies the model (artifact_key: the manifest's sha256) in the worker cache.
    """

    @pandas_udf(SCORE_TYPE)  # type: ignore[call-overload]
    def score_documents(documents: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        set_task_threads()
        scorer = get_scorer(key, artifact, options)
        point = options.failpoint if options.failpoint and options.failpoint.site == "udf" else None
        done = 0
        for batch in documents:
            if point is not None and done >= point.arg:
                act(point)
            yield scorer.score(batch.fillna("").astype(str).tolist())
            done += len(batch)
        if point is not None and done >= point.arg:
            act(point)

    return score_documents
