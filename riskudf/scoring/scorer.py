"""The scorer: options, token windows in length-sorted batches, forward passes, PDs and reasons."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from riskudf.config import GradingConf, ReasonsConf
from riskudf.documents.windows import (
    SEGMENT_BREAKS,
    ChunkingError,
    aggregate,
    check_chunking,
    chunk_windows,
    mark_segments,
    mean_rows,
    segment_starts,
    segment_windows,
)
from riskudf.failpoints import Failpoint
from riskudf.model.calibration import apply_calibration
from riskudf.model.features import FeatureError, encode_features, feature_spec_of
from riskudf.scoring.device import (
    check_int8_device,
    device_precision,
    is_quantized,
    quantize_int8,
)
from riskudf.scoring.grading import decisions_of
from riskudf.scoring.reasons import compile_library, mapped_spans, occlusion_weights, top_reasons


@dataclass(frozen=True)
class ExplainOptions:
    """Reason codes in the scoring pass: which decisions get them (from the grading
    thresholds) and the code library. See riskudf/scoring/reasons.py."""

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
    windows: list[list[int]]  # token ids cut to the window, or every chunk or segment
    n_tokens: np.ndarray  # tokens before the cut, per document
    owners: np.ndarray | None = None  # chunks or segments: the document of each window
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
        # pooling lines or paragraphs (a fused model's spec): every segment is a window, and
        # a document's logits are the mean of its windows' (riskudf.documents.windows).
        self.features = feature_spec_of(features)
        self.chunking = check_chunking(chunking, options.max_length) if chunking else None
        pooling = None if self.features is None else self.features.pooling
        self.segment_pooling = pooling if pooling in SEGMENT_BREAKS else None
        if self.segment_pooling is not None and self.chunking is not None:
            raise ChunkingError(f"pooling {self.segment_pooling} reads every segment: no chunking")
        # An int8 version runs as validated, whatever the conf asks; its input scales are fixed,
        # so it is batched like fp32.
        self.static_int8 = is_quantized(model)
        if self.static_int8:
            check_int8_device(device)
            self.precision = "int8"
        else:
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
        """Token ids of whole documents (no cut), with character offsets when asked; for
        pooling lines or paragraphs, with a [SEP] before each segment but the first."""
        encoded = self.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=False,
            verbose=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=offsets or self.segment_pooling is not None,
        )
        if self.segment_pooling is None:
            return encoded
        sep_id = self.tokenizer.sep_token_id
        marked = [
            mark_segments(ids, spans, segment_starts(text, self.segment_pooling), sep_id)
            for text, ids, spans in zip(
                texts, encoded["input_ids"], encoded["offset_mapping"], strict=True
            )
        ]
        return {"input_ids": [m[0] for m in marked], "offset_mapping": [m[1] for m in marked]}

    def encode(self, texts: list[str], frame: pd.DataFrame | None) -> np.ndarray | None:
        """A fused model's encoded feature rows for ``texts`` (from ``frame``); else None."""
        if self.features is None:
            return None
        if frame is None and not self.features.columns:  # text only: nothing beside the text
            return np.zeros((len(texts), 0), dtype=np.float32)
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
        """The model windows of tokenised documents: the head, or every chunk or segment
        (with each window's feature row for a fused model)."""
        if self.segment_pooling is not None:
            sep_id = self.tokenizer.sep_token_id
            parts = [segment_windows(ids, self.options.max_length, sep_id) for ids in encoded]
            owners = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
            # Tokens of the document as tokenised (the segment marks are not counted).
            n_tokens = np.array([sum(len(w) - 2 for w in p) + 2 for p in parts], dtype=np.int64)
            windowed = None if matrix is None else matrix[owners]
            return Prepared([w for p in parts for w in p], n_tokens, owners, windowed)
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
        return _softmax(self.logits(windows, features))

    def logits(self, windows: list[list[int]], features: np.ndarray | None = None) -> np.ndarray:
        """The model's logits (rows: windows, columns: labels), as ``probabilities``."""
        import torch

        lengths = np.fromiter((len(ids) for ids in windows), dtype=np.int64, count=len(windows))
        out = np.empty((len(windows), self.model.config.num_labels), dtype=np.float64)
        gpu = self.device.startswith("cuda")
        autocast = self.precision in ("bf16", "fp16")
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        # Dynamic int8 (precision int8 asked of an fp32 model) scales activations by their
        # batch's range: one window per batch keeps a document's PD independent of the others.
        dynamic = self.precision == "int8" and not self.static_int8
        budget = 0 if dynamic else self.options.token_budget
        with (
            torch.inference_mode(),
            torch.autocast("cuda" if gpu else "cpu", dtype, enabled=autocast),
        ):
            for rows in plan_batches(lengths, budget):
                batch = pad_batch([windows[i] for i in rows], self.tokenizer.pad_token_id, pin=gpu)
                if features is not None:
                    batch["features"] = torch.from_numpy(features[rows])
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                out[rows] = self.model(**batch).logits.float().cpu().numpy()
        return out

    def document_probabilities(self, prepared: Prepared) -> np.ndarray:
        """Class probabilities per document (before chunk aggregation when chunked): for
        pooling lines or paragraphs, the softmax of the mean of each document's window logits."""
        if self.segment_pooling is None or prepared.owners is None:
            return self.probabilities(prepared.windows, prepared.features)
        logits = self.logits(prepared.windows, prepared.features)
        return _softmax(mean_rows(logits, prepared.owners, len(prepared.n_tokens)))

    def document_pds(self, prepared: Prepared) -> np.ndarray:
        """One PD per document: window probabilities, chunk aggregation, calibration."""
        pds = self.document_probabilities(prepared)[:, self.positive_label]
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
        every_token = self.chunking is not None or self.segment_pooling is not None
        read = None if every_token else self.options.max_length
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
        if prepared.owners is not None:
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


def _softmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(softmax(np.asarray(logits, dtype=np.float64), axis=1))
