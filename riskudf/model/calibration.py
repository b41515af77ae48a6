"""Platt calibration of PDs through their log-odds: fitted at training, applied at scoring."""

from __future__ import annotations

import numpy as np

IDENTITY = {"slope": 1.0, "intercept": 0.0}


def log_odds(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return np.asarray(np.log(clipped) - np.log1p(-clipped))


def calibrate(p: np.ndarray, *, slope: float, intercept: float) -> np.ndarray:
    """pd = sigmoid(slope * logit(p) + intercept)."""
    return np.asarray(1.0 / (1.0 + np.exp(-(slope * log_odds(p) + intercept))))


def fit_platt(pds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Slope and intercept of a logistic fit of the labels on the PDs' log-odds."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6).fit(log_odds(pds).reshape(-1, 1), labels)
    return {"slope": float(fit.coef_[0][0]), "intercept": float(fit.intercept_[0])}
