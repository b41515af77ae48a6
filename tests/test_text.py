"""Overlapping windows of long documents and the aggregation of their scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import PD_ATOL

from riskudf.documents.windows import ChunkingError, aggregate, check_chunking, chunk_windows
from riskudf.model.load import load_artifact
from riskudf.scoring.scorer import Prepared, Scorer, ScoringOptions

DOC = [101, *range(1, 11), 102]  # [CLS] ten body tokens [SEP]


def test_windows_overlap_keep_special_tokens_and_reach_the_end() -> None:
    assert chunk_windows(DOC, 6, 3) == [
        [101, 1, 2, 3, 4, 102],
        [101, 4, 5, 6, 7, 102],
        [101, 7, 8, 9, 10, 102],
    ]
    assert chunk_windows(DOC, 6, 4) == [[101, 1, 2, 3, 4, 102], [101, 5, 6, 7, 8, 102],
                                        [101, 9, 10, 102]]  # fmt: skip
    assert chunk_windows(DOC, 12, 5) == [DOC]  # fits: one window, itself


@pytest.mark.parametrize("length", [1, 7, 30, 101])
def test_every_body_token_is_in_a_window(length: int) -> None:
    doc = [101, *range(1, length + 1), 102]
    windows = chunk_windows(doc, 10, 5)
    assert all(len(w) <= 10 and w[0] == 101 and w[-1] == 102 for w in windows)
    assert sorted({t for w in windows for t in w[1:-1]}) == list(range(1, length + 1))


def test_aggregate_max_and_mean() -> None:
    scores = np.array([0.1, 0.7, 0.3, 0.2, 0.4])
    owners = np.array([0, 0, 0, 1, 2])
    np.testing.assert_allclose(aggregate(scores, owners, 3, "max"), [0.7, 0.2, 0.4])
    np.testing.assert_allclose(aggregate(scores, owners, 3, "mean"), [11 / 30, 0.2, 0.4])
    with pytest.raises(ChunkingError, match="median"):
        aggregate(scores, owners, 3, "median")


def test_chunking_checks() -> None:
    assert check_chunking({"stride": 62, "aggregation": "mean"}, 64) == (62, "mean")
    with pytest.raises(ChunkingError, match="stride"):
        check_chunking({"stride": 63, "aggregation": "max"}, 64)
    with pytest.raises(ChunkingError, match="aggregation"):
        check_chunking({"stride": 8, "aggregation": "attention"}, 64)


def test_scorer_scores_every_window_and_keeps_the_max(tiny_model: Path) -> None:
    _, tokenizer, model = load_artifact(tiny_model)
    options = ScoringOptions(max_length=16, token_budget=256)
    plain = Scorer(tokenizer, model, positive_label=1, device="cpu", options=options)
    chunked = Scorer(
        tokenizer,
        model,
        positive_label=1,
        device="cpu",
        options=options,
        chunking={"stride": 7, "aggregation": "max"},
    )
    long_text = " ".join(f"missed payment {i} arrears rising" for i in range(6))
    texts = [long_text, "paid on time"]
    scored = chunked.score(texts)
    ids = tokenizer(long_text)["input_ids"]
    windows = chunk_windows(ids, 16, 7)
    each = [plain.run(Prepared([w], np.array([len(w)])))["pd"][0] for w in windows]
    assert len(windows) > 2
    assert scored["n_chunks"].tolist() == [len(windows), 1]
    assert scored["truncated"].tolist() == [False, False]
    assert scored["n_tokens"].tolist() == [len(ids), plain.score(["paid on time"])["n_tokens"][0]]
    assert scored["pd"][0] == pytest.approx(max(each), abs=PD_ATOL)
    assert scored["pd"][1] == pytest.approx(plain.score(["paid on time"])["pd"][0], abs=PD_ATOL)
    assert plain.score([long_text])["truncated"].tolist() == [True]


def test_serialise_row_writes_fields_in_order_and_leaves_out_nulls() -> None:
    from riskudf.documents.windows import serialise_row

    row = {"segment": "retail", "dpd_90": "2", "income": None, "utilisation": "0.83", "x": "y"}
    assert serialise_row(row, ["segment", "income", "utilisation", "dpd_90"]) == (
        "segment: retail; utilisation: 0.83; dpd_90: 2"
    )
    assert serialise_row({"a": float("nan"), "b": None}, ["a", "b"]) == ""
