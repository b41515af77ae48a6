"""Attributions -> reason codes: occlusion of sentences and lines, mapped to a code library.

A flagged document is split into spans (each line, and each sentence within a line, with a
heading such as ``COVENANTS.`` kept on its sentence). Only spans that match a code of the
library are occluded: the span's tokens are removed from the token ids and the document is
scored again; the span's weight is the PD without it subtracted from the PD with it (positive:
the span raises the risk). A code's weight is the largest weight among its spans (occlusion
effects do not add up, and a sum would favour codes with many matching lines); codes with a
positive weight are kept, largest first, at most ``max_reasons``. Spans that match no code get
no reason (there is no OTHER code: a reason must be one a lender can state).

Everything here is pure (numpy and ``re``); the model calls are the scorer's, passed in as a
function. No text leaves this module: the output is codes, descriptions and weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from riskudf.config import ReasonCodeConf

# A sentence ends at . ! ? followed by whitespace and an upper-case letter or digit.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\[])")
# A heading fragment: upper-case words and a full stop, e.g. "GOING CONCERN." or "FORM 10-K."
_HEADING = re.compile(r"^[A-Z0-9][A-Z0-9 &/'\-]*\.$")


@dataclass(frozen=True)
class ReasonCode:
    code: str
    description: str
    patterns: tuple[re.Pattern[str], ...]


def compile_library(library: Sequence[ReasonCodeConf]) -> tuple[ReasonCode, ...]:
    """The conf's library with its patterns compiled (case-insensitive)."""
    return tuple(
        ReasonCode(
            item.code,
            item.description,
            tuple(re.compile(p, re.IGNORECASE) for p in item.patterns),
        )
        for item in library
    )


def split_spans(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the sentences of each non-blank line, in text order.

    Leading and trailing whitespace is outside the spans; a heading fragment is joined to the
    sentence that follows it on the same line.
    """
    spans: list[tuple[int, int]] = []
    position = 0
    for line in text.split("\n"):
        pieces: list[tuple[int, int]] = []
        start = 0
        for match in _SENTENCE_END.finditer(line):
            pieces.append((start, match.start()))
            start = match.end()
        pieces.append((start, len(line)))
        merged: list[tuple[int, int]] = []
        for begin, end in pieces:
            if merged and _HEADING.match(line[merged[-1][0] : merged[-1][1]]):
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((begin, end))
        for begin, end in merged:
            stripped = line[begin:end]
            lead = len(stripped) - len(stripped.lstrip())
            trail = len(stripped) - len(stripped.rstrip())
            if end - trail > begin + lead:
                spans.append((position + begin + lead, position + end - trail))
        position += len(line) + 1
    return spans


def code_of(span_text: str, library: Sequence[ReasonCode]) -> int | None:
    """Index of the first code with a pattern found in the span, or None."""
    for index, reason in enumerate(library):
        if any(pattern.search(span_text) for pattern in reason.patterns):
            return index
    return None


def token_range(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> tuple[int, int]:
    """The tokens [first, last) whose characters start inside ``span``; special tokens (offset
    (0, 0)) never belong to a span. An empty range where the span has no tokens."""
    start, end = span
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and start <= a < end]
    if not inside:
        return (0, 0)
    return (inside[0], inside[-1] + 1)


def without(ids: Sequence[int], tokens: tuple[int, int]) -> list[int]:
    """Token ids with the range [first, last) removed."""
    return [*ids[: tokens[0]], *ids[tokens[1] :]]


@dataclass(frozen=True)
class Occlusion:
    """The mapped spans of one document: token ranges and their library code index."""

    tokens: tuple[tuple[int, int], ...]
    codes: tuple[int, ...]


def mapped_spans(
    text: str,
    offsets: Sequence[tuple[int, int]],
    library: Sequence[ReasonCode],
    *,
    read_tokens: int | None = None,
) -> Occlusion:
    """The spans of ``text`` that match a code and have tokens the model reads.

    ``read_tokens``: the model reads only the first so many tokens (the window, when a long
    document is not chunked): a span that starts after them cannot move the PD, so it is not
    occluded.
    """
    tokens: list[tuple[int, int]] = []
    codes: list[int] = []
    for span in split_spans(text):
        code = code_of(text[span[0] : span[1]], library)
        if code is None:
            continue
        first, last = token_range(offsets, span)
        if last <= first or (read_tokens is not None and first >= read_tokens - 1):
            continue
        tokens.append((first, last))
        codes.append(code)
    return Occlusion(tuple(tokens), tuple(codes))


def top_reasons(
    weights: np.ndarray,
    codes: Sequence[int],
    library: Sequence[ReasonCode],
    max_reasons: int,
) -> list[dict[str, object]]:
    """Per code the largest span weight; positive ones, largest first (ties: library order)."""
    best: dict[int, float] = {}
    for weight, code in zip(weights.tolist(), codes, strict=True):
        if np.isfinite(weight) and weight > 0 and weight > best.get(code, 0.0):
            best[code] = float(weight)
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:max_reasons]
    return [
        {"code": library[c].code, "description": library[c].description, "weight": w}
        for c, w in ranked
    ]


def occlusion_weights(
    ids: list[list[int]],
    pds: np.ndarray,
    occlusions: Sequence[Occlusion],
    pd_of_ids: Callable[[list[list[int]]], np.ndarray],
) -> list[np.ndarray]:
    """Per document, the PD drop when each of its mapped spans is removed.

    All documents' occluded variants go through ``pd_of_ids`` in one call, so that they share
    the scorer's length-sorted token-budget batches.
    """
    variants = [
        without(doc_ids, tokens)
        for doc_ids, occlusion in zip(ids, occlusions, strict=True)
        for tokens in occlusion.tokens
    ]
    occluded = pd_of_ids(variants) if variants else np.empty(0)
    weights = []
    start = 0
    for pd, occlusion in zip(pds.tolist(), occlusions, strict=True):
        end = start + len(occlusion.tokens)
        weights.append(pd - occluded[start:end])
        start = end
    return weights


def fidelity_drops(
    ids: list[list[int]],
    pds: np.ndarray,
    occlusions: Sequence[Occlusion],
    weights: Sequence[np.ndarray],
    pd_of_ids: Callable[[list[list[int]]], np.ndarray],
    rng: np.random.Generator,
    *,
    read_tokens: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The fidelity check: for each document with a positive top span, the PD drop when that
    span is removed, and when a random run of body tokens of the same length is removed.

    The random run starts anywhere in the body the model reads ([CLS] and [SEP] excluded).
    """
    top, random_variants = [], []
    for doc_ids, occlusion, weight in zip(ids, occlusions, weights, strict=True):
        if len(weight) == 0 or not np.nanmax(weight) > 0:
            continue
        first, last = occlusion.tokens[int(np.nanargmax(weight))]
        length = last - first
        body_end = len(doc_ids) - 1 if read_tokens is None else min(len(doc_ids), read_tokens) - 1
        start = int(rng.integers(1, max(2, body_end - length + 1)))
        top.append(float(np.nanmax(weight)))
        random_variants.append(without(doc_ids, (start, start + length)))
    kept = [i for i, w in enumerate(weights) if len(w) and np.nanmax(w) > 0]
    random_drop = pds[kept] - pd_of_ids(random_variants) if kept else np.empty(0)
    return np.asarray(top), np.asarray(random_drop)
