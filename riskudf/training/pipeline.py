"""The training run: Delta table -> split -> fine-tune -> calibrate -> evaluate -> versioned,
checksummed artifact with a model card -> a row in the model registry."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from riskudf.config import GradingConf, RedactionConf, RobustnessConf, TrainingConf
from riskudf.documents.redact import rules_record
from riskudf.governance import robustness
from riskudf.model import aliases
from riskudf.model.aliases import ensure_aliases
from riskudf.model.artifact import ArtifactError, Manifest, read_manifest, versions_dir
from riskudf.model.quantized import METHOD, quantize
from riskudf.model.registry import ensure_registry, register_model, robustness_line
from riskudf.monitoring.baseline import build_baseline
from riskudf.safe_logging import safe_message
from riskudf.scoring.grading import decisions_of, grades_of
from riskudf.training.card import model_card
from riskudf.training.charts import calibration_curve, training_curves
from riskudf.training.data import (
    Splits,
    TrainingData,
    load_labelled,
    split_by_time,
    split_stratified,
)
from riskudf.training.distributed import fine_tune_distributed
from riskudf.training.evaluate import by_grade
from riskudf.training.finetune import (
    Assessment,
    FineTuned,
    TrainedModel,
    assess_grades,
    calibrate_and_evaluate,
    chunking_of,
    default_backbone_dir,
    fine_tune,
    int8_calibration,
    publish_model,
    score_texts,
)
from riskudf.training.probe import fit_probe, strength_of
from riskudf.training.tfidf import tfidf_benchmark

log = logging.getLogger(__name__)


def split_data(frame: pd.DataFrame, conf: TrainingConf) -> Splits:
    """The configured split: stratified and seeded, or by time on the date column."""
    calibration = conf.calibration_fraction if conf.target == "default" else 0.0
    if conf.data.split == "time":
        assert conf.data.date_col is not None  # checked by the config
        return split_by_time(
            frame,
            date_col=conf.data.date_col,
            validation_fraction=conf.validation_fraction,
            calibration_fraction=calibration,
            test_fraction=conf.test_fraction,
            gap_months=conf.data.gap_months,
        )
    return split_stratified(
        frame,
        validation_fraction=conf.validation_fraction,
        calibration_fraction=calibration,
        test_fraction=conf.test_fraction,
        seed=conf.seed,
    )


def load_and_split(
    spark: SparkSession,
    conf: TrainingConf,
    *,
    keep: tuple[str, ...] = (),
    redaction: RedactionConf | None = None,
    version: int | None = None,
) -> tuple[TrainingData, Splits]:
    """The configured training table, read at ``version`` (default: its current one), and its
    split."""
    data_conf = conf.data
    data = load_labelled(
        spark,
        data_conf.table,
        text_col=data_conf.text_col,
        text_from=data_conf.text_from,
        label_col=data_conf.label_col,
        id_col=data_conf.id_col,
        date_col=data_conf.date_col,
        classes=conf.grade_classes if conf.target == "grade" else (),
        max_rows=conf.max_train_rows,
        seed=conf.seed,
        keep=[c for c in (*keep, data_conf.segment_col) if c],
        numeric=data_conf.features.numeric,
        categorical=data_conf.features.categorical,
        redaction=redaction if redaction is not None else RedactionConf(),
        reference_pd_col=data_conf.reference_pd_col,
        version=version,
    )
    splits = split_data(data.frame, conf)
    log.info(
        "split %s: %s rows, %d dated inside gaps left out (table %s version %s)",
        data_conf.split,
        ", ".join(f"{name} {len(part)}" for name, part in splits.parts().items()),
        splits.dropped_in_gaps,
        data.table,
        data.version,
    )
    return data, splits


def benchmark_only(
    spark: SparkSession, conf: TrainingConf, redaction: RedactionConf | None = None
) -> dict[str, float]:
    """TF-IDF + logistic regression on the split the transformer would get (``make baseline``)."""
    _, splits = load_and_split(spark, conf, redaction=redaction)
    return tfidf_benchmark(splits, seed=conf.seed, balanced=conf.imbalance != "none")


def previous_version(output: Path) -> str | None:
    """The model version published at ``output`` now (the one the new model replaces)."""
    try:
        return read_manifest(output).model_version
    except ArtifactError:
        return None


def _assess_pd_model(
    tuned: FineTuned,
    splits: Splits,
    conf: TrainingConf,
    data: TrainingData,
    *,
    grading: GradingConf | None,
    slice_columns: tuple[str, ...],
    calibration: dict[str, Any] | None = None,
) -> tuple[Assessment, dict[str, Any], list[dict[str, Any]]]:
    """Calibration and test figures of a PD model, its monitoring baseline, and its test split's
    counts per grade (n, defaults, sum of PDs; empty without grading). ``calibration``: a map
    applied as it is instead of one fitted."""
    thresholds = None
    if grading is not None:
        thresholds = {"review": grading.review_from_pd, "decline": grading.decline_from_pd}
    assessment = calibrate_and_evaluate(
        tuned.tokenizer,
        tuned.model,
        splits,
        conf,
        thresholds=thresholds,
        segment_col=conf.data.segment_col,
        features=tuned.features,
        cross_fit=tuned.cross_fit,
        calibration=calibration,
    )
    metrics = assessment.metrics
    log.info(
        "test AUC %.4f, Brier %.4f -> %.4f, ECE %.4f -> %.4f (calibration %s)",
        metrics["test_auc"],
        metrics["test_raw_brier"],
        metrics["test_brier"],
        metrics["test_raw_ece"],
        metrics["test_ece"],
        conf.calibration,
    )
    reference = assessment.reference_scores.reset_index(drop=True)
    test_grades: list[dict[str, Any]] = []
    if grading is not None:
        pds = reference["pd"].to_numpy()
        reference = reference.assign(
            grade=grades_of(pds, grading), decision=decisions_of(pds, grading)
        )
        # The promotion gate's initial figures: per grade of the master scale, on the test split.
        scale = [band.grade for band in grading.master_scale]
        rows = by_grade(reference["grade"], pds, splits.test["label"].to_numpy(), scale)
        test_grades = [dataclasses.asdict(row) for row in rows]
    kept = [c for c in slice_columns if c in splits.test]
    for column in kept:
        reference[column] = splits.test[column].to_numpy()
    baseline = build_baseline(
        reference,
        source=f"test split of {data.table} version {data.version}",
        slice_columns=tuple(kept),
    )
    return assessment, baseline, test_grades


def prepare_outputs(
    spark: SparkSession,
    output: Path,
    registry_table: str | None,
    model_version: str | None = None,
    aliases_table: str | None = None,
    alias: str | None = None,
    first_champion: bool = False,
) -> str | None:
    """Before any training: the registry and the aliases table (and their database) exist,
    created if missing, the model's parent directory is writable, a named ``model_version`` is
    not published yet, and ``alias`` may be set. A bad location fails here, not after the
    training. Returns the alias the model will get if published: ``alias``, by default
    challenger; champion only for a model that has none yet (a bootstrap, recorded as such),
    which ``first_champion`` asks for when there is none."""
    if model_version is not None and (versions_dir(output.absolute()) / model_version).exists():
        raise OutputError(
            f"model version {model_version!r} is already published in "
            f"{versions_dir(output.absolute())}; a published version is never replaced"
        )
    if registry_table:
        ensure_registry(spark, registry_table)
    chosen = None
    if alias is not None and not aliases.ALIAS.fullmatch(alias):
        raise OutputError(f"alias {alias!r}: lower-case letters, digits, _ and - (e.g. challenger)")
    if aliases_table and not aliases.NAME.fullmatch(output.name):
        raise OutputError(f"model name {output.name!r} (the name of --output) is not a plain name")
    if aliases_table:
        ensure_aliases(spark, aliases_table)
        taken = aliases.current(spark, aliases_table, output.name)
        chosen = alias or aliases.CHALLENGER
        if first_champion and alias is None and aliases.CHAMPION not in taken:
            chosen = aliases.CHAMPION
        if chosen == aliases.CHAMPION and aliases.CHAMPION in taken:
            raise OutputError(
                f"model {output.name} has a champion ({taken[aliases.CHAMPION].model_version}): "
                "a version becomes champion only through the promotion gate (jobs/promote.py)"
            )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".riskudf-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"model output {output}: cannot write to {output.parent} ({exc})"
        ) from None
    return chosen


class OutputError(RuntimeError):
    """An output location of the training job cannot be written."""


def selection_of(metrics: dict[str, float], target: str) -> dict[str, Any]:
    """The transformer against TF-IDF + logistic regression, both fitted on train, on the split
    that chose nothing: calibration (raw PDs: a monotone calibration keeps their ranking). The
    validation split chose the epoch and the candidate, so it flatters the transformer; it is
    used only where there is no calibration split (grade models, calibration none)."""
    if target == "grade":
        key, theirs_key = "validation_macro_auc", "tfidf_validation_macro_auc"
    elif "calibration_raw_auc" in metrics:
        key, theirs_key = "calibration_raw_auc", "tfidf_calibration_auc"
    else:
        key, theirs_key = "validation_raw_auc", "tfidf_validation_auc"
    mine, theirs = metrics[key], metrics[theirs_key]
    return {
        "criterion": key,
        "transformer": mine,
        "benchmark": theirs,
        "verdict": "benchmark_better" if theirs > mine else "transformer_better",
    }


def reference_figures(splits: Splits) -> dict[str, float]:
    """AUC of the table's reference PD column on the validation and test splits."""
    from sklearn.metrics import roc_auc_score

    figures = {}
    for name in ("validation", "test"):
        part = getattr(splits, name)
        if "reference_pd" not in part:
            continue
        known = part[part["reference_pd"].notna()]
        if known["label"].nunique() == 2:
            figures[f"reference_pd_{name}_auc"] = float(
                roc_auc_score(known["label"], known["reference_pd"])
            )
            figures[f"reference_pd_{name}_rows"] = float(len(known))
    return figures


def cross_fits(conf: TrainingConf) -> bool:
    """Whether a probe's calibration is cross-fitted over the train and calibration splits: a
    calibrated PD on a stratified split (a time split keeps its newest-but-test calibration
    split, nearest the test period)."""
    return conf.calibration != "none" and conf.target == "default" and conf.data.split != "time"


def train_candidates(
    spark: SparkSession | None,
    splits: Splits,
    conf: TrainingConf,
    *,
    backbone: Path,
    events: Path | None,
) -> tuple[FineTuned, TrainingConf, list[dict[str, Any]]]:
    """Train each candidate of ``conf`` (or ``conf`` alone) on the train split; the one with the
    best validation AUC (early stopping's own figure), its conf, and every candidate's figures."""
    best: tuple[FineTuned, TrainingConf, int] | None = None
    results: list[dict[str, Any]] = []
    named = conf.candidate_confs()
    for name, candidate in named:
        logs = None if events is None else (events if len(named) == 1 else events / name)
        with tempfile.TemporaryDirectory(prefix="riskudf-train-") as work:
            if candidate.method == "probe":  # one convex fit in the driver: no curves
                logs = None
                tuned = fit_probe(
                    splits.train,
                    splits.validation,
                    candidate,
                    backbone=backbone,
                    calibration=splits.calibration if cross_fits(candidate) else None,
                )
            elif candidate.processes:  # TorchDistributor: no TensorBoard events (docs/training.md)
                assert spark is not None
                logs = None
                tuned = fine_tune_distributed(
                    spark,
                    splits.train,
                    splits.validation,
                    candidate,
                    backbone=backbone,
                    work_dir=Path(work),
                )
            else:
                tuned = fine_tune(
                    splits.train,
                    splits.validation,
                    candidate,
                    backbone=backbone,
                    work_dir=Path(work),
                    tensorboard_dir=logs,
                )
        results.append(
            {
                "name": name,
                "method": candidate.method,
                "learning_rate": None if candidate.method == "probe" else candidate.learning_rate,
                **({"strength": strength_of(tuned)} if candidate.method == "probe" else {}),
                "epochs_run": tuned.epochs_run,
                "seconds": round(sum(tuned.seconds_per_epoch), 1),
                "validation_auc": tuned.best_validation_auc,
                "tensorboard": str(logs) if logs is not None else None,
            }
        )
        log.info("candidate %s: validation AUC %.4f", name, tuned.best_validation_auc)
        if best is None or tuned.best_validation_auc > best[0].best_validation_auc:
            best = (tuned, candidate, len(results) - 1)
    assert best is not None
    for index, result in enumerate(results):
        result["chosen"] = index == best[2]
    return best[0], best[1], results


def tensorboard_dir(output: Path) -> Path:
    """Where this run's TensorBoard event files go: beside the model directory, one folder per
    run (``tensorboard --logdir models/demo.tensorboard``)."""
    return (
        output.with_name(f"{output.name}.tensorboard") / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    )


def charts_of(history: list[dict[str, float]], curve: list[dict[str, float]]) -> dict[str, str]:
    """The model card's SVG drawings, by file name."""
    # Per-epoch curves; a linear probe has none (its history is the regularisation grid).
    epochs = [row for row in history if "epoch" in row]
    charts = {"training_curves.svg": training_curves(epochs)} if epochs else {}
    if curve:
        charts["calibration_curve.svg"] = calibration_curve(curve)
    return charts


@dataclass(frozen=True)
class Parent:
    """The fp32 model's assessment, and how long scoring its evaluation splits took."""

    assessment: Assessment
    seconds: float


def agreement(parent: pd.DataFrame, variant: pd.DataFrame, grading: GradingConf) -> dict:
    """Shares of the test split whose grade and decision are the same under both models, and
    the largest PD difference."""
    a, b = parent["pd"].to_numpy(), variant["pd"].to_numpy()
    same_grade = np.array(grades_of(a, grading)) == np.array(grades_of(b, grading))
    same_decision = np.array(decisions_of(a, grading)) == np.array(decisions_of(b, grading))
    return {
        "grade_agreement": float(same_grade.mean()),
        "decision_agreement": float(same_decision.mean()),
        "max_abs_pd_difference": float(np.abs(a - b).max()),
    }


INT8_CALIBRATION_DOCUMENTS = 256


def int8_model(tuned: FineTuned, train: pd.DataFrame, conf: TrainingConf) -> Any:
    """A copy of the fp32 model with int8 layers, their input scales observed while scoring up
    to 256 training documents (seeded draw) through the scoring path."""
    part = train.sample(n=min(len(train), INT8_CALIBRATION_DOCUMENTS), random_state=conf.seed)

    def calibrate(model: Any) -> None:
        score_texts(
            tuned.tokenizer,
            model,
            part["text"].tolist(),
            max_length=conf.max_length,
            chunking=chunking_of(conf) or None,
            features=tuned.features or None,
            frame=part if tuned.features else None,
        )

    return quantize(copy.deepcopy(tuned.model), calibrate)


def publish_int8(
    tuned: FineTuned,
    parent: TrainedModel,
    fp32: Parent,
    splits: Splits,
    data: TrainingData,
    conf: TrainingConf,
    *,
    grading: GradingConf,
    slice_columns: tuple[str, ...],
    redaction: RedactionConf,
    output: Path,
    training: dict[str, Any],
    benchmark: dict[str, float],
) -> TrainedModel:
    """The int8 version of a published PD model: quantised, calibrated on its own outputs,
    evaluated on the same splits, with its own robustness report and model card (beside its
    fp32 parent's figures); published as ``<parent version>-int8``, no alias, the link left
    on the parent."""
    import torch

    model = int8_model(tuned, splits.train, conf)
    int8 = dataclasses.replace(tuned, model=model, cross_fit=None)  # the out-of-fold PDs are fp32's
    started = time.perf_counter()
    assessment, baseline, test_grades = _assess_pd_model(
        int8,
        splits,
        conf,
        data,
        grading=grading,
        slice_columns=slice_columns,
        calibration=int8_calibration(fp32.assessment.calibration),
    )
    seconds = time.perf_counter() - started
    scored = sum(len(part) for name, part in splits.parts().items() if name != "train")
    mine, theirs = assessment.metrics, fp32.assessment.metrics
    comparison = {
        "parent_version": parent.manifest.model_version,
        "test_auc": mine["test_auc"],
        "parent_test_auc": theirs["test_auc"],
        "test_ece": mine["test_ece"],
        "parent_test_ece": theirs["test_ece"],
        "docs_per_second": scored / seconds,
        "parent_docs_per_second": scored / fp32.seconds,
        **agreement(fp32.assessment.reference_scores, assessment.reference_scores, grading),
    }
    log.info(
        "int8 version: test AUC %.4f (fp32 %.4f), ECE %.4f (fp32 %.4f), grades agree on %.1f %%, "
        "%.1f docs/s against %.1f",
        comparison["test_auc"],
        comparison["parent_test_auc"],
        comparison["test_ece"],
        comparison["parent_test_ece"],
        100 * comparison["grade_agreement"],
        comparison["docs_per_second"],
        comparison["parent_docs_per_second"],
    )
    report = None
    if conf.robustness.enabled:
        report = robustness_of(
            tuned.tokenizer,
            model,
            splits,
            data,
            conf,
            calibration=assessment.calibration,
            grading=grading,
            redaction=redaction,
            features=tuned.features,
        )
    return publish_model(
        tuned.tokenizer,
        model,
        output,
        backbone=parent.manifest.backbone,
        conf=conf,
        training_table=data.table,
        training_table_version=data.version,
        metrics={**mine, **benchmark, **reference_figures(splits)},
        calibration=assessment.calibration,
        model_version=f"{parent.manifest.model_version}-int8",
        baseline=baseline,
        training={
            **training,
            "test_by_grade": test_grades,
            "calibration_curve": assessment.calibration_curve,
            "robustness": report,
            "int8": comparison,
            "parent_model": parent.manifest.model_version,
        },
        model_card=model_card,
        features=tuned.features,
        redaction=rules_record(redaction),
        charts=charts_of(tuned.history, assessment.calibration_curve),
        point=False,
        quantization={
            "method": METHOD,
            "engine": str(torch.backends.quantized.engine),
            "parent_version": parent.manifest.model_version,
        },
    )


def record_version(
    spark: SparkSession,
    version: TrainedModel,
    name: str,
    registry_table: str | None,
    robustness_table: str | None,
) -> None:
    """A published version's registry row and robustness rows."""
    if registry_table:
        register_model(spark, registry_table, version.manifest, model_dir=str(version.output))
    report = version.manifest.training.get("robustness")
    if robustness_table and report:
        robustness.write_report(
            spark, robustness_table, name, version.manifest.model_version, report
        )


def version_splits(
    spark: SparkSession,
    manifest: Manifest,
    *,
    redaction: RedactionConf,
    robustness_conf: RobustnessConf,
    slice_columns: tuple[str, ...] = (),
) -> tuple[TrainingConf, TrainingData, Splits]:
    """A published PD version's training conf (with this conf's robustness thresholds) and its
    splits, rebuilt from its training table at the Delta version its manifest records."""
    from riskudf.documents.redact import check_model_rules

    if manifest.positive_label < 0:
        raise ArtifactError(f"{manifest.model_version} is a grade classifier: no PD")
    check_model_rules(manifest, redaction)
    if "conf" not in manifest.training or manifest.training_table_version is None:
        raise ArtifactError(
            f"{manifest.model_version} records no training conf or table version: its splits "
            "cannot be rebuilt"
        )
    conf = TrainingConf.model_validate(manifest.training["conf"]).model_copy(
        update={"robustness": robustness_conf}
    )
    data, splits = load_and_split(
        spark,
        conf,
        keep=slice_columns,
        redaction=redaction,
        version=manifest.training_table_version,
    )
    return conf, data, splits


def robustness_of(
    tokenizer: Any,
    model: Any,
    splits: Splits,
    data: TrainingData,
    conf: TrainingConf,
    *,
    calibration: dict[str, Any],
    grading: GradingConf,
    redaction: RedactionConf,
    features: dict[str, Any] | None,
) -> dict[str, Any]:
    """The robustness report of a model on its test split (conf.robustness' thresholds)."""
    return robustness.assess(
        tokenizer,
        model,
        splits.test,
        calibration=calibration,
        grading=grading,
        conf=conf.robustness,
        redaction=redaction,
        max_length=conf.max_length,
        chunking=chunking_of(conf),
        features=features,
        source=f"test split of {data.table} version {data.version}",
    )


def quantize_version(
    spark: SparkSession,
    model_dir: Path,
    *,
    grading: GradingConf,
    redaction: RedactionConf,
    robustness_conf: RobustnessConf,
    slice_columns: tuple[str, ...] = (),
    registry_table: str | None = None,
    robustness_table: str | None = None,
) -> TrainedModel:
    """The int8 version of a published fp32 version (``jobs/quantize.py``): its splits rebuilt
    from its training table at the recorded Delta version, the fp32 model assessed again on
    them (its figures and speed beside the int8 version's), then as ``training.quantize``."""
    from riskudf.model.load import load_artifact

    manifest, tokenizer, model = load_artifact(model_dir)
    if manifest.quantization:
        raise ArtifactError(f"{manifest.model_version} is an int8 version already")
    conf, data, splits = version_splits(
        spark,
        manifest,
        redaction=redaction,
        robustness_conf=robustness_conf,
        slice_columns=slice_columns,
    )
    tuned = FineTuned(
        tokenizer,
        model,
        0,
        0,
        int(manifest.training.get("epochs_run") or 0),
        float(manifest.metrics.get("validation_auc", float("nan"))),
        [],
        list(manifest.training.get("history") or []),
        features=manifest.features,
    )
    started = time.perf_counter()
    # The published map, as it is: the figures describe the version as it scores.
    assessment, _, _ = _assess_pd_model(
        tuned,
        splits,
        conf,
        data,
        grading=grading,
        slice_columns=slice_columns,
        calibration=dict(manifest.calibration),
    )
    seconds = time.perf_counter() - started
    parent = TrainedModel(model_dir, manifest)
    output = model_dir
    if model_dir.parent.name.endswith(".versions"):
        output = model_dir.parent.with_name(model_dir.parent.name.removesuffix(".versions"))
    benchmark = {k: v for k, v in manifest.metrics.items() if k.startswith("tfidf_")}
    variant = publish_int8(
        tuned,
        parent,
        Parent(assessment, seconds),
        splits,
        data,
        conf,
        grading=grading,
        slice_columns=slice_columns,
        redaction=redaction,
        output=output,
        training=dict(manifest.training),
        benchmark=benchmark,
    )
    record_version(spark, variant, output.name, registry_table, robustness_table)
    return variant


def int8_version(*args: Any, **kw: Any) -> TrainedModel | None:
    """publish_int8, or None with the reason logged: the fp32 version is published and has its
    alias already, and an int8 version that fails is one not made."""
    try:
        return publish_int8(*args, **kw)
    except Exception as exc:  # any failure of the optional step
        log.error("the int8 version was not published: %s", safe_message(exc))
        return None


# Long on purpose: the training steps in order, each one a named call.
def train_model(
    spark: SparkSession,
    conf: TrainingConf,
    *,
    output: Path,
    model_version: str | None = None,
    grading: GradingConf | None = None,
    slice_columns: tuple[str, ...] = (),
    registry_table: str | None = None,
    redaction: RedactionConf | None = None,
    aliases_table: str | None = None,
    alias: str | None = None,
    first_champion: bool = False,
    changed_by: str = "training job",
    robustness_table: str | None = None,
) -> TrainedModel:
    """Fine-tune the configured backbone on the configured Delta table and publish the model.

    The model carries a monitoring baseline of its test split: PDs, document statistics,
    grades and decisions on ``grading`` when given, sliced by the ``slice_columns`` that the
    training table has. Test metrics use grading's review and decline thresholds.
    Every model lands in its own version directory (``<output>.versions/<model_version>``),
    never replaced, and ``output`` links to the newest published one. When TF-IDF + logistic
    regression beats the transformer, the link stays where it was (the model is set aside),
    unless ``conf.publish_if_benchmark_wins``; the registry row and the model card say which.
    """
    backbone = Path(conf.backbone) if conf.backbone else default_backbone_dir()
    redaction = redaction if redaction is not None else RedactionConf()
    chosen = prepare_outputs(
        spark, output, registry_table, model_version, aliases_table, alias, first_champion
    )
    if robustness_table:
        robustness.ensure_report_table(spark, robustness_table)
    data, splits = load_and_split(spark, conf, keep=slice_columns, redaction=redaction)
    events: Path | None = tensorboard_dir(output)
    tuned, conf, candidates = train_candidates(
        spark, splits, conf, backbone=backbone, events=events
    )
    if all(c["tensorboard"] is None for c in candidates):
        events = None
    benchmark = tfidf_benchmark(splits, seed=conf.seed, balanced=conf.imbalance != "none")
    if conf.target == "grade":
        assessment = assess_grades(
            tuned.tokenizer, tuned.model, splits, conf, features=tuned.features
        )
        metrics = {**assessment.metrics, **benchmark}
        log.info(
            "test macro AUC %.4f (TF-IDF + logistic regression %.4f), accuracy %.4f, "
            "quadratic kappa %.4f",
            metrics["test_macro_auc"],
            metrics["tfidf_test_macro_auc"],
            metrics["test_accuracy"],
            metrics["test_quadratic_kappa"],
        )
        baseline = None  # monitoring's baseline describes PDs; a grade model has none
        test_grades: list[dict[str, Any]] = []
    else:
        started = time.perf_counter()
        assessment, baseline, test_grades = _assess_pd_model(
            tuned, splits, conf, data, grading=grading, slice_columns=slice_columns
        )
        assessed_in = time.perf_counter() - started
        metrics = {**assessment.metrics, **benchmark, **reference_figures(splits)}
    report = None
    if conf.target == "default" and grading is not None and conf.robustness.enabled:
        report = robustness_of(
            tuned.tokenizer,
            tuned.model,
            splits,
            data,
            conf,
            calibration=assessment.calibration,
            grading=grading,
            redaction=redaction,
            features=tuned.features,
        )
        log.info("robustness: %s", robustness_line(report))
    selection = selection_of(metrics, conf.target)
    benchmark_won = selection["verdict"] == "benchmark_better"
    published = not benchmark_won or conf.publish_if_benchmark_wins
    selection["published"] = published
    if benchmark_won:
        log.error(
            "THE BENCHMARK WINS: TF-IDF + logistic regression %s %.4f against the transformer's "
            "%.4f; %s",
            selection["criterion"],
            selection["benchmark"],
            selection["transformer"],
            "publishing the transformer anyway (publish_if_benchmark_wins)"
            if published
            else f"the transformer is set aside in {versions_dir(output.absolute())}, and "
            f"{output} is left as it was",
        )
    training = {
        "method": conf.method,
        "trainable_parameters": tuned.trainable_parameters,
        "total_parameters": tuned.total_parameters,
        "target": conf.target,
        "epochs_run": tuned.epochs_run,
        "processes": tuned.world_size,
        "seconds_per_epoch": tuned.seconds_per_epoch,
        "history": tuned.history,
        "imbalance": conf.imbalance,
        "split": conf.data.split,
        "split_rows": {name: len(part) for name, part in splits.parts().items()},
        "dropped_in_gaps": splits.dropped_in_gaps,
        "selection": selection,
        "tensorboard": str(events) if events is not None else None,
        "candidates": candidates,
        "calibration_curve": assessment.calibration_curve,
        "parent_model": previous_version(output),
        "conf": conf.model_dump(mode="json"),
        "redactions": data.redactions,
        "test_by_grade": test_grades,
        "robustness": report,
    }
    trained = publish_model(
        tuned.tokenizer,
        tuned.model,
        output,
        backbone=str(conf.backbone or f"{backbone.parent.name} (packaged)"),
        conf=conf,
        training_table=data.table,
        training_table_version=data.version,
        metrics=metrics,
        calibration=assessment.calibration,
        model_version=model_version,
        baseline=baseline,
        training=training,
        model_card=model_card,
        features=tuned.features,
        redaction=rules_record(redaction),
        charts=charts_of(tuned.history, assessment.calibration_curve),
        point=published,
    )
    if registry_table:
        register_model(
            spark,
            registry_table,
            trained.manifest,
            model_dir=str(trained.output),
            published=published,
        )
    if robustness_table and report is not None:
        robustness.write_report(
            spark, robustness_table, output.name, trained.manifest.model_version, report
        )
    if aliases_table and chosen and published:
        if chosen == aliases.CHAMPION and aliases.CHAMPION in aliases.current(
            spark, aliases_table, output.name
        ):
            log.warning(
                "model %s got a champion while this version trained: it is a challenger",
                output.name,
            )
            chosen = aliases.CHALLENGER
        aliases.set_alias(
            spark,
            aliases_table,
            name=output.name,
            alias=chosen,
            version=trained.manifest.model_version,
            model_dir=trained.output,
            by=changed_by,
            reason="first champion, set by the training job without the gate"
            if chosen == aliases.CHAMPION
            else "trained; a challenger until promoted through the gate",
        )
    variant = None
    if conf.quantize and published and conf.target == "default" and grading is not None:
        variant = int8_version(
            tuned,
            trained,
            Parent(assessment, assessed_in),
            splits,
            data,
            conf,
            grading=grading,
            slice_columns=slice_columns,
            redaction=redaction,
            output=output,
            training=training,
            benchmark=benchmark,
        )
    if variant is not None:
        record_version(spark, variant, output.name, registry_table, robustness_table)
    return TrainedModel(
        trained.output, trained.manifest, published, chosen if published else None, variant
    )
