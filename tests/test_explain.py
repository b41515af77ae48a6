"""Reason codes: span splitting, mapping and merging (pure), and occlusion on a tiny BERT that
was fine-tuned in the test to react to one planted risk sentence per document."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import PD_ATOL

from riskudf.config import ConfigError, GradingConf, load_config, parse_config
from riskudf.scoring.reasons import (
    Occlusion,
    code_of,
    compile_library,
    fidelity_drops,
    mapped_spans,
    occlusion_weights,
    split_spans,
    token_range,
    top_reasons,
    without,
)
from riskudf.scoring.scorer import ExplainOptions, Scorer, ScoringOptions

ROOT = Path(__file__).resolve().parents[1]
CONF = load_config(ROOT / "conf/local.yaml")
# The default decisions (the demo conf explains declines only).
REASONS = CONF.reasons.model_copy(update={"decisions": ("review", "decline")})
LIBRARY = compile_library(CONF.reasons.library)
CODES = [reason.code for reason in LIBRARY]


def test_split_spans_lines_sentences_and_headings() -> None:
    text = (
        "[CREDIT REPORT 2026-01-02]\nPAYMENT HISTORY\n  2 payments 30 to 59 days past due. "
        "Ratio 0.80 held.\n\nCOVENANTS. We did not meet the covenant. Waiver granted."
    )
    pieces = [text[a:b] for a, b in split_spans(text)]
    assert pieces == [
        "[CREDIT REPORT 2026-01-02]",
        "PAYMENT HISTORY",
        "2 payments 30 to 59 days past due.",
        "Ratio 0.80 held.",
        "COVENANTS. We did not meet the covenant.",
        "Waiver granted.",
    ]
    assert split_spans("") == []


def test_code_of_takes_the_first_matching_code_in_library_order() -> None:
    going = "GOING CONCERN. These conditions raise substantial doubt about the Company."
    assert CODES[code_of(going, LIBRARY)] == "GOING_CONCERN"  # type: ignore[index]
    lien = "Tax lien filed by the revenue authority; two trade creditors filed claims."
    assert CODES[code_of(lien, LIBRARY)] == "PUBLIC_RECORD"  # type: ignore[index]
    assert CODES[code_of("Revolving Utilisation is 91%.", LIBRARY)] == "HIGH_UTILISATION"  # type: ignore[index]
    assert code_of("All accounts have been paid as agreed.", LIBRARY) is None
    assert code_of("No liens, judgments or insolvency filings.", LIBRARY) is None


def test_token_range_and_without() -> None:
    offsets = [(0, 0), (0, 3), (4, 9), (9, 10), (11, 15), (0, 0)]  # [CLS] ... [SEP]
    assert token_range(offsets, (4, 10)) == (2, 4)
    assert token_range(offsets, (11, 15)) == (4, 5)
    assert token_range(offsets, (16, 20)) == (0, 0)
    assert without([101, 5, 6, 7, 8, 102], (2, 4)) == [101, 5, 8, 102]


def test_mapped_spans_skip_unmapped_and_unread_spans() -> None:
    text = "Employed as clerk.\n3 hard inquiries.\nStatus 30 days past due."
    # One token per word-ish piece; offsets computed by splitting on spaces.
    offsets: list[tuple[int, int]] = [(0, 0)]
    position = 0
    for word in text.replace("\n", " ").split(" "):
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    offsets.append((0, 0))
    everything = mapped_spans(text, offsets, LIBRARY)
    assert everything == Occlusion(
        ((4, 7), (7, 12)), (CODES.index("CREDIT_INQUIRIES"), CODES.index("DELINQUENCY"))
    )
    # The model reads 8 tokens: the delinquency line starts at token 7 = the window's [SEP].
    assert mapped_spans(text, offsets, LIBRARY, read_tokens=8).tokens == ((4, 7),)


def test_top_reasons_merge_by_max_keep_positive_order_and_cap() -> None:
    library = LIBRARY[:5]
    weights = np.array([0.02, 0.05, -0.10, 0.01, 0.03, np.nan, 0.0, 0.04])
    codes = [2, 2, 0, 1, 3, 4, 4, 0]
    got = top_reasons(weights, codes, library, max_reasons=3)
    assert got == [
        {"code": library[2].code, "description": library[2].description, "weight": 0.05},
        {"code": library[0].code, "description": library[0].description, "weight": 0.04},
        {"code": library[3].code, "description": library[3].description, "weight": 0.03},
    ]
    assert top_reasons(np.array([-0.1]), [0], library, max_reasons=4) == []


def test_occlusion_weights_score_all_variants_in_one_call() -> None:
    calls: list[int] = []

    def fake_pds(encoded: list[list[int]]) -> np.ndarray:  # PD: share of risky token 9
        calls.append(len(encoded))
        return np.array([ids.count(9) / 10 for ids in encoded])

    ids = [[101, 9, 9, 5, 102], [101, 5, 9, 102]]
    pds = fake_pds(ids)
    occlusions = [Occlusion(((1, 3), (3, 4)), (0, 1)), Occlusion(((2, 3),), (1,))]
    weights = occlusion_weights(ids, pds, occlusions, fake_pds)
    np.testing.assert_allclose(weights[0], [0.2, 0.0])
    np.testing.assert_allclose(weights[1], [0.1])
    assert calls == [2, 3]


def test_reasons_conf_validation() -> None:
    raw = {
        "scoring": {"model_dir": "m"},
        "grading": CONF.grading.model_dump(),
    }
    assert parse_config(raw).reasons.enabled is False
    with pytest.raises(ConfigError, match="needs a library"):
        parse_config({**raw, "reasons": {"enabled": True}})
    item = {"code": "A", "description": "a", "patterns": ["x"]}
    with pytest.raises(ConfigError, match="unique"):
        parse_config({**raw, "reasons": {"library": [item, item]}})
    with pytest.raises(ConfigError, match="bad pattern"):
        parse_config({**raw, "reasons": {"library": [{**item, "patterns": ["(x"]}]}})
    with pytest.raises(ConfigError, match="max_reasons"):
        parse_config({**raw, "reasons": {"library": [item], "max_reasons": 5}})


# --- a tiny BERT that reacts to a planted risk sentence ------------------------------------

PLANTED = {
    "GOING_CONCERN": "These conditions raise substantial doubt about the ability to continue "
    "as a going concern.",
    "PUBLIC_RECORD": "Tax lien filed by the revenue authority.",
    "COVENANT_BREACH": "We did not meet the leverage covenant and the lenders granted a waiver.",
}


def planted_documents(n: int, seed: int) -> tuple[list[str], list[int], list[str | None]]:
    """Documents whose label is whether a planted risk sentence is present. Every document also
    has spans of three other codes (delinquency, utilisation, inquiries) with random values that
    do not affect the label, and unmapped filler (one line in half the documents, so that the
    length says little); the lines are in random order. Nothing marks a clean document, so
    the model can only learn the planted sentences themselves."""
    rng = np.random.default_rng(seed)
    texts, labels, planted = [], [], []
    for _ in range(n):
        lines = [
            f"{int(rng.integers(1, 4))} payments 30 to 59 days past due in the last 24 months.",
            f"Revolving utilisation is {int(rng.integers(20, 99))}% of total limits.",
            f"{int(rng.integers(1, 6))} hard inquiries in the last 6 months.",
            f"Employed as clerk for {int(rng.integers(1, 20))} years.",
        ]
        if rng.random() < 0.5:
            lines.append(f"Resides at {int(rng.integers(1, 250))} Mill Lane since 2019.")
        code = None
        if rng.random() < 0.5:
            code = str(rng.choice(list(PLANTED)))
            lines.append(PLANTED[code])
        order = rng.permutation(len(lines))
        texts.append("\n".join(lines[i] for i in order))
        labels.append(int(code is not None))
        planted.append(code)
    return texts, labels, planted


@pytest.fixture(scope="module")
def planted_model(tiny_backbone: Path) -> tuple[object, object]:
    """The tiny BERT fine-tuned for a few seconds on planted_documents (label: planted)."""
    import torch

    from riskudf.model.load import load_sequence_classifier, load_tokenizer
    from riskudf.scoring.scorer import pad_batch

    torch.manual_seed(3)
    tokenizer = load_tokenizer(tiny_backbone)
    model = load_sequence_classifier(tiny_backbone, num_labels=2)
    texts, labels, _ = planted_documents(256, seed=1)
    ids = tokenizer(texts, truncation=True, max_length=128)["input_ids"]
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    target = torch.tensor(labels)
    model.train()
    for _ in range(8):
        for start in range(0, len(ids), 32):
            batch = pad_batch(ids[start : start + 32], tokenizer.pad_token_id)
            loss = model(**batch, labels=target[start : start + 32]).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    return tokenizer, model


def explaining_scorer(planted_model: tuple[object, object]) -> Scorer:
    tokenizer, model = planted_model
    grading = GradingConf.model_validate(
        {**CONF.grading.model_dump(), "review_from_pd": 0.5, "decline_from_pd": 0.8}
    )
    options = ScoringOptions(
        max_length=128,
        token_budget=4096,
        precision="fp32",
        explain=ExplainOptions(REASONS, grading),
    )
    return Scorer(tokenizer, model, positive_label=1, device="cpu", options=options)


def test_planted_sentence_is_the_top_reason(planted_model: tuple[object, object]) -> None:
    scorer = explaining_scorer(planted_model)
    texts, _, planted = planted_documents(200, seed=2)
    scored = scorer.score(texts)
    risky = [i for i, code in enumerate(planted) if code is not None]
    flagged = [i for i in risky if scored["reasons"][i] is not None]
    # The model learned the task: nearly every planted document is flagged, few clean ones.
    assert len(flagged) >= 0.9 * len(risky)
    clean = [i for i, code in enumerate(planted) if code is None]
    assert sum(scored["reasons"][i] is not None for i in clean) <= 0.1 * len(clean)
    hits = [scored["reasons"][i][0]["code"] == planted[i] for i in flagged if scored["reasons"][i]]
    assert len(hits) == len(flagged)  # every flagged planted document has a reason
    assert np.mean(hits) >= 0.9
    for i in flagged:
        reasons = scored["reasons"][i]
        assert len(reasons) <= 4
        weights = [r["weight"] for r in reasons]
        assert weights == sorted(weights, reverse=True)
        assert all(r["weight"] > 0 for r in reasons)
        assert {r["description"] for r in reasons} <= {c.description for c in LIBRARY}
    assert scorer.explained_rows == int(sum(r is not None for r in scored["reasons"]))

    # Control: the same spans with random weights instead of the model's drops miss the planted
    # code most of the time (each document has four mapped spans), so the test can fail.
    rng = np.random.default_rng(0)
    encoded = scorer.tokenizer(
        [texts[i] for i in flagged], return_offsets_mapping=True, verbose=False
    )
    random_hits = []
    for i, offsets in zip(flagged, encoded["offset_mapping"], strict=True):
        occlusion = mapped_spans(texts[i], offsets, scorer.library, read_tokens=128)
        weights = rng.normal(size=len(occlusion.codes))
        reasons = top_reasons(weights, occlusion.codes, scorer.library, 4)
        random_hits.append(bool(reasons) and reasons[0]["code"] == planted[i])
    assert np.mean(random_hits) < 0.5


def test_removing_the_top_span_moves_the_pd_more_than_a_random_span(
    planted_model: tuple[object, object],
) -> None:
    scorer = explaining_scorer(planted_model)
    texts, _, _ = planted_documents(120, seed=4)
    encoded = scorer.tokenizer(texts, return_offsets_mapping=True, verbose=False)
    pds = scorer.score(texts)["pd"].to_numpy()
    occlusions = [
        mapped_spans(t, o, scorer.library, read_tokens=128)
        for t, o in zip(texts, encoded["offset_mapping"], strict=True)
    ]
    weights = occlusion_weights(encoded["input_ids"], pds, occlusions, scorer.pds_of_ids)
    top, random = fidelity_drops(
        encoded["input_ids"],
        pds,
        occlusions,
        weights,
        scorer.pds_of_ids,
        np.random.default_rng(0),
        read_tokens=128,
    )
    assert len(top) >= 40
    assert top.mean() > 2 * np.abs(random).mean()


def test_reasons_are_null_without_explain_options(planted_model: tuple[object, object]) -> None:
    tokenizer, model = planted_model
    scorer = Scorer(
        tokenizer,
        model,
        positive_label=1,
        device="cpu",
        options=ScoringOptions(max_length=128, token_budget=4096, precision="fp32"),
    )
    texts, _, _ = planted_documents(6, seed=5)
    assert scorer.score(texts)["reasons"].tolist() == [None] * 6
    explained = explaining_scorer(planted_model).score(texts)
    np.testing.assert_allclose(explained["pd"], scorer.score(texts)["pd"], rtol=0, atol=PD_ATOL)
