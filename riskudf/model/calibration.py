"""Calibration of PDs: fitted on the validation split at training, applied at scoring.

A manifest's ``calibration`` is one of
- ``{"method": "platt", "slope": a, "intercept": b}``: pd = sigmoid(a * logit(p) + b);
  manifests from before issue 9 hold only slope and intercept, and mean this;
- ``{"method": "temperature", "temperature": t}``: pd = sigmoid(logit(p) / t);
- ``{"method": "isotonic", "x": [...], "y": [...]}``: the step points of an isotonic fit,
  interpolated linearly and clipped at the ends (what scikit-learn's predict does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

IDENTITY: dict[str, Any] = {"method": "platt", "slope": 1.0, "intercept": 0.0}  # legacy
NONE: dict[str, Any] = {"method": "none"}  # what an uncalibrated model records
METHODS = ("none", "temperature", "platt", "isotonic")


class CalibrationError(ValueError):
    """A manifest's calibration names an unknown method or lacks its parameters."""


def log_odds(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return np.asarray(np.log(clipped) - np.log1p(-clipped))


def calibrate(p: np.ndarray, *, slope: float, intercept: float) -> np.ndarray:
    """pd = sigmoid(slope * logit(p) + intercept)."""
    return np.asarray(1.0 / (1.0 + np.exp(-(slope * log_odds(p) + intercept))))


def apply_calibration(p: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """The calibrated PDs of raw probabilities ``p`` under a manifest's ``calibration``."""
    method = calibration.get("method", "platt")
    try:
        if method == "none":
            return np.asarray(p, dtype=np.float64)
        if method == "platt":
            return calibrate(
                p, slope=float(calibration["slope"]), intercept=float(calibration["intercept"])
            )
        if method == "temperature":
            return calibrate(p, slope=1.0 / float(calibration["temperature"]), intercept=0.0)
        if method == "isotonic":
            x = np.asarray(calibration["x"], dtype=np.float64)
            y = np.asarray(calibration["y"], dtype=np.float64)
            return np.asarray(np.interp(p, x, y))
    except KeyError as exc:
        raise CalibrationError(f"calibration {method!r} lacks {exc}") from None
    raise CalibrationError(f"unknown calibration method {method!r}; known: {METHODS}")


def fit_platt(pds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Slope and intercept of a logistic fit of the labels on the PDs' log-odds."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6).fit(log_odds(pds).reshape(-1, 1), labels)
    return {"slope": float(fit.coef_[0][0]), "intercept": float(fit.intercept_[0])}


def fit_temperature(pds: np.ndarray, labels: np.ndarray) -> float:
    """The temperature t minimising the log-loss of sigmoid(logit(p) / t).

    scikit-learn 1.7 has no temperature scaling (CalibratedClassifierCV gains it in 1.8), so
    this is a one-parameter scipy minimisation over log t.
    """
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    z = log_odds(pds)

    def loss(log_t: float) -> float:
        return float(log_loss(labels, 1.0 / (1.0 + np.exp(-z / np.exp(log_t))), labels=[0, 1]))

    result = minimize_scalar(loss, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(result.x))


def fit_isotonic(pds: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """The step points of scikit-learn's isotonic regression of the labels on the PDs."""
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(pds, labels)
    return {
        "x": [float(v) for v in fit.X_thresholds_],
        "y": [float(v) for v in fit.y_thresholds_],
    }


def fit_calibration(method: str, pds: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit ``method`` (one of METHODS) on validation PDs and labels; the manifest's dict.

    A Platt fit with a non-positive slope would reverse the ranking: the PDs stay uncalibrated,
    recorded as method none with the ``fallback`` reason.
    """
    if method == "none":
        return dict(NONE)
    if method == "platt":
        fitted = fit_platt(pds, labels)
        if fitted["slope"] <= 0:
            return {**NONE, "fallback": "platt slope not positive"}
        return {"method": "platt", **fitted}
    if method == "temperature":
        return {"method": "temperature", "temperature": fit_temperature(pds, labels)}
    if method == "isotonic":
        return {"method": "isotonic", **fit_isotonic(pds, labels)}
    raise CalibrationError(f"unknown calibration method {method!r}; known: {METHODS}")
