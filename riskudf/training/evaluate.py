"""Evaluation metrics of PDs against 0/1 outcomes: pure numpy/scikit-learn helpers.

Every figure is a float keyed by a flat name, so that one dict goes to the manifest, the model
registry (map<string, double>) and the model card alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, confusion_matrix, log_loss, roc_auc_score, roc_curve

from riskudf.monitoring.metrics import gini


def expected_calibration_error(labels: np.ndarray, pds: np.ndarray, *, n_bins: int = 10) -> float:
    """ECE: the row-weighted mean |default rate - mean PD| over quantile bins of the PD.

    Equal-width bins would put every PD below 0.1 (most of a loan book) into one bin; quantile
    bins hold about len / n_bins rows each (ties stay in one bin). scikit-learn has
    calibration_curve(strategy="quantile") but no ECE.
    """
    labels = np.asarray(labels, dtype=np.float64)
    pds = np.asarray(pds, dtype=np.float64)
    bins = quantile_bins(pds, n_bins)
    total = 0.0
    for b in np.unique(bins):
        rows = bins == b
        total += rows.sum() * abs(labels[rows].mean() - pds[rows].mean())
    return float(total / len(labels))


def quantile_bins(pds: np.ndarray, n_bins: int) -> np.ndarray:
    """The quantile bin (0 .. n_bins - 1) of each PD: edges at the PDs' quantiles."""
    edges = np.unique(np.quantile(pds, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, pds, side="right")


def calibration_table(labels: np.ndarray, pds: np.ndarray, *, n_bins: int = 10) -> list[dict]:
    """Per quantile bin: rows, mean PD and default rate (the model card's calibration curve)."""
    labels = np.asarray(labels, dtype=np.float64)
    pds = np.asarray(pds, dtype=np.float64)
    bins = quantile_bins(pds, n_bins)
    return [
        {
            "rows": int((bins == b).sum()),
            "mean_pd": float(pds[bins == b].mean()),
            "default_rate": float(labels[bins == b].mean()),
        }
        for b in np.unique(bins)
    ]


def ks_statistic(labels: np.ndarray, pds: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the PD distributions of defaults and
    non-defaults, max(TPR - FPR) over thresholds."""
    fpr, tpr, _ = roc_curve(labels, pds)
    return float(np.max(tpr - fpr))


def confusion_at(
    labels: np.ndarray, pds: np.ndarray, threshold: float, name: str
) -> dict[str, float]:
    """Counts of flagged (pd >= threshold) against defaulted: ``{name}_tp`` and so on."""
    flagged = (np.asarray(pds) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, flagged, labels=[0, 1]).ravel()
    counts = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return {f"{name}_{kind}": float(count) for kind, count in counts.items()}


def calibration_metrics(labels: np.ndarray, pds: np.ndarray, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}brier": float(brier_score_loss(labels, pds)),
        f"{prefix}ece": expected_calibration_error(labels, pds),
        f"{prefix}log_loss": float(log_loss(labels, np.clip(pds, 1e-7, 1 - 1e-7), labels=[0, 1])),
    }


def evaluate_split(
    labels: np.ndarray,
    raw: np.ndarray,
    calibrated: np.ndarray,
    *,
    prefix: str,
    thresholds: dict[str, float] | None = None,
    segments: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """AUC, Gini, KS, Brier, ECE and log-loss of the calibrated PDs (Brier, ECE and log-loss
    of the raw ones too), confusion at each named threshold, AUC per segment.

    A segment with a single class has no AUC and is left out.
    """
    labels = np.asarray(labels, dtype=int)
    calibrated = np.asarray(calibrated, dtype=np.float64)
    auc = float(roc_auc_score(labels, calibrated))
    metrics = {
        f"{prefix}rows": float(len(labels)),
        f"{prefix}default_rate": float(labels.mean()),
        f"{prefix}auc": auc,
        f"{prefix}gini": gini(auc),
        f"{prefix}ks": ks_statistic(labels, calibrated),
        **calibration_metrics(labels, calibrated, prefix),
        **calibration_metrics(labels, np.asarray(raw, dtype=np.float64), f"{prefix}raw_"),
    }
    for name, threshold in (thresholds or {}).items():
        metrics.update(confusion_at(labels, calibrated, threshold, f"{prefix}{name}"))
    if segments is not None:
        values = np.asarray([str(s) for s in segments])
        for segment in sorted(set(values)):
            rows = values == segment
            if len(set(labels[rows])) == 2:
                metrics[f"{prefix}auc_segment={segment}"] = float(
                    roc_auc_score(labels[rows], calibrated[rows])
                )
    return metrics


def evaluate_grades(
    labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], *, prefix: str
) -> dict[str, float]:
    """A grade classifier's figures: accuracy, macro F1, quadratic weighted kappa (the grades
    are ordered), macro one-vs-rest AUC, log-loss, and the confusion counts
    ``{prefix}confusion_{true}_{predicted}``."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    labels = np.asarray(labels, dtype=int)
    ids = list(range(len(classes)))
    predicted = np.asarray(probs).argmax(axis=1)
    metrics = {
        f"{prefix}rows": float(len(labels)),
        f"{prefix}accuracy": float(accuracy_score(labels, predicted)),
        f"{prefix}macro_f1": float(f1_score(labels, predicted, labels=ids, average="macro")),
        f"{prefix}quadratic_kappa": float(
            cohen_kappa_score(labels, predicted, labels=ids, weights="quadratic")
        ),
        f"{prefix}macro_auc": float(
            roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=ids)
        ),
        f"{prefix}log_loss": float(log_loss(labels, probs, labels=ids)),
    }
    counts = confusion_matrix(labels, predicted, labels=ids)
    for i, true in enumerate(classes):
        for j, guess in enumerate(classes):
            metrics[f"{prefix}confusion_{true}_{guess}"] = float(counts[i, j])
    return metrics


@dataclass(frozen=True)
class GradeRow:
    grade: str
    n: int
    defaults: int
    pd_sum: float  # sum of the PDs: mean PD = pd_sum / n

    @property
    def mean_pd(self) -> float:
        return self.pd_sum / self.n if self.n else float("nan")


def by_grade(
    grades: Sequence[str], pds: np.ndarray, labels: np.ndarray, scale: Sequence[str]
) -> list[GradeRow]:
    """Per-grade counts of a scored, labelled sample, every grade of ``scale`` in its order
    (a grade without obligors gets n 0)."""
    grades_arr = np.asarray(grades, dtype=object)
    pds = np.asarray(pds, float)
    labels = np.asarray(labels, int)
    rows = []
    for grade in scale:
        mask = grades_arr == grade
        rows.append(
            GradeRow(grade, int(mask.sum()), int(labels[mask].sum()), float(pds[mask].sum()))
        )
    return rows
