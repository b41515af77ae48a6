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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from pyspark import Broadcast
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from riskudf.config import GradingConf, ReasonsConf
from riskudf.explain import compile_library, mapped_spans, occlusion_weights, top_reasons
from riskudf.failpoints import Failpoint, act
from riskudf.grading import decisions_of
from riskudf.model.artifact import materialize_artifact
from riskudf.model.calibration import apply_calibration
from riskudf.model.features import FeatureError, encode_features, feature_spec_of
from riskudf.text import aggregate, check_chunking, chunk_windows

REASONS_TYPE = ArrayType(
    StructType(
        [
            StructField("code", StringType()),
            StructField("description", StringType()),
            StructField("weight", DoubleType()),
        ]
    )
)
SCORE_TYPE = StructType(
    [
        StructField("pd", DoubleType()),
        StructField("n_tokens", IntegerType()),
        StructField("truncated", BooleanType()),
        StructField("n_chunks", IntegerType()),
        StructField("reasons", REASONS_TYPE),
    ]
)


PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# CPU flags (as /proc/cpuinfo spells them) of native bf16 matrix arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class ExplainOptions:
    """Reason codes in the scoring pass: which decisions get them (from the grading
    thresholds) and the code library. See riskudf/explain.py."""

    reasons: ReasonsConf
    grading: GradingConf


@dataclass(frozen=True)
class ScoringOptions:
    max_length: int
    token_budget: int
    precision: str = "auto"
    failpoint: Failpoint | None = None
    local_gpu: bool = False  # local mode with a GPU: Spark assigns none, use cuda:0
    explain: ExplainOptions | None = None  # None: reasons is null on every row


def resolve_precision(
    requested: str, *, device: str, cpu_flags: frozenset[str], cuda_bf16: bool = False
) -> str:
    """The precision to score in: ``requested``, or for ``auto`` the fastest one that stays
    within 1e-3 of fp32 on the demo portfolio on this hardware.

    bf16 autocast qualifies where the hardware computes in bf16 natively (AVX512-BF16 or AMX
    CPUs, GPUs from Ampere on); fp16 on older GPUs; otherwise fp32. int8 dynamic quantisation
    is never the default: it moved PDs by 5.6e-3 here (README, Throughput).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    gpu = device.startswith("cuda")
    if requested == "auto":
        if gpu:
            return "bf16" if cuda_bf16 else "fp16"
        return "bf16" if NATIVE_BF16_FLAGS & cpu_flags else "fp32"
    if gpu and requested == "int8":
        raise ValueError("int8 dynamic quantisation runs on the CPU only")
    if not gpu and requested == "fp16":
        raise ValueError("fp16 autocast is for GPUs; use bf16 or fp32 on the CPU")
    return requested


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not readable)."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def device_precision(requested: str, device: str) -> str:
    """resolve_precision for this process's hardware."""
    cuda_bf16 = False
    if device.startswith("cuda"):
        import torch

        cuda_bf16 = bool(torch.cuda.is_bf16_supported())
    return resolve_precision(requested, device=device, cpu_flags=cpu_flags(), cuda_bf16=cuda_bf16)


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of the Linear layers (weights int8, activations per batch)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated for torchao from torch 2.10; torch is pinned < 2.10.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


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


def pad_batch(windows: list[list[int]], pad_id: int, *, pin: bool = False) -> dict[str, Any]:
    """Right-pad token ids to the batch's longest row; the attention mask marks real tokens.

    ``pin``: page-locked tensors, so that the copy to a GPU can overlap with compute.
    """
    import torch

    longest = max(len(ids) for ids in windows)
    input_ids = np.full((len(windows), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(windows), longest), dtype=np.int64)
    for row, ids in enumerate(windows):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
    }
    if pin:
        batch = {name: tensor.pin_memory() for name, tensor in batch.items()}
    return batch


@dataclass(frozen=True)
class Prepared:
    windows: list[list[int]]  # token ids cut to the window, or every chunk of each document
    n_tokens: np.ndarray  # tokens before the cut, per document
    owners: np.ndarray | None = None  # chunked: the document of each window
    features: np.ndarray | None = None  # fused model: the encoded features of each window
    texts: list[str] | None = None  # the documents, for reason codes (never output)
    document_features: np.ndarray | None = None  # fused model with reasons: one row per text


# A batch of documents, and their feature columns for a model with features (else None).
Batch = tuple[list[str], pd.DataFrame | None]


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
        calibration: dict[str, Any] | None = None,
        chunking: dict[str, Any] | None = None,
        features: dict[str, Any] | None = None,
    ) -> None:
        # chunking (from the manifest): overlapping windows aggregated per document, as in
        # training; without it, the head of a long document is scored and flagged truncated.
        # features (the manifest's spec): a fused model, fed each document's encoded columns.
        self.features = feature_spec_of(features)
        self.chunking = check_chunking(chunking, options.max_length) if chunking else None
        self.precision = device_precision(options.precision, device)
        if self.precision == "int8":
            model = quantize_int8(model)
        self.tokenizer = tokenizer
        self.model = model.to(device)
        self.positive_label = positive_label
        self.calibration = calibration
        self.device = device
        self.options = options
        explain = options.explain
        self.library = compile_library(explain.reasons.library) if explain else ()
        # Explanation work done by this scorer: flagged documents and occluded variants scored.
        self.explained_rows = 0
        self.occluded_spans = 0

    def tokenize(self, texts: list[str], *, offsets: bool = False) -> Any:
        """Token ids of whole documents (no cut), with character offsets when asked."""
        return self.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=False,
            verbose=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=offsets,
        )

    def encode(self, texts: list[str], frame: pd.DataFrame | None) -> np.ndarray | None:
        """A fused model's encoded feature rows for ``texts`` (from ``frame``); else None."""
        if self.features is None:
            return None
        if frame is None:
            raise FeatureError(f"the model needs the feature columns {list(self.features.columns)}")
        if len(frame) != len(texts):
            raise FeatureError(f"{len(frame)} feature rows for {len(texts)} documents")
        return encode_features(frame, self.features)

    def prepare(self, texts: list[str], frame: pd.DataFrame | None = None) -> Prepared:
        """Tokenise and cut to the window (CPU work that can overlap a GPU's forward passes);
        for a fused model, encode ``frame``'s feature columns (one row per text)."""
        matrix = self.encode(texts, frame)
        prepared = self.windows_of(self.tokenize(texts)["input_ids"], matrix)
        if self.options.explain is None:
            return prepared
        return replace(prepared, texts=list(texts), document_features=matrix)

    def windows_of(self, encoded: list[list[int]], matrix: np.ndarray | None = None) -> Prepared:
        """The model windows of tokenised documents: the head, or every chunk (with each
        window's feature row for a fused model)."""
        n_tokens = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
        if self.chunking is not None:
            stride = self.chunking[0]
            chunks = [chunk_windows(ids, self.options.max_length, stride) for ids in encoded]
            owners = np.repeat(np.arange(len(chunks)), [len(c) for c in chunks])
            windowed = None if matrix is None else matrix[owners]
            return Prepared([w for c in chunks for w in c], n_tokens, owners, windowed)
        sep_id = self.tokenizer.sep_token_id
        windows = [cut_to_window(ids, self.options.max_length, sep_id) for ids in encoded]
        return Prepared(windows, n_tokens, features=matrix)

    def probabilities(
        self, windows: list[list[int]], features: np.ndarray | None = None
    ) -> np.ndarray:
        """Class probabilities (rows: windows, columns: labels) over length-sorted batches;
        ``features``: a fused model's encoded feature rows, one per window."""
        import torch

        lengths = np.fromiter((len(ids) for ids in windows), dtype=np.int64, count=len(windows))
        probs = np.empty((len(windows), self.model.config.num_labels), dtype=np.float64)
        gpu = self.device.startswith("cuda")
        autocast = self.precision in ("bf16", "fp16")
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        with (
            torch.inference_mode(),
            torch.autocast("cuda" if gpu else "cpu", dtype, enabled=autocast),
        ):
            for rows in plan_batches(lengths, self.options.token_budget):
                batch = pad_batch([windows[i] for i in rows], self.tokenizer.pad_token_id, pin=gpu)
                if features is not None:
                    batch["features"] = torch.from_numpy(features[rows])
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                logits = self.model(**batch).logits.float()
                probs[rows] = torch.softmax(logits, dim=-1).cpu().numpy()
        return probs

    def document_pds(self, prepared: Prepared) -> np.ndarray:
        """One PD per document: window probabilities, chunk aggregation, calibration."""
        pds = self.probabilities(prepared.windows, prepared.features)[:, self.positive_label]
        if prepared.owners is not None and self.chunking is not None:
            pds = aggregate(pds, prepared.owners, len(prepared.n_tokens), self.chunking[1])
        if self.calibration is not None:
            pds = apply_calibration(pds, self.calibration)
        # A non-finite probability is no score: it reaches Spark as null (NOT_SCORED).
        pds[~np.isfinite(pds)] = np.nan
        return pds

    def pds_of_ids(self, encoded: list[list[int]], matrix: np.ndarray | None = None) -> np.ndarray:
        """PDs of tokenised documents (the occluded variants of explanations)."""
        return self.document_pds(self.windows_of(encoded, matrix))

    def reasons(self, prepared: Prepared, pds: np.ndarray) -> list[Any]:
        """Reason codes of the documents whose decision is flagged; None for the others."""
        explain = self.options.explain
        texts = prepared.texts
        out: list[Any] = [None] * len(pds)
        if explain is None or texts is None:
            return out
        decisions = np.asarray(decisions_of(pds, explain.grading))
        flagged = np.flatnonzero(np.isin(decisions, explain.reasons.decisions) & np.isfinite(pds))
        if len(flagged) == 0:
            return out
        chosen = [texts[i] for i in flagged]
        encoded = self.tokenize(chosen, offsets=True)
        read = None if self.chunking is not None else self.options.max_length
        occlusions = [
            mapped_spans(text, offsets, self.library, read_tokens=read)
            for text, offsets in zip(chosen, encoded["offset_mapping"], strict=True)
        ]
        # A fused model scores each occluded variant with its document's feature row.
        matrix = prepared.document_features
        variant_rows = None
        if matrix is not None:
            variant_rows = np.repeat(matrix[flagged], [len(o.tokens) for o in occlusions], axis=0)
        weights = occlusion_weights(
            encoded["input_ids"],
            pds[flagged],
            occlusions,
            lambda ids: self.pds_of_ids(ids, variant_rows),
        )
        for row, occlusion, weight in zip(flagged.tolist(), occlusions, weights, strict=True):
            out[row] = top_reasons(
                weight, occlusion.codes, self.library, explain.reasons.max_reasons
            )
        self.explained_rows += len(flagged)
        self.occluded_spans += sum(len(o.tokens) for o in occlusions)
        return out

    def run(self, prepared: Prepared) -> pd.DataFrame:
        """Forward passes over length-sorted token-budget batches, PDs in the input order;
        then the flagged documents' reason codes (ExplainOptions), else reasons null."""
        n_tokens = prepared.n_tokens
        pds = self.document_pds(prepared)
        truncated = n_tokens > self.options.max_length
        n_chunks: np.ndarray = np.ones(len(n_tokens), dtype=np.int32)
        if prepared.owners is not None and self.chunking is not None:
            n_chunks = np.bincount(prepared.owners, minlength=len(n_tokens)).astype(np.int32)
            truncated = np.zeros(len(n_tokens), dtype=bool)  # every token was read
        return pd.DataFrame(
            {
                "pd": pds,
                "n_tokens": n_tokens.astype(np.int32),
                "truncated": truncated,
                "n_chunks": n_chunks,
                "reasons": self.reasons(prepared, pds),
            }
        )

    def score(self, texts: list[str], frame: pd.DataFrame | None = None) -> pd.DataFrame:
        return self.run(self.prepare(texts, frame))

    def score_all(self, batches: Iterator[Batch]) -> Iterator[pd.DataFrame]:
        """Score a stream of batches. On a GPU the next batch is tokenised on a thread while
        the current one runs; on the CPU that thread would take a core from torch, so not."""
        if not self.device.startswith("cuda"):
            for texts, frame in batches:
                yield self.score(texts, frame)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for texts, frame in batches:
                following = pool.submit(self.prepare, texts, frame)
                if pending is not None:
                    yield self.run(pending.result())
                pending = following
            if pending is not None:
                yield self.run(pending.result())


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


def task_device(local_gpu: bool = False) -> str:
    """The GPU Spark assigned to the running task when there is one, else the CPU.

    ``local_gpu``: Spark in local mode assigns no GPUs; use the first one when there is one.
    """
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses and torch.cuda.is_available():
        index = cuda_index(
            gpus.addresses[0], os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()
        )
        return f"cuda:{index}"
    if local_gpu and torch.cuda.is_available():
        return "cuda:0"
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


def _score_stream(
    batches: Iterator[Batch],
    artifact: Broadcast[dict[str, bytes]],
    key: str,
    options: ScoringOptions,
) -> Iterator[pd.DataFrame]:
    """The body shared by the UDF and the mapInPandas mapper: threads, model, failpoint."""
    set_task_threads()
    scorer = get_scorer(key, artifact, options)
    point = options.failpoint if options.failpoint and options.failpoint.site == "udf" else None
    done = 0

    def counted() -> Iterator[Batch]:
        nonlocal done
        for batch in batches:
            if point is not None and done >= point.arg:
                act(point)
            yield batch
            done += len(batch[0])

    yield from scorer.score_all(counted())
    if point is not None and done >= point.arg:
        act(point)


def _texts(documents: pd.Series) -> list[str]:
    return documents.fillna("").astype(str).tolist()


def make_pd_udf(
    artifact: Broadcast[dict[str, bytes]],
    *,
    key: str,
    options: ScoringOptions,
    with_features: bool = False,
) -> Any:
    """A pandas UDF mapping a document column to struct<pd, n_tokens, truncated, n_chunks,
    reasons> (SCORE_TYPE; reasons only for flagged decisions when ``options.explain`` is set).

    ``artifact`` is a Broadcast of the model directory's files (see load_artifact_bytes) and
    ``key`` identifies the model (artifact_key: the manifest's sha256) in the worker cache.
    ``with_features``: for a fused model, the UDF takes a second argument, a struct of the
    manifest's feature columns (by name).
    """
    if with_features:

        @pandas_udf(SCORE_TYPE)  # type: ignore[call-overload]
        def score_with_features(
            batches: Iterator[tuple[pd.Series, pd.DataFrame]],
        ) -> Iterator[pd.DataFrame]:
            pairs = ((_texts(docs), frame) for docs, frame in batches)
            yield from _score_stream(pairs, artifact, key, options)

        return score_with_features

    @pandas_udf(SCORE_TYPE)  # type: ignore[call-overload]
    def score_documents(documents: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        texts: Iterator[Batch] = ((_texts(batch), None) for batch in documents)
        yield from _score_stream(texts, artifact, key, options)

    return score_documents


def make_pd_mapper(
    artifact: Broadcast[dict[str, bytes]],
    *,
    key: str,
    options: ScoringOptions,
    keep: list[str],
    features: tuple[str, ...] = (),
) -> Any:
    """The same scoring as make_pd_udf for ``mapInPandas`` (which takes a ResourceProfile):
    frames with ``document``, the ``keep`` and the ``features`` columns in (a fused model reads
    the latter), ``keep`` + SCORE_TYPE's fields out."""

    def score_frames(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        kept: list[pd.DataFrame] = []

        def texts() -> Iterator[Batch]:
            for frame in frames:
                kept.append(frame[keep].reset_index(drop=True))
                columns = frame[list(features)].reset_index(drop=True) if features else None
                yield _texts(frame["document"]), columns

        for scores in _score_stream(texts(), artifact, key, options):
            yield pd.concat([kept.pop(0), scores], axis=1)

    return score_frames
