"""Token windows of a document and the aggregation of window scores (one rule for training and
scoring, so that a model is scored the way it was trained), and tabular rows as text.

Segment windows (pooling ``lines`` or ``paragraphs``): each line, or each paragraph (text
between blank lines), of a document is read on its own, so a number in a short section is not
averaged away over the whole document. The document's token ids carry a [SEP] before each
segment but the first (``mark_segments``); ``segment_windows`` cuts them there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Where the next segment starts: after a blank line (paragraphs), or after any line boundary
# str.splitlines knows (lines: \r\n, \r, form feed, ...; blank lines do not change them).
SEGMENT_BREAKS = {
    "paragraphs": re.compile(r"\n[ \t\r\f\v]*\n\s*"),
    "lines": re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]\s*"),
}
PARAGRAPH_BREAK = SEGMENT_BREAKS["paragraphs"]

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


def segment_starts(text: str, pooling: str) -> list[int]:
    """Character offsets where the second and later segments (``pooling``: lines or
    paragraphs) of ``text`` begin."""
    return [m.end() for m in SEGMENT_BREAKS[pooling].finditer(text) if m.end() < len(text)]


def mark_segments(
    ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    starts: Sequence[int],
    sep_id: int,
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids (``[CLS] body [SEP]``, with their character offsets) with ``sep_id`` inserted
    before the first body token of each segment start; the inserted tokens get offset (0, 0),
    as special tokens do."""
    out_ids: list[int] = []
    out_offsets: list[tuple[int, int]] = []
    pending = 0  # the next start not yet marked
    last = len(ids) - 1
    for position, (token, offset) in enumerate(zip(ids, offsets, strict=True)):
        if 0 < position < last and offset[1] > offset[0]:
            marked = False
            while pending < len(starts) and offset[0] >= starts[pending]:
                pending += 1
                marked = True
            if marked and len(out_ids) > 1 and out_ids[-1] != sep_id:
                out_ids.append(sep_id)
                out_offsets.append((0, 0))
        out_ids.append(int(token))
        out_offsets.append((int(offset[0]), int(offset[1])))
    return out_ids, out_offsets


def segment_windows(ids: Sequence[int], max_length: int, sep_id: int) -> list[list[int]]:
    """The windows of marked token ids: ``[CLS] segment [SEP]`` per segment (a segment longer
    than the window is cut into consecutive windows, so every token is read); empty segments
    are dropped, and a document without body tokens is one window, itself."""
    first, body = ids[0], list(ids[1:-1])
    size = max_length - 2
    windows: list[list[int]] = []
    segment: list[int] = []
    for token in [*body, sep_id]:
        if token != sep_id:
            segment.append(int(token))
            continue
        for start in range(0, len(segment), size):
            windows.append([int(first), *segment[start : start + size], sep_id])
        segment = []
    return windows or [[int(first), sep_id]]


def mean_rows(values: np.ndarray, owners: np.ndarray, n_docs: int) -> np.ndarray:
    """Per document, the mean of its windows' rows (``values``: one row per window)."""
    sums = np.zeros((n_docs, values.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, values)
    counts = np.bincount(owners, minlength=n_docs)
    return sums / np.maximum(counts, 1)[:, None]


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
