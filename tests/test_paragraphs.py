"""Pooling lines or paragraphs: each line (or paragraph) of a document is a window of its own,
and a document's logits are the mean of its windows' (riskudf.documents.windows,
riskudf.scoring.scorer)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskudf.documents.windows import mark_segments, segment_starts, segment_windows

TEXT = (
    "[CREDIT REPORT 2026-10-01]\nCONSUMER CREDIT REPORT\n\n"
    "PAYMENT HISTORY\nLate payments in 3 of the last 24 months.\n \n"
    "UTILISATION\nRevolving utilisation is 95% of total limits.\n\n\n"
    "[FILING 10-Q 2026-04-06]\nLIQUIDITY. The current ratio fell to 0.82."
)
PARAGRAPHS = [p.strip() for p in TEXT.replace("\n \n", "\n\n").split("\n\n") if p.strip()]
LINES = [line.strip() for line in TEXT.split("\n") if line.strip()]


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from riskudf.training.finetune import default_backbone_dir

    return AutoTokenizer.from_pretrained(str(default_backbone_dir()), local_files_only=True)


def marked(tokenizer, text: str, pooling: str):  # type: ignore[no-untyped-def]
    encoded = tokenizer(text, return_offsets_mapping=True)
    return mark_segments(
        encoded["input_ids"],
        encoded["offset_mapping"],
        segment_starts(text, pooling),
        tokenizer.sep_token_id,
    )


def test_each_paragraph_or_line_is_read_as_if_it_stood_alone(tokenizer) -> None:  # type: ignore[no-untyped-def]
    assert (len(PARAGRAPHS), len(LINES)) == (4, 8)
    for pooling, segments in (("paragraphs", PARAGRAPHS), ("lines", LINES)):
        ids, offsets = marked(tokenizer, TEXT, pooling)
        assert len(ids) == len(offsets)
        windows = segment_windows(ids, 64, tokenizer.sep_token_id)
        assert windows == [tokenizer(p)["input_ids"] for p in segments]
        # Windows (\r\n) line ends cut the same segments.
        crlf, _ = marked(tokenizer, TEXT.replace("\n", "\r\n"), pooling)
        assert segment_windows(crlf, 64, tokenizer.sep_token_id) == windows

    # A paragraph longer than the window is cut into consecutive windows: every token is read.
    alone = tokenizer(PARAGRAPHS[1])["input_ids"]
    cut = segment_windows(alone, 8, tokenizer.sep_token_id)
    assert [t for w in cut for t in w[1:-1]] == alone[1:-1]
    assert all(len(w) <= 8 for w in cut) and len(cut) == -(-(len(alone) - 2) // 6)

    # Blank or empty documents are one window, [CLS] [SEP].
    for text in ("", "\n\n \n\n", "\n"):
        for pooling in ("paragraphs", "lines"):
            ids, _ = marked(tokenizer, text, pooling)
            assert segment_windows(ids, 64, tokenizer.sep_token_id) == [
                [tokenizer.cls_token_id, tokenizer.sep_token_id]
            ]


def scorer_of(backbone: Path, pooling: str, **options):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoTokenizer

    from riskudf.model.features import no_columns
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder
    from riskudf.scoring.scorer import Scorer, ScoringOptions

    spec = no_columns(pooling)  # type: ignore[arg-type]
    torch.manual_seed(3)
    model = FusedClassifier(load_encoder(backbone), spec, 2).eval()
    with torch.no_grad():  # a head that moves the PD well away from 0.5
        model.head.weight.mul_(4.0)
    tok = AutoTokenizer.from_pretrained(str(backbone), local_files_only=True)
    scoring = ScoringOptions(max_length=16, token_budget=4096, **options)
    return Scorer(
        tok, model, positive_label=1, device="cpu", options=scoring, features=spec.to_dict()
    )


def test_a_paragraph_probe_scores_the_mean_of_its_paragraphs_in_any_order(
    tiny_backbone: Path,
) -> None:
    import torch

    from riskudf.training.probe import embed

    scorer = scorer_of(tiny_backbone, "paragraphs")
    model, tok = scorer.model, scorer.tokenizer
    # Reference: each paragraph tokenised alone (cut to the 16-token window in pieces), its
    # tokens mean-pooled; the document's embedding is the mean over the pieces.
    pieces = []
    for paragraph in PARAGRAPHS:
        ids = tok(paragraph)["input_ids"]
        body = ids[1:-1]
        for start in range(0, len(body), 14):
            pieces.append([ids[0], *body[start : start + 14], ids[-1]])
    with torch.no_grad():
        rows = []
        for piece in pieces:
            hidden = model.encoder(input_ids=torch.tensor([piece])).last_hidden_state
            rows.append(hidden.mean(dim=1)[0].double().numpy())
    expected_embedding = np.mean(rows, axis=0)
    embedded = embed(tok, model, [TEXT, PARAGRAPHS[0]], max_length=16)
    np.testing.assert_allclose(embedded[0], expected_embedding, atol=1e-5)

    weight = model.head.weight.detach().double().numpy()
    bias = model.head.bias.detach().double().numpy()
    logits = weight @ expected_embedding + bias
    expected_pd = 1.0 / (1.0 + np.exp(logits[0] - logits[1]))
    reordered = "\n\n".join(reversed(PARAGRAPHS))
    out = scorer.score([TEXT, reordered])
    assert abs(expected_pd - 0.5) > 0.01  # the head reads the text
    np.testing.assert_allclose(out["pd"], [expected_pd, expected_pd], atol=1e-6)
    assert out["n_chunks"].tolist() == [len(pieces)] * 2
    n_tokens = len(tok(TEXT)["input_ids"])
    assert out["n_tokens"].tolist() == [n_tokens] * 2 and n_tokens > 16
    assert not out["truncated"].any()  # every token was read

    # The same encoder pooling the whole document: the order moves its embedding.
    assert np.abs(embedded[0] - embed(tok, model, [reordered], max_length=16)[0]).max() < 1e-6
    whole = scorer_of(tiny_backbone, "mean").model
    pooled = embed(tok, whole, [TEXT, reordered], max_length=512)
    assert np.abs(pooled[0] - pooled[1]).max() > 1e-2


def test_occluding_a_paragraph_scores_the_document_without_it(tiny_backbone: Path) -> None:
    from riskudf.config import GradingConf, load_config
    from riskudf.scoring.reasons import mapped_spans, without
    from riskudf.scoring.scorer import ExplainOptions

    conf = load_config(Path(__file__).resolve().parents[1] / "conf/local.yaml")
    everyone = GradingConf.model_validate(
        {**conf.grading.model_dump(), "review_from_pd": 0.0, "decline_from_pd": 1.0}
    )
    reasons = conf.reasons.model_copy(update={"decisions": ("review",)})
    scorer = scorer_of(tiny_backbone, "paragraphs", explain=ExplainOptions(reasons, everyone))
    encoded = scorer.tokenize([TEXT], offsets=True)
    ids, offsets = encoded["input_ids"][0], encoded["offset_mapping"][0]
    start = TEXT.index("UTILISATION")
    end = TEXT.index("[FILING")
    span = [i for i, (a, b) in enumerate(offsets) if b > a and start <= a and b <= end]
    variant = without(ids, (span[0], span[-1] + 1))
    rest = TEXT[:start] + TEXT[end:]
    no_columns = np.zeros((1, 0), dtype=np.float32)  # a text-only fused model
    np.testing.assert_allclose(
        scorer.pds_of_ids([variant], no_columns), scorer.score([rest])["pd"], atol=1e-6
    )

    # Reason codes of a paragraph model: spans beyond the 16-token window are occluded too.
    occlusion = mapped_spans(TEXT, offsets, scorer.library)
    assert len(occlusion.tokens) == 2 and min(t[0] for t in occlusion.tokens) > 16
    out = scorer.score([TEXT])
    assert 0.0 < out["pd"][0] < 1.0 and out["reasons"][0], out


FILLER = (
    "PAYMENT HISTORY\nAll accounts have been paid as agreed over the last 24 months.",
    "INQUIRIES\nNo hard inquiries in the last 6 months.",
    "PUBLIC RECORDS\nNo bankruptcy, judgment or lien on file.",
    "EMPLOYMENT AND INCOME\nWorks as a nurse at the county hospital; income confirmed.",
    "RISK FACTORS\nOur results depend on general economic conditions in our markets.",
    "LIQUIDITY\nCash and undrawn lines comfortably fund the next twelve months.",
)


def utilisation_documents(n: int, seed: int):  # type: ignore[no-untyped-def]
    """Reports in which only a number says the label: utilisation above 50 %, in one paragraph
    among six that are the same in every report (in random order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        used = int(rng.integers(3, 98))
        parts = [*FILLER, f"UTILISATION\nRevolving utilisation is {used}% of total limits."]
        text = "\n\n".join(str(p) for p in rng.permutation(parts))
        rows.append({"id": f"o{seed}-{i}", "text": text, "label": int(used > 50)})
    return pd.DataFrame(rows)


def test_a_paragraph_probe_reads_a_number_the_whole_document_mean_blurs() -> None:
    from sklearn.metrics import roc_auc_score

    from riskudf.config import FeaturesConf, TrainingConf, TrainingDataConf
    from riskudf.training.finetune import default_backbone_dir, score_texts
    from riskudf.training.probe import fit_probe

    test = utilisation_documents(200, 3)
    auc = {}
    for pooling in ("mean", "paragraphs"):
        features = FeaturesConf(pooling=pooling)  # type: ignore[arg-type]
        conf = TrainingConf(
            method="probe",
            max_length=128,
            seed=0,
            imbalance="none",
            data=TrainingDataConf(features=features),
        )
        tuned = fit_probe(
            utilisation_documents(200, 1),
            utilisation_documents(100, 2),
            conf,
            backbone=default_backbone_dir(),
        )
        scored = score_texts(
            tuned.tokenizer,
            tuned.model,
            test["text"].tolist(),
            max_length=128,
            features=tuned.features,
        )
        auc[pooling] = roc_auc_score(test["label"], scored["pd"])
    # Measured: mean 0.906, paragraphs 0.997 (the packaged MiniLM backbone).
    assert auc["paragraphs"] > 0.98 and auc["mean"] < auc["paragraphs"] - 0.04, auc


def test_a_paragraph_model_refuses_chunking(tiny_backbone: Path) -> None:
    from riskudf.documents.windows import ChunkingError
    from riskudf.model.features import no_columns
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder
    from riskudf.scoring.scorer import Scorer, ScoringOptions

    spec = no_columns("paragraphs")
    model = FusedClassifier(load_encoder(tiny_backbone), spec, 2).eval()
    with pytest.raises(ChunkingError, match="pooling paragraphs reads every segment"):
        Scorer(
            None,
            model,
            positive_label=1,
            device="cpu",
            options=ScoringOptions(max_length=16, token_budget=4096),
            chunking={"stride": 8, "aggregation": "max"},
            features=spec.to_dict(),
        )


def test_robustness_counts_the_edits_each_model_reads(tiny_backbone: Path) -> None:
    """A delinquency after the first 16 tokens: a head-reading model never sees its removal (no
    case), segment models read every token. Another export of the report (whitespace_case)
    changes a paragraph model's windows only: for the others it is no case."""
    from riskudf.config import RedactionConf, RobustnessConf, load_config
    from riskudf.governance import robustness as rb

    grading = load_config(Path(__file__).resolve().parents[1] / "conf/local.yaml").grading
    head = "CONSUMER CREDIT REPORT\nReport reference R1, prepared 2026-05-08.\n\n" + FILLER[0]
    texts = [
        f"{head}\n\nLATER\nAccounts were delinquent in {i + 2} monthly cycles of the last 24."
        for i in range(10)
    ]
    tests = [t for t in rb.SUITE if t.name in ("delinquency_removed", "whitespace_case")]
    cases = {}
    for pooling in ("mean", "paragraphs", "lines"):
        scorer = scorer_of(tiny_backbone, pooling)
        summary = rb.assess(
            scorer.tokenizer,
            scorer.model,
            pd.DataFrame({"text": texts}),
            calibration={"method": "none"},
            grading=grading,
            conf=RobustnessConf(min_cases=5),
            redaction=RedactionConf(),
            max_length=16,
            chunking=None,
            features=scorer.model.spec.to_dict(),
            source="inline",
            tests=tests,
        )
        cases[pooling] = {t["test"]: t["cases"] for t in summary["tests"]}
    assert cases == {
        "mean": {"delinquency_removed": 0, "whitespace_case": 0},
        "paragraphs": {"delinquency_removed": 10, "whitespace_case": 10},
        "lines": {"delinquency_removed": 10, "whitespace_case": 0},
    }


def test_a_paragraph_grade_model_is_assessed_on_its_paragraphs(tiny_backbone: Path) -> None:
    """Three grades: assess_grades reads the softmax of the head over the mean of the
    paragraph embeddings, as the probe was fitted."""
    import torch

    from riskudf.config import TrainingConf
    from riskudf.model.features import no_columns
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder
    from riskudf.training.data import Splits
    from riskudf.training.finetune import assess_grades
    from riskudf.training.probe import embed

    scorer = scorer_of(tiny_backbone, "paragraphs")
    spec = no_columns("paragraphs")
    model = FusedClassifier(load_encoder(tiny_backbone), spec, 3).eval()
    texts = [*("\n\n".join(three) for three in combinations(FILLER, 3)), TEXT][::2]
    embedded = embed(scorer.tokenizer, model, texts, max_length=16)
    mean = embedded.mean(axis=0)
    rows = (embedded[:3] - mean) / np.linalg.norm(embedded[:3] - mean, axis=1, keepdims=True)
    with torch.no_grad():  # grade k: the direction of document k from the mean
        model.head.weight.copy_(torch.as_tensor(rows, dtype=torch.float32))
        model.head.bias.copy_(torch.as_tensor(-rows @ mean, dtype=torch.float32))
        logits = model.head(torch.as_tensor(embedded, dtype=torch.float32)).double().numpy()
    labels = logits.argmax(axis=1)
    assert len(set(labels)) == 3, labels  # the head tells the documents apart
    part = pd.DataFrame({"text": texts, "label": labels})
    conf = TrainingConf(
        method="probe", target="grade", grade_classes=("A", "B", "C"), max_length=16
    )
    splits = Splits(train=part, validation=part, calibration=part.iloc[:0], test=part)
    metrics = assess_grades(scorer.tokenizer, model, splits, conf, features=spec.to_dict())
    assert metrics.metrics["test_accuracy"] == 1.0, metrics.metrics


def test_a_line_probe_reads_another_export_of_a_report_the_same(tiny_backbone: Path) -> None:
    """Blank lines, title-case headers and doubled spaces (robustness whitespace_case) leave
    the lines, so a line probe's PD; they regroup the paragraphs, so a paragraph probe's moves."""
    from riskudf.governance.robustness import whitespace_case

    exported = whitespace_case(TEXT, np.random.default_rng(0))
    assert exported.count("\n\n") == len(TEXT.split("\n")) - 1 and "Payment History" in exported
    pds, windows = {}, {}
    for pooling in ("lines", "paragraphs"):
        scorer = scorer_of(tiny_backbone, pooling)
        pds[pooling] = scorer.score([TEXT, exported])["pd"].to_numpy()
        windows[pooling] = [scorer.prepare([t]).windows for t in (TEXT, exported)]
    # The packaged tokenizer is uncased: title case reads as the capitals did.
    assert windows["lines"][0] == windows["lines"][1]
    assert windows["paragraphs"][0] != windows["paragraphs"][1]
    assert abs(pds["lines"][0] - 0.5) > 0.01  # the head reads the text
    np.testing.assert_allclose(pds["lines"][1], pds["lines"][0], atol=1e-6)
    assert abs(pds["paragraphs"][1] - pds["paragraphs"][0]) > 1e-3, pds
