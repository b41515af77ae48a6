"""Structured features fused with the text: the encoding, training on the tiny BERT, the
published artifact scored through Scorer; no Spark (the scoring job's join is in
test_incremental)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PD_ATOL, reasons_close

from riskudf.config import ConfigError, FeaturesConf, LoraConf, TrainingConf, parse_config
from riskudf.model.features import FeatureError, FeatureSpec, encode_features, fit_features
from riskudf.model.load import load_artifact
from riskudf.scoring.scorer import Scorer, ScoringOptions
from riskudf.training.data import split_stratified
from riskudf.training.evaluate import evaluate_split
from riskudf.training.finetune import calibrate_and_evaluate, fine_tune, publish_model

WORDS = [
    *("paid on time", "strong cash flow", "no arrears", "low leverage", "stable income"),
    *("missed payment", "arrears rising", "covenant breach", "court judgment", "late again"),
]


def test_encoding_uses_train_statistics_an_other_slot_and_missing_flags() -> None:
    train = pd.DataFrame(
        {"income": [10.0, 20.0, 30.0, None], "region": ["north", "south", None, "north"]}
    )
    spec = fit_features(train, numeric=["income"], categorical=["region"])
    # mean and population std of the non-null values; categories sorted, nulls left out
    assert spec.means == (20.0,)
    assert spec.stds == pytest.approx((np.std([10.0, 20.0, 30.0]),))
    assert spec.categories == (("north", "south"),)
    assert spec.width == 2 + 3
    scoring = pd.DataFrame(
        {"income": [20.0 + spec.stds[0], None, float("inf")], "region": ["south", "west", None]}
    )
    encoded = encode_features(scoring, spec)
    assert encoded.dtype == np.float32
    np.testing.assert_allclose(
        encoded,
        [
            # z, missing | north, south, other
            [1.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 1.0, 0.0, 0.0, 1.0],  # null -> 0 and flagged; unseen category -> other
            [0.0, 1.0, 0.0, 0.0, 1.0],  # a non-finite number is missing; null category -> other
        ],
        rtol=1e-6,
    )
    # a constant column is not divided by zero; the spec survives the manifest round trip
    constant = fit_features(pd.DataFrame({"x": [3.0, 3.0]}), numeric=["x"], categorical=[])
    assert constant.stds == (1.0,)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(FeatureError, match=r"missing feature columns \['region'\]"):
        encode_features(scoring[["income"]], spec)
    bad = {**spec.to_dict(), "numeric": [{"name": "a", "mean": 0, "std": 0}]}
    with pytest.raises(FeatureError, match="std must be positive"):
        FeatureSpec.from_dict(bad)
    # a manifest with a malformed spec is refused when it is read (scoring: exit code 2)
    from riskudf.model.artifact import ArtifactError, Manifest

    fields = ("model_version", "backbone", "training_table", "created_at")
    manifest = {
        **dict.fromkeys(fields, "x"),
        **{"label_map": {"0": "p", "1": "d"}, "positive_label": 1, "max_length": 8, "seed": 1},
        **{"training_table_version": None, "metrics": {}},
    }
    assert Manifest.from_dict(manifest).features == {}
    with pytest.raises(ArtifactError, match="std must be positive"):
        Manifest.from_dict({**manifest, "features": bad})


def test_features_conf_defaults_to_text_only_and_refuses_clashes() -> None:
    assert TrainingConf().data.features == FeaturesConf()
    assert TrainingConf().data.features.columns == ()
    with pytest.raises(ConfigError, match="named more than once"):
        parse_config({"training": {"data": {"features": {"numeric": ["a"], "categorical": ["a"]}}}})
    with pytest.raises(ConfigError, match="label"):
        parse_config({"training": {"data": {"features": {"numeric": ["default_12m"]}}}})


def numeric_only(n: int = 400, seed: int = 8) -> pd.DataFrame:
    """The label is 1 when a bureau score is in its top quarter; the text is noise, and so is a
    categorical column (with nulls)."""
    rng = np.random.default_rng(seed)
    score = rng.normal(600.0, 50.0, n)
    return pd.DataFrame(
        {
            "id": [f"o{i}" for i in range(n)],
            "text": [". ".join(rng.choice(WORDS, size=4)) for _ in range(n)],
            "label": (score > np.quantile(score, 0.75)).astype(int),
            "bureau_score": score,
            "region": rng.choice(["north", "south", None], size=n),
        }
    )


SPLITS = split_stratified(numeric_only(), validation_fraction=0.25, test_fraction=0.25, seed=0)
FEATURES = FeaturesConf(numeric=("bureau_score",), categorical=("region",))


def settings(features: FeaturesConf | None = None, **kw: object) -> TrainingConf:
    data = {"features": features} if features else {}
    base: dict[str, object] = {
        "max_length": 16,
        "batch_size": 16,
        "epochs": 3,
        "learning_rate": 1e-2,
        "seed": 11,
        "imbalance": "none",
        "lora": LoraConf(r=4, alpha=8, dropout=0.0),
        "data": {"segment_col": None, **data},
    }
    return TrainingConf.model_validate({**base, **kw})


@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_fused_model_learns_from_a_feature_the_text_model_cannot_see(
    tiny_backbone: Path, tmp_path: Path, method: str
) -> None:
    fused = fine_tune(
        SPLITS.train,
        SPLITS.validation,
        settings(FEATURES, method=method),
        backbone=tiny_backbone,
        work_dir=tmp_path / "fused",
    )
    text_only = fine_tune(
        SPLITS.train,
        SPLITS.validation,
        settings(method=method),
        backbone=tiny_backbone,
        work_dir=tmp_path / "text",
    )
    assert fused.best_validation_auc > 0.9
    assert abs(text_only.best_validation_auc - 0.5) < 0.15
    assert fused.features["numeric"][0]["name"] == "bureau_score"
    assert not text_only.features


def test_published_fused_model_scores_its_manifest_figures(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    conf = settings(FEATURES, calibration="platt", imbalance="class_weight")
    tuned = fine_tune(
        SPLITS.train, SPLITS.validation, conf, backbone=tiny_backbone, work_dir=tmp_path
    )
    calibrated = dataclasses.replace(
        SPLITS, calibration=numeric_only(100, seed=9).assign(id=lambda f: "c" + f["id"])
    )
    assessment = calibrate_and_evaluate(
        tuned.tokenizer, tuned.model, calibrated, conf, features=tuned.features
    )
    trained = publish_model(
        tuned.tokenizer,
        tuned.model,
        tmp_path / "model",
        backbone="tiny",
        conf=conf,
        training_table="synthetic",
        training_table_version=None,
        metrics=assessment.metrics,
        calibration=assessment.calibration,
        features=tuned.features,
    )
    assert "feature_head.safetensors" in trained.manifest.files
    assert {"model.safetensors", "config.json"} <= set(trained.manifest.files)
    assert trained.manifest.features == tuned.features
    manifest, tokenizer, model = load_artifact(trained.output)
    options = ScoringOptions(max_length=manifest.max_length, token_budget=8192, precision="fp32")
    common: dict = {"positive_label": 1, "device": "cpu", "features": manifest.features}
    scorer = Scorer(tokenizer, model, options=options, calibration=manifest.calibration, **common)
    raw = Scorer(tokenizer, model, options=options, **common)
    texts = SPLITS.test["text"].tolist()
    columns = SPLITS.test[["bureau_score", "region"]]
    figures = evaluate_split(
        SPLITS.test["label"].to_numpy(),
        raw.score(texts, columns)["pd"].to_numpy(),
        scorer.score(texts, columns)["pd"].to_numpy(),
        prefix="test_",
    )
    for key in ("test_auc", "test_brier", "test_ece", "test_raw_brier"):
        assert figures[key] == pytest.approx(manifest.metrics[key], abs=1e-6)
    assert manifest.metrics["test_auc"] > 0.9
    with pytest.raises(FeatureError, match="needs the feature columns"):
        scorer.score(texts)

    # The mapInPandas form (the GPU stage) reads the feature columns of its frames by name.
    from types import SimpleNamespace

    from riskudf.model.artifact import artifact_key, load_artifact_bytes
    from riskudf.scoring.udf import make_pd_mapper

    _, files = load_artifact_bytes(trained.output)
    mapper = make_pd_mapper(
        SimpleNamespace(value=files),  # what a Broadcast offers the worker
        key=artifact_key(files),
        options=options,
        keep=["id"],
        features=("region", "bureau_score"),
    )
    frame = SPLITS.test.rename(columns={"text": "document"})
    halves = [frame.iloc[:20], frame.iloc[20:]]
    mapped = pd.concat(list(mapper(iter(halves))), ignore_index=True)
    assert mapped["id"].tolist() == frame["id"].tolist()
    np.testing.assert_allclose(mapped["pd"], scorer.score(texts, columns)["pd"], atol=PD_ATOL)


def test_reason_codes_of_a_fused_model_occlude_with_each_rows_features(
    tiny_backbone: Path,
) -> None:
    import torch
    from transformers import AutoTokenizer

    from riskudf.config import GradingConf, load_config
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder
    from riskudf.scoring.reasons import mapped_spans, top_reasons, without
    from riskudf.scoring.scorer import ExplainOptions

    conf = load_config(Path(__file__).resolve().parents[1] / "conf/local.yaml")
    frame = pd.DataFrame({"exposure": [500.0, 1500.0]})
    spec = fit_features(frame, numeric=["exposure"], categorical=[])
    torch.manual_seed(5)
    model = FusedClassifier(load_encoder(tiny_backbone), spec, 2).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_backbone), local_files_only=True)
    everyone = GradingConf.model_validate(
        {**conf.grading.model_dump(), "review_from_pd": 0.0, "decline_from_pd": 1.0}
    )
    reasons = conf.reasons.model_copy(update={"decisions": ("review",)})
    options = ScoringOptions(
        max_length=64, token_budget=4096, explain=ExplainOptions(reasons, everyone)
    )
    scorer = Scorer(
        tokenizer, model, positive_label=1, device="cpu", options=options, features=spec.to_dict()
    )
    text = (
        "Payment history: one account 60 days past due.\n"
        "Revolving utilisation 95%, at or above their credit limit.\n"
        "Four hard inquiries in six months.\nThe borrower is unemployed."
    )
    frame = pd.DataFrame({"exposure": [100.0, 9000.0]})
    out = scorer.score([text, text], frame)

    # Each row's spans are removed and scored with that row's own feature row.
    encoded = scorer.tokenize([text], offsets=True)
    occlusion = mapped_spans(text, encoded["offset_mapping"][0], scorer.library, read_tokens=64)
    variants = [without(encoded["input_ids"][0], tokens) for tokens in occlusion.tokens]
    assert len(variants) == 4
    matrix = encode_features(frame, FeatureSpec.from_dict(spec.to_dict()))
    for row in range(2):
        rows = np.repeat(matrix[row : row + 1], len(variants), axis=0)
        weights = out["pd"][row] - scorer.pds_of_ids(variants, rows)
        # The variants are batched apart from the UDF's pass: weights agree to float noise.
        expected = top_reasons(weights, occlusion.codes, scorer.library, 4)
        assert reasons_close(out["reasons"][row], expected)
    assert out["reasons"][0] and out["reasons"][0] != out["reasons"][1]
