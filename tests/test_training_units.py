"""Pure helpers of the training job: metrics, calibration, splits, weights, config, model card."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskudf.config import ConfigError, TrainingConf, parse_config
from riskudf.model.artifact import Manifest
from riskudf.model.calibration import (
    CalibrationError,
    apply_calibration,
    calibrate,
    fit_calibration,
    fit_isotonic,
    fit_temperature,
)
from riskudf.training.card import model_card
from riskudf.training.data import LabelError, split_by_time, split_stratified
from riskudf.training.evaluate import (
    confusion_at,
    evaluate_split,
    expected_calibration_error,
    ks_statistic,
)
from riskudf.training.finetune import class_weights, sample_weights

LABELS = np.array([0, 0, 1, 1])
PDS = np.array([0.1, 0.4, 0.35, 0.8])


def test_ece_weights_each_quantile_bin_by_its_rows() -> None:
    # Two quantile bins: {0.05, 0.15} with rate 0, {0.15 (tie goes up), 0.95}: ties share a bin.
    ece = expected_calibration_error(LABELS, np.array([0.05, 0.15, 0.15, 0.95]), n_bins=2)
    # edges at the median 0.15: [0.05] | [0.15, 0.15, 0.95] with rates 0 and 2/3
    assert ece == pytest.approx((0.05 + 3 * abs(2 / 3 - 1.25 / 3)) / 4, abs=1e-12)


def test_ece_bins_split_low_pds_that_equal_width_bins_lump_together() -> None:
    # A loan book: every PD below 0.1. Equal-width bins see one bin whose mean PD matches the
    # default rate (ECE 0); quantile bins see that the low half defaults more than predicted.
    pds = np.array([0.01] * 50 + [0.05] * 50)
    labels = np.array([1] * 3 + [0] * 47 + [0] * 50)  # 6 % in the low half, 0 % in the high
    assert expected_calibration_error(labels, pds, n_bins=10) == pytest.approx(
        (50 * 0.05 + 50 * 0.05) / 100, abs=1e-12
    )


def test_ks_auc_gini_and_confusion() -> None:
    assert ks_statistic(LABELS, PDS) == pytest.approx(0.5)
    metrics = evaluate_split(LABELS, PDS, PDS, prefix="test_", thresholds={"review": 0.35})
    assert metrics["test_auc"] == pytest.approx(0.75)
    assert metrics["test_gini"] == pytest.approx(0.5)
    assert metrics["test_rows"] == 4.0
    assert metrics["test_default_rate"] == 0.5
    assert {k: metrics[k] for k in metrics if k.startswith("test_review_")} == {
        "test_review_tp": 2.0,
        "test_review_fp": 1.0,
        "test_review_fn": 0.0,
        "test_review_tn": 1.0,
    }
    assert confusion_at(LABELS, PDS, 0.9, "d") == {
        "d_tp": 0.0,
        "d_fp": 0.0,
        "d_fn": 2.0,
        "d_tn": 2.0,
    }


def test_raw_and_calibrated_figures_are_kept_apart() -> None:
    raw = np.array([0.5, 0.5, 0.5, 0.5])
    metrics = evaluate_split(LABELS, raw, PDS, prefix="v_")
    assert metrics["v_raw_brier"] == pytest.approx(0.25)
    assert metrics["v_brier"] == pytest.approx(np.mean((PDS - LABELS) ** 2))


def test_auc_per_segment_skips_single_class_segments() -> None:
    labels = np.array([0, 1, 0, 1, 0, 0])
    pds = np.array([0.1, 0.9, 0.6, 0.4, 0.2, 0.3])
    segments = ["retail", "retail", "corporate", "corporate", "sme", "sme"]
    metrics = evaluate_split(labels, pds, pds, prefix="t_", segments=segments)
    per_segment = {k: v for k, v in metrics.items() if k.startswith("t_auc_segment=")}
    assert per_segment == {"t_auc_segment=corporate": 0.0, "t_auc_segment=retail": 1.0}


def _simulated(temperature: float, n: int = 40_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 3.0, size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z / temperature))).astype(int)
    return 1 / (1 + np.exp(-z)), labels


def test_temperature_fit_recovers_the_temperature() -> None:
    pds, labels = _simulated(2.0)
    assert fit_temperature(pds, labels) == pytest.approx(2.0, rel=0.05)
    fitted = fit_calibration("temperature", pds, labels)
    np.testing.assert_allclose(
        apply_calibration(pds, fitted), calibrate(pds, slope=1 / fitted["temperature"], intercept=0)
    )


def test_isotonic_matches_scikit_learn_predict() -> None:
    from sklearn.isotonic import IsotonicRegression

    pds, labels = _simulated(1.5, n=2_000)
    fitted = fit_calibration("isotonic", pds, labels)
    probe = np.array([0.0, 1e-4, 0.03, 0.2, 0.5, 0.77, 0.999, 1.0])
    expected = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(pds, labels)
    np.testing.assert_allclose(apply_calibration(probe, fitted), expected.predict(probe))
    assert fitted == {"method": "isotonic", **fit_isotonic(pds, labels)}


def test_manifests_without_a_method_are_platt() -> None:
    legacy = {"slope": 3.0, "intercept": -2.0}
    np.testing.assert_allclose(apply_calibration(PDS, legacy), calibrate(PDS, **legacy))


def test_no_calibration_is_recorded_as_none_not_as_platt() -> None:
    # Issue 21: an uncalibrated model was recorded as Platt with slope 1.
    assert fit_calibration("none", PDS, LABELS) == {"method": "none"}
    np.testing.assert_array_equal(apply_calibration(PDS, {"method": "none"}), PDS)


def test_platt_with_a_reversed_ranking_falls_back_to_none() -> None:
    fitted = fit_calibration(
        "platt", np.array([0.9, 0.8, 0.2, 0.1] * 5), np.array([0, 0, 1, 1] * 5)
    )
    assert fitted == {"method": "none", "fallback": "platt slope not positive"}


def test_unknown_calibration_is_refused() -> None:
    with pytest.raises(CalibrationError, match="beta"):
        apply_calibration(PDS, {"method": "beta"})
    with pytest.raises(CalibrationError, match="temperature"):
        apply_calibration(PDS, {"method": "temperature"})


def test_class_and_sample_weights() -> None:
    labels = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights(labels), [4 / 6, 2.0])
    np.testing.assert_allclose(sample_weights(labels), [1 / 3, 1 / 3, 1 / 3, 1.0])


def _frame(n: int = 100, defaults: int = 20) -> pd.DataFrame:
    day = dt.date(2024, 1, 1)
    return pd.DataFrame(
        {
            "id": [f"o{i:03d}" for i in range(n)],
            "text": ["x"] * n,
            "label": [1 if i % (n // defaults) == 0 else 0 for i in range(n)],
            "as_of": [day + dt.timedelta(days=i // 10) for i in range(n)],  # 10 rows a date
        }
    )


def test_stratified_split_is_seeded_disjoint_and_keeps_the_default_rate() -> None:
    frame = _frame()
    splits = split_stratified(frame, validation_fraction=0.2, test_fraction=0.2, seed=7)
    sizes = [
        (len(p), int(p["label"].sum())) for p in (splits.train, splits.validation, splits.test)
    ]
    assert sizes == [(60, 12), (20, 4), (20, 4)]
    ids = [set(p["id"]) for p in (splits.train, splits.validation, splits.test)]
    assert set.union(*ids) == set(frame["id"]) and sum(map(len, ids)) == 100
    again = split_stratified(frame, validation_fraction=0.2, test_fraction=0.2, seed=7)
    assert again.test["id"].tolist() == splits.test["id"].tolist()
    other = split_stratified(frame, validation_fraction=0.2, test_fraction=0.2, seed=8)
    assert other.test["id"].tolist() != splits.test["id"].tolist()


def test_time_split_trains_on_the_oldest_dates_and_never_cuts_a_date() -> None:
    frame = _frame().sample(frac=1.0, random_state=1)  # order must not matter
    splits = split_by_time(frame, date_col="as_of", validation_fraction=0.2, test_fraction=0.2)
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [60, 20, 20]
    assert splits.train["as_of"].max() < splits.validation["as_of"].min()
    assert splits.validation["as_of"].max() < splits.test["as_of"].min()
    assert splits.test["as_of"].min() == dt.date(2024, 1, 9)


def test_stratified_split_keeps_each_obligor_in_one_split() -> None:
    # Three observation dates per obligor: a row split would put one obligor in train and test.
    frame = pd.concat([_frame().assign(as_of=dt.date(2022 + k, 1, 1)) for k in range(3)])
    frame["label"] = [int((i * 7 + k) % 9 == 0) for k in range(3) for i in range(100)]
    splits = split_stratified(
        frame, validation_fraction=0.2, test_fraction=0.2, calibration_fraction=0.2, seed=7
    )
    ids = {name: set(part["id"]) for name, part in splits.parts().items()}
    assert list(ids) == ["train", "validation", "calibration", "test"]
    for a, b in itertools.combinations(ids, 2):
        assert not ids[a] & ids[b], (a, b)
    assert sum(len(part) for part in splits.parts().values()) == len(frame) == 300
    assert all(len(part) % 3 == 0 for part in splits.parts().values())  # whole obligors
    assert [len(ids[name]) for name in ids] == [40, 20, 20, 20]


def test_time_split_leaves_a_gap_of_the_outcome_horizon() -> None:
    # One date a month for 40 months, 10 rows each.
    months = [dt.date(2020 + m // 12, m % 12 + 1, 1) for m in range(40)]
    frame = pd.DataFrame(
        {
            "id": [f"o{i}" for i in range(400)],
            "text": "x",
            "label": [int(i % 5 == 0) for i in range(400)],
            "as_of": [months[i // 10] for i in range(400)],
        }
    )
    splits = split_by_time(
        frame,
        date_col="as_of",
        validation_fraction=0.2,
        test_fraction=0.2,
        calibration_fraction=0.1,
        gap_months=3,
    )
    order = list(splits.parts().values())
    for before, after in itertools.pairwise(order):
        last = before["as_of"].max()
        earliest = dt.date(last.year + (last.month + 2) // 12, (last.month + 2) % 12 + 1, 1)
        assert after["as_of"].min() == earliest  # three months on: labels have matured
    assert splits.dropped_in_gaps == 3 * 2 * 10  # 3 gaps of 2 dropped months of 10 rows
    kept = sum(len(part) for part in order)
    assert kept + splits.dropped_in_gaps == 400


def test_time_split_needs_enough_dates() -> None:
    frame = _frame().assign(as_of=dt.date(2024, 1, 1))
    with pytest.raises(LabelError, match="1 distinct dates"):
        split_by_time(frame, date_col="as_of", validation_fraction=0.2, test_fraction=0.2)


def test_a_split_without_both_classes_is_refused() -> None:
    frame = _frame()
    frame.loc[frame["as_of"] >= dt.date(2024, 1, 9), "label"] = 0
    with pytest.raises(LabelError, match="test split"):
        split_by_time(frame, date_col="as_of", validation_fraction=0.2, test_fraction=0.2)


def _conf_with(training: dict) -> dict:
    from riskudf.config import load_config

    raw = load_config(Path(__file__).resolve().parents[1] / "conf/local.yaml").model_dump()
    raw["training"].update(training)
    return raw


def test_training_conf_switches() -> None:
    conf = parse_config(_conf_with({"method": "lora", "calibration": "isotonic"})).training
    assert (conf.method, conf.lora.r, conf.lora.target_modules) == ("lora", 8, ("query", "value"))
    assert conf.imbalance == "class_weight"
    with pytest.raises(ConfigError, match="date_col"):
        parse_config(_conf_with({"data": {"split": "time"}}))
    with pytest.raises(ConfigError, match="text_from"):
        parse_config(_conf_with({"data": {"text_col": None}}))
    serialised = parse_config(_conf_with({"data": {"text_col": None, "text_from": ["a", "b"]}}))
    assert serialised.training.data.text_from == ("a", "b")
    with pytest.raises(ConfigError, match="below 1"):
        parse_config(_conf_with({"validation_fraction": 0.5, "test_fraction": 0.5}))
    with pytest.raises(ConfigError, match=r"lora\.rank"):
        parse_config(_conf_with({"lora": {"rank": 4}}))
    with pytest.raises(ConfigError, match="method"):
        parse_config(_conf_with({"method": "qlora"}))
    assert TrainingConf().calibration == "platt"
    moved = TrainingConf().with_data(table="/data/loans", text_col=None, label_col="bad")
    assert (moved.data.table, moved.data.text_col, moved.data.label_col) == (
        "/data/loans",
        "text",
        "bad",
    )
    with pytest.raises(ConfigError, match="split"):
        TrainingConf().with_data(split="time")


def test_model_card_reports_the_manifest_figures() -> None:
    metrics = evaluate_split(LABELS, PDS, PDS, prefix="test_", thresholds={"review": 0.35})
    metrics["tfidf_test_auc"] = 0.625
    manifest = Manifest(
        model_version="m-1",
        backbone="tiny",
        label_map={"0": "performing", "1": "default"},
        positive_label=1,
        max_length=64,
        seed=1,
        training_table="risk.training_documents",
        training_table_version=3,
        metrics=metrics,
        created_at="2026-11-29T00:00:00+00:00",
        calibration={"method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 1.0]},
        training={"method": "lora", "trainable_parameters": 1090, "total_parameters": 9000},
    )
    card = model_card(manifest)
    assert card.startswith("# Model card: m-1\n")
    assert "| AUC | 0.7500 |" in card and "| Gini | 0.5000 |" in card
    assert "method: lora; trainable parameters 1090 of 9000" in card
    assert "risk.training_documents (Delta version 3)" in card
    assert "2 defaults and 1 non-defaults flagged, 0 defaults and 1 non-defaults not." in card
    assert "- method: isotonic, fitted on the calibration split" in card
    fitted = {"data": "out-of-fold PDs, 5 folds", "rows": 2790, "defaults": 71}
    crossed = manifest.model_copy(update={"calibration": {"method": "platt", "fitted_on": fitted}})
    assert "- method: platt, fitted on out-of-fold PDs, 5 folds (2,790 rows, 71 defaults)" in (
        model_card(crossed)
    )
    assert "TF-IDF + logistic regression: test AUC 0.6250" in card
    assert "- structured features: none (text only)" in card
    fused = Manifest(
        **{
            **manifest.__dict__,
            "features": {
                "numeric": [{"name": "exposure", "mean": 1500.0, "std": 250.0}],
                "categorical": [{"name": "region", "categories": ["north", "south"]}],
                "pooling": "mean",
            },
        }
    )
    assert (
        "- structured features: exposure (numeric, train mean 1500, std 250); region "
        "(categorical, 2 train values + other), beside the mean-pooled text"
    ) in model_card(fused)


def test_tfidf_benchmark_ranks_by_the_words_it_learned() -> None:
    from riskudf.training.data import Splits
    from riskudf.training.tfidf import tfidf_benchmark

    def part(bad: int, good: int) -> pd.DataFrame:
        texts = ["missed payment arrears"] * bad + ["paid on time"] * good
        return pd.DataFrame({"text": texts, "label": [1] * bad + [0] * good})

    splits = Splits(part(4, 12), part(1, 3), part(2, 6))
    assert tfidf_benchmark(splits, seed=0, balanced=True) == {
        "tfidf_validation_auc": 1.0,
        "tfidf_validation_gini": 1.0,
        "tfidf_validation_ks": 1.0,
        "tfidf_test_auc": 1.0,
        "tfidf_test_gini": 1.0,
        "tfidf_test_ks": 1.0,
    }


def test_grade_figures() -> None:
    from riskudf.training.evaluate import evaluate_grades

    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]])
    metrics = evaluate_grades(labels, probs, ["Good", "Fair", "Poor"], prefix="t_")
    assert metrics["t_accuracy"] == 0.75
    assert metrics["t_confusion_Poor_Fair"] == 1.0 and metrics["t_confusion_Poor_Poor"] == 1.0
    assert metrics["t_confusion_Good_Good"] == 1.0 and metrics["t_confusion_Good_Poor"] == 0.0
    assert metrics["t_log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.5, 0.7, 0.3])), abs=1e-12)
    # one ordinal step wrong out of four: kappa with quadratic weights
    from sklearn.metrics import cohen_kappa_score

    assert metrics["t_quadratic_kappa"] == pytest.approx(
        cohen_kappa_score(labels, [0, 1, 2, 1], weights="quadratic")
    )
    np.testing.assert_allclose(class_weights(np.array([0, 0, 1, 2, 2, 2]), 3), [1.0, 2.0, 2 / 3])


def test_grade_target_conf_and_pd_only_scoring() -> None:
    from riskudf.model.artifact import ArtifactError, require_pd_model

    grades = {"target": "grade", "grade_classes": ["Excellent", "Good", "Fair", "Poor"]}
    assert parse_config(_conf_with(grades)).training.grade_classes[-1] == "Poor"
    with pytest.raises(ConfigError, match="3 distinct"):
        parse_config(_conf_with({"target": "grade", "grade_classes": ["Good", "Poor"]}))
    with pytest.raises(ConfigError, match="chunking"):
        parse_config(_conf_with({**grades, "chunking": {"stride": 64}}))
    fields = {
        "model_version": "g-1",
        "backbone": "tiny",
        "max_length": 64,
        "seed": 1,
        "training_table": "t",
        "training_table_version": 0,
        "metrics": {},
        "created_at": "2026-11-29T00:00:00+00:00",
    }
    require_pd_model(
        Manifest(label_map={"0": "performing", "1": "default"}, positive_label=1, **fields)
    )
    grade_model = Manifest(
        label_map={"0": "Good", "1": "Fair", "2": "Poor"}, positive_label=-1, **fields
    )
    with pytest.raises(ArtifactError, match="g-1 is not a PD model"):
        require_pd_model(grade_model)


def test_card_charts_draw_one_polyline_per_series() -> None:
    import re

    from riskudf.training.charts import calibration_curve, training_curves

    history = [
        {"epoch": 1.0, "train_loss": 0.7, "validation_loss": 0.6, "validation_auc": 0.7},
        {"epoch": 2.0, "train_loss": 0.5, "validation_loss": 0.55, "validation_auc": 0.8},
    ]
    svg = training_curves(history)
    lines = re.findall(r'data-name="([^"]+)" points="([^"]+)"', svg)
    assert [name for name, _ in lines] == ["training loss", "validation loss", "validation AUC"]
    assert all(len(points.split()) == 2 for _, points in lines)
    bins = [
        {"rows": 10, "mean_pd": 0.01, "default_rate": 0.0},
        {"rows": 10, "mean_pd": 0.05, "default_rate": 0.1},
        {"rows": 10, "mean_pd": 0.2, "default_rate": 0.2},
    ]
    curve = calibration_curve(bins)
    assert len(re.findall(r"<circle ", curve)) == 3 and "stroke-dasharray" in curve  # y = x


def test_model_card_lists_the_candidates_and_warns_when_the_benchmark_won() -> None:
    manifest = Manifest(
        model_version="m-2",
        backbone="tiny",
        label_map={"0": "performing", "1": "default"},
        positive_label=1,
        max_length=64,
        seed=1,
        training_table="t",
        training_table_version=1,
        metrics={"test_auc": 0.7},
        created_at="2026-12-01T00:00:00+00:00",
        calibration={"method": "none"},
        training={
            "selection": {
                "criterion": "validation_auc",
                "transformer": 0.70,
                "benchmark": 0.75,
                "verdict": "benchmark_better",
                "published": False,
            },
            "candidates": [
                {
                    "name": "a",
                    "method": "full",
                    "learning_rate": 2e-5,
                    "epochs_run": 2,
                    "seconds": 10.0,
                    "validation_auc": 0.70,
                    "chosen": True,
                },
                {
                    "name": "b",
                    "method": "frozen",
                    "learning_rate": 1e-3,
                    "epochs_run": 1,
                    "seconds": 4.0,
                    "validation_auc": 0.65,
                    "chosen": False,
                },
                {
                    "name": "c",
                    "method": "probe",
                    "learning_rate": None,
                    "strength": 3e-4,
                    "epochs_run": 1,
                    "seconds": 2.5,
                    "validation_auc": 0.60,
                    "chosen": False,
                },
            ],
        },
    )
    card = model_card(manifest)
    assert "- method: none: the PDs are the model's raw probabilities" in card
    assert (
        "**WARNING: the benchmark beats this model** on validation_auc: transformer 0.7000" in card
    )
    assert "NOT published" in card
    assert "| a | full | 2e-05 | 2 | 10.0 | 0.7000 | yes |" in card
    assert "| b | frozen | 0.001 | 1 | 4.0 | 0.6500 |  |" in card
    assert "| c | probe | C=0.0003 | 1 | 2.5 | 0.6000 |  |" in card
