"""The linear probe: the encoder as pretrained, its mean-pooled embedding (and the conf's feature
columns) read by an L2-regularised logistic regression (scikit-learn), the strength chosen on
the validation AUC. With a calibration split, the calibration is cross-fitted: out-of-fold PDs
over the train and calibration splits, by obligor (``cross_fit``).

On a few hundred defaults, fine-tuning 22M weights is noisy; a convex fit of one linear layer on
a sentence encoder's embedding is not. The fitted regression becomes the Linear head of a fused
classifier (riskudf.model.fused) with the standardisation folded into its weights, so the
published model is an encoder and a head like any fused model, and scores through the same path.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from riskudf.config import TrainingConf
from riskudf.documents.windows import SEGMENT_BREAKS
from riskudf.model.features import FeatureSpec, encode_features, fit_features, no_columns
from riskudf.training.finetune import CrossFit, FineTuned, label_map_of, parameter_counts

log = logging.getLogger(__name__)

# Inverse regularisation strengths tried, weakest last; the best validation AUC wins.
STRENGTHS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FOLDS = 5  # cross-fitting folds (fewer when fewer obligors default)


def embed(
    tokenizer: Any, model: Any, texts: list[str], *, max_length: int, batch_size: int = 32
) -> np.ndarray:
    """The fused model's pooled text embedding of each text (float64; length-sorted batches);
    pooling lines or paragraphs: the mean of the text's segment windows' embeddings, the windows
    cut by the scorer (so the head scores as it was fitted)."""
    import torch

    if model.spec.pooling in SEGMENT_BREAKS:
        return _segment_embeddings(tokenizer, model, texts, max_length, batch_size)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), int(model.config.hidden_size)), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            hidden = model.encoder(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            out[rows] = model.pool(hidden, batch["attention_mask"]).double().numpy()
    return out


def _segment_embeddings(
    tokenizer: Any, model: Any, texts: list[str], max_length: int, batch_size: int
) -> np.ndarray:
    import torch

    from riskudf.documents.windows import mean_rows
    from riskudf.scoring.scorer import Scorer, ScoringOptions, pad_batch

    options = ScoringOptions(max_length=max_length, token_budget=0, precision="fp32")
    scorer = Scorer(
        tokenizer,
        model,
        positive_label=1,
        device="cpu",
        options=options,
        features=model.spec.to_dict(),
    )
    prepared = scorer.prepare(texts)
    windows, owners = prepared.windows, prepared.owners
    assert owners is not None
    order = np.argsort([len(w) for w in windows], kind="stable")
    out = np.zeros((len(windows), int(model.config.hidden_size)), dtype=np.float64)
    size = 4 * batch_size  # segments are short
    with torch.inference_mode():
        for start in range(0, len(windows), size):
            rows = order[start : start + size]
            batch = pad_batch([windows[i] for i in rows], tokenizer.pad_token_id)
            hidden = model.encoder(**batch).last_hidden_state
            out[rows] = model.pool(hidden, batch["attention_mask"]).double().numpy()
    return mean_rows(out, owners, len(texts))


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    if probs.shape[1] > 2:
        return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    return float(roc_auc_score(labels, probs[:, 1]))


def head_weights(
    coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A scikit-learn logistic regression on standardised inputs as one Linear layer on the raw
    inputs, one logit per class: for two classes, class 0's logit is 0 and class 1's the
    regression's (softmax of the two is the regression's sigmoid)."""
    weight = coef / scale
    bias = intercept - weight @ mean
    if n_classes == 2:
        weight = np.vstack([np.zeros_like(weight[0]), weight[0]])
        bias = np.array([0.0, bias[0]])
    return weight, bias


def _regression(
    x: np.ndarray, y: np.ndarray, strength: float, weighting: str | None, seed: int
) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=strength, class_weight=weighting, max_iter=5000, random_state=seed
    ).fit(x, y)


def cross_fit(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    strength: float,
    weighting: str | None,
    seed: int,
    folds: int = FOLDS,
) -> CrossFit | None:
    """Each row's PD from the probe's regression (standardised on its own rows) fitted with the
    same strength without the rows of the row's group, in stratified group folds: PDs a
    calibration can be fitted on. None when fewer than two groups default."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(folds, len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0])))
    if k < 2:
        return None
    pds = np.zeros(len(y), dtype=np.float64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fit_rows, held in splitter.split(x, y, groups):
        mean, scale = x[fit_rows].mean(axis=0), x[fit_rows].std(axis=0)
        scale[scale == 0] = 1.0
        fitted = _regression((x[fit_rows] - mean) / scale, y[fit_rows], strength, weighting, seed)
        pds[held] = fitted.predict_proba((x[held] - mean) / scale)[:, 1]
    return CrossFit(pds=pds, labels=y.astype(int), folds=k)


def _groups(*frames: pd.DataFrame) -> np.ndarray:
    """The obligor of each row (column id), or one group per row."""
    if all("id" in frame for frame in frames):
        return pd.concat([frame["id"] for frame in frames]).astype(str).to_numpy()
    return np.arange(sum(len(frame) for frame in frames))


def fit_probe(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    conf: TrainingConf,
    *,
    backbone: Path,
    calibration: pd.DataFrame | None = None,
) -> FineTuned:
    """Fit the probe on ``train`` (columns text, label, and the conf's feature columns),
    choosing the regularisation on ``validation``; the fused model, on the CPU, in eval mode.
    With a ``calibration`` split (two classes), also the out-of-fold PDs over train and
    calibration at the chosen strength (``cross_fit``), by obligor."""
    import torch

    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder, load_tokenizer

    started = time.perf_counter()
    wanted = conf.data.features
    spec: FeatureSpec = no_columns(wanted.pooling)
    if wanted.columns:
        spec = fit_features(
            train, numeric=wanted.numeric, categorical=wanted.categorical, pooling=wanted.pooling
        )
    n_classes = len(label_map_of(conf))
    tokenizer = load_tokenizer(backbone)
    model = FusedClassifier(load_encoder(backbone), spec, n_classes).eval()
    model.encoder.requires_grad_(False)

    def inputs(frame: pd.DataFrame) -> np.ndarray:
        text = embed(tokenizer, model, frame["text"].tolist(), max_length=conf.max_length)
        return np.hstack([text, encode_features(frame, spec).astype(np.float64)])

    x_train, x_validation = inputs(train), inputs(validation)
    y_train = train["label"].astype(int).to_numpy()
    y_validation = validation["label"].astype(int).to_numpy()
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[scale == 0] = 1.0
    weighting = "balanced" if conf.imbalance == "class_weight" else None
    history: list[dict[str, float]] = []
    best: tuple[float, Any] | None = None
    for strength in STRENGTHS:
        fitted = _regression((x_train - mean) / scale, y_train, strength, weighting, conf.seed)
        auc = _auc(y_validation, fitted.predict_proba((x_validation - mean) / scale))
        history.append({"C": strength, "validation_auc": auc})
        log.info("probe C=%g: validation AUC %.4f", strength, auc)
        if best is None or auc > best[0]:
            best = (auc, fitted)
    assert best is not None
    weight, bias = head_weights(best[1].coef_, best[1].intercept_, mean, scale, n_classes)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(bias, dtype=model.head.bias.dtype))
    out_of_fold = None
    if calibration is not None and not calibration.empty and n_classes == 2:
        out_of_fold = cross_fit(
            np.vstack([x_train, inputs(calibration)]),
            np.concatenate([y_train, calibration["label"].astype(int).to_numpy()]),
            _groups(train, calibration),
            strength=best[1].C,
            weighting=weighting,
            seed=conf.seed,
        )
    seconds = time.perf_counter() - started
    log.info("probe fitted in %.1f s (C=%g)", seconds, best[1].C)
    _, total = parameter_counts(model)
    return FineTuned(
        tokenizer=tokenizer,
        model=model,
        trainable_parameters=int(weight.size + bias.size),
        total_parameters=total,
        epochs_run=1,
        best_validation_auc=best[0],
        seconds_per_epoch=[seconds],
        history=history,
        features=spec.to_dict(),
        cross_fit=out_of_fold,
    )


def strength_of(tuned: FineTuned) -> float:
    """The regularisation a fitted probe chose (the first best of its grid)."""
    best = max(tuned.history, key=lambda row: row["validation_auc"])
    return float(best["C"])
