"""The fine-tuning job on the tiny BERT, without Spark: methods, early stopping, imbalance,
calibration applied at scoring, model card and reproducibility."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskudf.config import ChunkingConf, LoraConf, TrainingConf
from riskudf.model.load import load_artifact
from riskudf.scoring.scorer import Scorer, ScoringOptions
from riskudf.training.data import split_stratified
from riskudf.training.evaluate import evaluate_split
from riskudf.training.finetune import (
    MODEL_CARD_NAME,
    FineTuned,
    TrainedModel,
    build_classifier,
    calibrate_and_evaluate,
    fine_tune,
    parameter_counts,
    publish_model,
    score_texts,
)

GOOD = ["paid on time", "strong cash flow", "no arrears", "low leverage", "stable income"]
BAD = ["missed payment", "arrears rising", "covenant breach", "court judgment", "late again"]


def synthetic(n: int = 120, default_every: int = 4, seed: int = 3) -> pd.DataFrame:
    """Short documents, 1 default in ``default_every``: one word carries the label, four are
    noise, so that the tiny model's validation AUC moves from epoch to epoch."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(i % default_every == 0)
        words = [*rng.choice(BAD if label else GOOD, size=1), *rng.choice(GOOD + BAD, size=4)]
        rng.shuffle(words)
        rows.append({"id": f"o{i}", "text": ". ".join(words), "label": label})
    return pd.DataFrame(rows)


SPLITS = split_stratified(synthetic(), validation_fraction=0.25, test_fraction=0.25, seed=0)
# The calibration fit gets rows of its own (never the validation split, which chose the epoch).
CALIBRATED = dataclasses.replace(
    SPLITS, calibration=synthetic(48, seed=4).assign(id=lambda f: "c" + f["id"])
)


def conf(**kw: object) -> TrainingConf:
    base: dict[str, object] = {
        "max_length": 32,
        "batch_size": 16,
        "epochs": 2,
        "learning_rate": 1e-3,
        "seed": 11,
        "lora": LoraConf(r=4, alpha=8, dropout=0.0),
    }
    return TrainingConf(**{**base, **kw})  # type: ignore[arg-type]


def publish(
    tuned: FineTuned, out: Path, settings: TrainingConf, metrics: dict, **kw: object
) -> TrainedModel:
    return publish_model(
        tuned.tokenizer,
        tuned.model,
        out,
        backbone="tiny",
        conf=settings,
        training_table="synthetic",
        training_table_version=None,
        metrics=metrics,
        **kw,  # type: ignore[arg-type]
    )


def test_lora_trains_adapters_and_the_head_only(tiny_backbone: Path) -> None:
    full = build_classifier(tiny_backbone, conf(method="full"))
    lora = build_classifier(tiny_backbone, conf(method="lora"))
    hidden, layers = full.config.hidden_size, full.config.num_hidden_layers
    trainable, total = parameter_counts(full)
    assert trainable == total
    adapters = layers * 2 * (4 * hidden + hidden * 4)  # query and value: A (r x h), B (h x r)
    head = hidden * 2 + 2
    lora_trainable, lora_total = parameter_counts(lora)
    assert lora_trainable == adapters + head
    assert lora_total == total + adapters + head  # peft keeps the original head beside its copy


@pytest.mark.parametrize(("method", "learning_rate"), [("full", 1e-2), ("lora", 3e-2)])
def test_best_epoch_is_kept_and_scored_as_validated(
    tiny_backbone: Path, tmp_path: Path, method: str, learning_rate: float
) -> None:
    # learning rates where, on this data and seed, the last of 5 epochs is not the best
    settings = conf(method=method, epochs=5, learning_rate=learning_rate, early_stopping_patience=5)
    tuned = fine_tune(
        SPLITS.train, SPLITS.validation, settings, backbone=tiny_backbone, work_dir=tmp_path
    )
    aucs = [row["validation_auc"] for row in tuned.history]
    assert len(aucs) == tuned.epochs_run == len(tuned.seconds_per_epoch) == 5
    assert aucs[-1] < max(aucs)  # the last epoch is not the best: the best must be restored
    assert tuned.best_validation_auc == max(aucs)
    scores = score_texts(
        tuned.tokenizer, tuned.model, SPLITS.validation["text"].tolist(), max_length=32
    )
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(SPLITS.validation["label"], scores["pd"]) == pytest.approx(
        tuned.best_validation_auc, abs=1e-9
    )


def test_early_stopping_ends_when_auc_stops_improving(tiny_backbone: Path, tmp_path: Path) -> None:
    # A learning rate this small leaves the AUC where it was: no epoch improves on the first.
    frozen = conf(epochs=6, learning_rate=1e-12, early_stopping_patience=1)
    tuned = fine_tune(
        SPLITS.train, SPLITS.validation, frozen, backbone=tiny_backbone, work_dir=tmp_path
    )
    assert tuned.epochs_run == 2


def test_balanced_sampler_draws_both_classes_evenly() -> None:
    from riskudf.training.finetune import _trainer_class, sample_weights

    labels = np.array([1] + [0] * 9)
    trainer_cls = _trainer_class()
    sampler = trainer_cls._get_train_sampler(
        type("T", (), {"row_weights": sample_weights(labels), "args": type("A", (), {"seed": 1})})
    )
    drawn = [labels[i] for _ in range(200) for i in sampler]
    assert abs(np.mean(drawn) - 0.5) < 0.03


@pytest.mark.parametrize(
    ("method", "imbalance", "calibration", "chunking"),
    [
        ("lora", "balanced_sampling", "isotonic", None),
        ("full", "class_weight", "temperature", None),
        ("full", "none", "platt", ChunkingConf(stride=4, aggregation="mean")),
    ],
)
def test_published_model_scores_with_its_calibration(
    tiny_backbone: Path,
    tmp_path: Path,
    method: str,
    imbalance: str,
    calibration: str,
    chunking: ChunkingConf | None,
) -> None:
    # With chunking, a 12-token window: the synthetic documents (about 15 tokens) are split.
    window = {"max_length": 12, "chunking": chunking} if chunking else {}
    settings = conf(method=method, imbalance=imbalance, calibration=calibration, epochs=1, **window)
    tuned = fine_tune(
        SPLITS.train, SPLITS.validation, settings, backbone=tiny_backbone, work_dir=tmp_path
    )
    assert type(tuned.model).__name__ == "BertForSequenceClassification"  # adapters merged
    assessment = calibrate_and_evaluate(
        tuned.tokenizer, tuned.model, CALIBRATED, settings, thresholds={"review": 0.05}
    )
    assert assessment.calibration["method"] == calibration
    trained = publish(
        tuned,
        tmp_path / "model",
        settings,
        assessment.metrics,
        calibration=assessment.calibration,
        training={"method": method},
        model_card=lambda manifest: f"# {manifest.model_version}\n",
    )
    assert MODEL_CARD_NAME in trained.manifest.files
    # The nightly path (artifact -> Scorer with the manifest's calibration) gives the test figures.
    manifest, tokenizer, model = load_artifact(trained.output)
    assert manifest.chunking == (chunking.model_dump() if chunking else {})
    options = ScoringOptions(max_length=manifest.max_length, token_budget=8192, precision="fp32")
    chunks = manifest.chunking or None
    raw = Scorer(tokenizer, model, positive_label=1, device="cpu", options=options, chunking=chunks)
    scored = Scorer(
        tokenizer,
        model,
        positive_label=1,
        device="cpu",
        options=options,
        calibration=manifest.calibration,
        chunking=chunks,
    )
    texts = SPLITS.test["text"].tolist()
    if chunking:
        assert (scored.score(texts)["n_chunks"] > 1).mean() > 0.5
    figures = evaluate_split(
        SPLITS.test["label"].to_numpy(),
        raw.score(texts)["pd"].to_numpy(),
        scored.score(texts)["pd"].to_numpy(),
        prefix="test_",
        thresholds={"review": 0.05},
    )
    for key in ("test_auc", "test_brier", "test_ece", "test_raw_brier", "test_review_tp"):
        assert figures[key] == pytest.approx(manifest.metrics[key], abs=1e-6)


def test_same_seed_same_metrics(tiny_backbone: Path, tmp_path: Path) -> None:
    def run(where: str) -> dict[str, float]:
        tuned = fine_tune(
            SPLITS.train,
            SPLITS.validation,
            conf(),
            backbone=tiny_backbone,
            work_dir=tmp_path / where,
        )
        return calibrate_and_evaluate(tuned.tokenizer, tuned.model, CALIBRATED, conf()).metrics

    first, second = run("a"), run("b")
    assert first.keys() == second.keys()
    for key in first:
        assert first[key] == pytest.approx(second[key], abs=1e-6), key


def test_two_gloo_processes_train_the_model_that_is_returned(
    spark, tiny_backbone: Path, tmp_path: Path
) -> None:
    from sklearn.metrics import roc_auc_score

    from riskudf.training.distributed import fine_tune_distributed

    settings = conf(processes=2, epochs=2, learning_rate=3e-3, early_stopping_patience=2)
    tuned = fine_tune_distributed(
        spark, SPLITS.train, SPLITS.validation, settings, backbone=tiny_backbone, work_dir=tmp_path
    )
    assert tuned.world_size == 2
    assert tuned.epochs_run == len(tuned.history) == 2
    scores = score_texts(
        tuned.tokenizer, tuned.model, SPLITS.validation["text"].tolist(), max_length=32
    )
    assert roc_auc_score(SPLITS.validation["label"], scores["pd"]) == pytest.approx(
        tuned.best_validation_auc, abs=1e-9
    )


def test_a_grade_classifier_from_the_same_job(tiny_backbone: Path, tmp_path: Path) -> None:
    from riskudf.model.artifact import ArtifactError, read_manifest, require_pd_model
    from riskudf.training.finetune import assess_grades

    grades = ("Excellent", "Good", "Fair", "Poor")
    words = [GOOD[:2], GOOD[2:], BAD[:2], BAD[2:]]
    rng = np.random.default_rng(5)
    rows = []
    for i in range(160):
        grade = i % 4
        text = ". ".join([*rng.choice(words[grade], size=2), *rng.choice(GOOD + BAD, size=2)])
        rows.append({"id": str(i), "text": text, "label": grade})
    splits = split_stratified(
        pd.DataFrame(rows), validation_fraction=0.25, test_fraction=0.25, seed=0
    )
    settings = conf(target="grade", grade_classes=grades, epochs=2)
    tuned = fine_tune(
        splits.train, splits.validation, settings, backbone=tiny_backbone, work_dir=tmp_path
    )
    assert tuned.model.config.num_labels == 4
    assert tuned.model.config.id2label == dict(enumerate(grades))
    assessment = assess_grades(tuned.tokenizer, tuned.model, splits, settings)
    metrics = assessment.metrics
    # The Trainer's padded batches and the scorer's length-sorted ones differ in the last bits,
    # which can reorder the near-equal probabilities of this barely trained 4-class model.
    assert metrics["validation_macro_auc"] == pytest.approx(tuned.best_validation_auc, abs=5e-3)
    confusion = sum(metrics[f"test_confusion_{a}_{b}"] for a in grades for b in grades)
    assert confusion == metrics["test_rows"] == len(splits.test)
    trained = publish(tuned, tmp_path / "grades", settings, metrics)
    manifest = read_manifest(trained.output)
    assert manifest.label_map == {"0": "Excellent", "1": "Good", "2": "Fair", "3": "Poor"}
    with pytest.raises(ArtifactError, match="not a PD model"):
        require_pd_model(manifest)


def test_frozen_trains_the_pooler_and_head_only(tiny_backbone: Path) -> None:
    frozen = build_classifier(tiny_backbone, conf(method="frozen"))
    hidden = frozen.config.hidden_size
    trainable, total = parameter_counts(frozen)
    assert trainable == (hidden * hidden + hidden) + (hidden * 2 + 2)  # pooler dense, classifier
    assert total == parameter_counts(build_classifier(tiny_backbone, conf()))[1]


def test_the_candidate_with_the_best_validation_auc_is_chosen(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    from riskudf.config import CandidateConf
    from riskudf.training.pipeline import train_candidates

    settings = conf(
        epochs=3,
        candidates=(
            CandidateConf(name="still", learning_rate=1e-12),  # learns nothing
            CandidateConf(name="learns", learning_rate=1e-2),
        ),
    )
    tuned, chosen, results = train_candidates(
        None, SPLITS, settings, backbone=tiny_backbone, events=tmp_path / "events"
    )
    assert [r["name"] for r in results] == ["still", "learns"]
    aucs = {r["name"]: r["validation_auc"] for r in results}
    assert aucs["learns"] > aucs["still"]
    assert [r["chosen"] for r in results] == [False, True]
    assert chosen.learning_rate == 1e-2 and chosen.candidates == ()
    assert tuned.best_validation_auc == aucs["learns"]
    for name in ("still", "learns"):  # each candidate's curves, through the Trainer's integration
        assert list((tmp_path / "events" / name).glob("events.out.tfevents.*"))


def test_the_calibration_is_fitted_on_the_calibration_split(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    # The setting of test_best_epoch_is_kept_and_scored_as_validated: a model that ranks.
    settings = conf(epochs=5, learning_rate=1e-2, early_stopping_patience=5, calibration="platt")
    tuned = fine_tune(
        SPLITS.train, SPLITS.validation, settings, backbone=tiny_backbone, work_dir=tmp_path
    )
    # The same rows as the validation split, once with their labels and once flipped: only a
    # fit on the calibration split sees the flip (its slope turns negative and falls back).
    same = dataclasses.replace(SPLITS, calibration=SPLITS.validation)
    flipped = dataclasses.replace(
        SPLITS, calibration=SPLITS.validation.assign(label=1 - SPLITS.validation["label"])
    )
    kept = calibrate_and_evaluate(tuned.tokenizer, tuned.model, same, settings)
    reversed_ = calibrate_and_evaluate(tuned.tokenizer, tuned.model, flipped, settings)
    assert kept.metrics["calibration_raw_auc"] > 0.6  # the model ranks: a positive Platt slope
    assert kept.calibration["method"] == "platt" and kept.calibration["slope"] > 0
    assert reversed_.calibration == {"method": "none", "fallback": "platt slope not positive"}
    assert "calibration_auc" in kept.metrics and "validation_auc" in kept.metrics
    with pytest.raises(ValueError, match="needs a calibration split"):
        calibrate_and_evaluate(tuned.tokenizer, tuned.model, SPLITS, settings)


def test_the_probe_head_is_the_regression_on_raw_inputs() -> None:
    from sklearn.linear_model import LogisticRegression

    from riskudf.training.probe import head_weights

    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, size=(90, 4))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    for n_classes in (2, 3):
        y = np.arange(90) % n_classes
        fitted = LogisticRegression(C=0.5).fit((x - mean) / scale, y)
        weight, bias = head_weights(fitted.coef_, fitted.intercept_, mean, scale, n_classes)
        assert weight.shape == (n_classes, 4) and bias.shape == (n_classes,)
        logits = x @ weight.T + bias
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(probs, fitted.predict_proba((x - mean) / scale), atol=1e-12)


def test_the_probe_publishes_its_regression_as_a_model(tiny_backbone: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from riskudf.model.load import load_encoder
    from riskudf.training.probe import STRENGTHS, embed, fit_probe

    settings = conf(method="probe", imbalance="none")
    tuned = fit_probe(SPLITS.train, SPLITS.validation, settings, backbone=tiny_backbone)
    aucs = [row["validation_auc"] for row in tuned.history]
    assert [row["C"] for row in tuned.history] == list(STRENGTHS)
    assert tuned.best_validation_auc == max(aucs)
    hidden = tuned.model.config.hidden_size
    assert tuned.trainable_parameters == 2 * hidden + 2  # two logits over the embedding
    assert tuned.features == {"numeric": [], "categorical": [], "pooling": "mean"}
    pretrained = load_encoder(tiny_backbone).state_dict()
    for name, weights in tuned.model.encoder.state_dict().items():
        assert torch_equal(weights, pretrained[name]), name  # the encoder is not trained

    # The published model's PD is the regression's probability on the pooled embedding.
    train = embed(tuned.tokenizer, tuned.model, SPLITS.train["text"].tolist(), max_length=32)
    test_texts = SPLITS.test["text"].tolist()
    test = embed(tuned.tokenizer, tuned.model, test_texts, max_length=32)
    mean, scale = train.mean(axis=0), train.std(axis=0)
    chosen = STRENGTHS[int(np.argmax(aucs))]
    reference = LogisticRegression(C=chosen, max_iter=5000, random_state=settings.seed).fit(
        (train - mean) / scale, SPLITS.train["label"]
    )
    expected = reference.predict_proba((test - mean) / scale)[:, 1]
    model = publish(tuned, tmp_path / "probe", settings, {}, features=tuned.features)
    _, tokenizer, loaded = load_artifact(model.output)
    scorer = Scorer(
        tokenizer,
        loaded,
        positive_label=1,
        device="cpu",
        options=ScoringOptions(max_length=32, token_budget=4096, precision="fp32"),
        features=tuned.features,
    )
    np.testing.assert_allclose(scorer.score(test_texts)["pd"], expected, atol=1e-5)


def test_cross_fitted_pds_come_from_models_without_the_obligor() -> None:
    from sklearn.metrics import roc_auc_score

    from riskudf.training.probe import _groups, cross_fit

    # Noise features and random labels, each obligor three identical rows: a regression that
    # saw an obligor remembers it, one that did not guesses.
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(100, 200)), 3, axis=0)
    y = np.repeat((rng.random(100) < 0.3).astype(int), 3)
    groups = np.repeat(np.arange(100), 3)
    fitted = cross_fit(x, y, groups, strength=100.0, weighting=None, seed=0)
    assert fitted is not None and fitted.folds == 5
    np.testing.assert_array_equal(fitted.labels, y)
    assert roc_auc_score(y, fitted.pds) < 0.7
    rows = cross_fit(x, y, np.arange(300), strength=100.0, weighting=None, seed=0)
    assert rows is not None and roc_auc_score(y, rows.pds) > 0.95  # an obligor in two folds leaks
    one = np.where(np.arange(300) < 3, 1, 0)  # one obligor defaults: nothing to fold
    assert cross_fit(x, one, groups, strength=1.0, weighting=None, seed=0) is None
    frames = (pd.DataFrame({"id": ["a", "b"]}), pd.DataFrame({"id": ["a"], "text": ["t"]}))
    assert list(_groups(*frames)) == ["a", "b", "a"]  # an obligor in both splits: one group
    assert list(_groups(pd.DataFrame({"x": [1, 2]}), frames[1])) == [0, 1, 2]
    few = cross_fit(
        x, np.where(np.arange(300) < 9, 1, 0), groups, strength=1.0, weighting=None, seed=0
    )
    assert few is not None and few.folds == 3  # as many folds as obligors that default


def test_the_probe_calibration_is_cross_fitted_over_train_and_calibration(
    tiny_backbone: Path,
) -> None:
    from riskudf.config import CandidateConf
    from riskudf.model.calibration import fit_platt
    from riskudf.training.data import TrainingData
    from riskudf.training.finetune import int8_calibration
    from riskudf.training.pipeline import _assess_pd_model, train_candidates

    settings = conf(candidates=(CandidateConf(name="probe", method="probe"),))
    tuned, chosen, _ = train_candidates(
        None, CALIBRATED, settings, backbone=tiny_backbone, events=None
    )
    assert tuned.cross_fit is not None
    rows = len(CALIBRATED.train) + len(CALIBRATED.calibration)
    labels = np.concatenate([CALIBRATED.train["label"], CALIBRATED.calibration["label"]])
    np.testing.assert_array_equal(tuned.cross_fit.labels, labels)
    assessed = calibrate_and_evaluate(
        tuned.tokenizer,
        tuned.model,
        CALIBRATED,
        chosen,
        features=tuned.features,
        cross_fit=tuned.cross_fit,
    )
    expected = fit_platt(tuned.cross_fit.pds, labels)
    assert assessed.calibration["slope"] == pytest.approx(expected["slope"], rel=1e-9)
    assert assessed.calibration["intercept"] == pytest.approx(expected["intercept"], rel=1e-9)
    assert assessed.calibration["fitted_on"] == {
        "data": "out-of-fold PDs, 5 folds over the train and calibration splits",
        "rows": rows,
        "defaults": int(labels.sum()),
        "folds": 5,
    }
    alone = calibrate_and_evaluate(
        tuned.tokenizer, tuned.model, CALIBRATED, chosen, features=tuned.features
    )
    assert alone.calibration["fitted_on"]["rows"] == len(CALIBRATED.calibration)
    assert alone.calibration["slope"] != pytest.approx(expected["slope"], rel=1e-3)
    # The training job's assessment passes the probe's out-of-fold PDs on.
    data = TrainingData("synthetic", None, CALIBRATED.train)
    job, _, _ = _assess_pd_model(tuned, CALIBRATED, chosen, data, grading=None, slice_columns=())
    assert job.calibration == assessed.calibration
    # An int8 version of it applies this map as it is; one calibrated on its split refits.
    assert int8_calibration(assessed.calibration) is assessed.calibration
    assert int8_calibration(alone.calibration) is None
    kept = calibrate_and_evaluate(
        tuned.tokenizer,
        tuned.model,
        CALIBRATED,
        chosen,
        features=tuned.features,
        calibration=alone.calibration,
    )
    assert kept.calibration is alone.calibration
    assert kept.metrics["test_ece"] == pytest.approx(alone.metrics["test_ece"], abs=1e-12)
    timed = settings.model_copy(update={"data": settings.data.model_copy(update={"split": "time"})})
    assert (
        train_candidates(None, CALIBRATED, timed, backbone=tiny_backbone, events=None)[0].cross_fit
        is None
    )  # a time split keeps its calibration split


def torch_equal(first: object, second: object) -> bool:
    import torch

    return bool(torch.equal(first, second))  # type: ignore[arg-type]


def test_a_probe_candidate_is_chosen_like_any_other(tiny_backbone: Path, tmp_path: Path) -> None:
    from riskudf.config import CandidateConf
    from riskudf.training.pipeline import train_candidates
    from riskudf.training.probe import STRENGTHS

    settings = conf(
        candidates=(
            CandidateConf(name="still", learning_rate=1e-12, epochs=1),
            CandidateConf(name="probe", method="probe"),
        )
    )
    tuned, chosen, results = train_candidates(
        None, SPLITS, settings, backbone=tiny_backbone, events=tmp_path / "events"
    )
    assert [(r["name"], r["method"]) for r in results] == [("still", "full"), ("probe", "probe")]
    assert results[1]["tensorboard"] is None and not (tmp_path / "events" / "probe").exists()
    assert results[1]["learning_rate"] is None and results[1]["strength"] in STRENGTHS
    best = max(range(2), key=lambda i: results[i]["validation_auc"])
    assert [r["chosen"] for r in results] == [i == best for i in range(2)]
    assert chosen.method == results[best]["method"]
    assert tuned.best_validation_auc == results[best]["validation_auc"]
