"""Token windows of a document and the aggregation of window scores (one rule for training and
scoring, so that a model is scored the way it was trained), and tabular rows as text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

AGGREGATIONS = ("max", "mean")


class ChunkingError(ValueError):
    """A manifest's chunking names an unknown aggregation or an impossible stride."""


def check_chunking(chunking: Mapping[str, Any], max_length: int) -> tuple[int, str]:
    """Stride and aggregation of a manifest's ``chunking``, checked against the window."""
    stride = int(chunking["stride"])
    aggregation = str(chunking["aggregation"])
    if aggregation not in AGGREGATIONS:
        raise ChunkingError(f"chunk aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if not 0 < stride <= max_length - 2:
        raise ChunkingError(f"chunk stride must lie in [1, {max_length - 2}], got {stride}")
    return stride, aggregation


def chunk_windows(ids: list[int], max_length: int, stride: int) -> list[list[int]]:
    """Overlapping windows of a tokenised document (``[CLS] body [SEP]``).

    Each window holds up to ``max_length - 2`` body tokens between the document's first and
    last special tokens; windows start every ``stride`` body tokens until one reaches the end.
    A document that fits is one window, itself.
    """
    if len(ids) <= max_length:
        return [ids]
    first, body, last = ids[0], ids[1:-1], ids[-1]
    size = max_length - 2
    windows = []
    for start in range(0, len(body), stride):
        windows.append([first, *body[start : start + size], last])
        if start + size >= len(body):
            break
    return windows


def aggregate(scores: np.ndarray, owners: np.ndarray, n_docs: int, how: str) -> np.ndarray:
    """Per document, the max or mean of its windows' scores (``owners``: document per window)."""
    if how == "max":
        out = np.full(n_docs, -np.inf)
        np.maximum.at(out, owners, scores)
        return out
    if how == "mean":
        sums = np.bincount(owners, weights=scores, minlength=n_docs)
        return np.asarray(sums / np.bincount(owners, minlength=n_docs))
    raise ChunkingError(f"chunk aggregation must be one of {AGGREGATIONS}, got {how!r}")


def serialise_row(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """A tabular row as text, ``field: value; ...`` in the order of ``columns``, for tables
    without free text. Null fields are left out; a row of nulls is the empty document."""
    parts = []
    for column in columns:
        value = row.get(column)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        parts.append(f"{column}: {value}")
    return "; ".join(parts)
