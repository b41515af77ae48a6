"""Structured features beside the text: the spec fitted on the training split, and the one
encoding that training and scoring share.

A fused model (riskudf.model.fused) reads a float row per document beside its pooled text
embedding: for each numeric column its value standardised with the training split's mean and
standard deviation (0 when null) and a missing indicator; for each categorical column a one-hot
over the training split's categories plus one "other" slot, which takes unseen values and nulls.
The spec travels in the manifest (``features``), so scoring encodes exactly as training did.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

Pooling = Literal["mean", "cls", "lines", "paragraphs"]


class FeatureError(ValueError):
    """A feature column is missing, or a manifest's feature spec is malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """The fused head's inputs beside the pooled text; no columns: a text-only model that pools
    its tokens (the linear probe)."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    categorical: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]  # per categorical column, from the training split
    # How the encoder's tokens become the text embedding: their mean, the [CLS] token, or the
    # mean over the document's line (or paragraph) windows of each window's token mean (a
    # segment longer than the window is several windows; windows.py).
    pooling: Pooling = "mean"

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def width(self) -> int:
        """Floats per row: value and missing indicator per numeric, categories + other."""
        return 2 * len(self.numeric) + sum(len(c) + 1 for c in self.categories)

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if len(self.means) != len(self.numeric) or len(self.stds) != len(self.numeric):
            raise ValueError("one mean and one std per numeric column")
        if len(self.categories) != len(self.categorical):
            raise ValueError("one list of categories per categorical column")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"repeated columns {self.columns}")
        if any(not np.isfinite(s) or s <= 0 for s in self.stds):
            raise ValueError("every std must be positive")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``features``."""
        return {
            "numeric": [
                {"name": n, "mean": m, "std": s}
                for n, m, s in zip(self.numeric, self.means, self.stds, strict=True)
            ],
            "categorical": [
                {"name": n, "categories": list(c)}
                for n, c in zip(self.categorical, self.categories, strict=True)
            ],
            "pooling": self.pooling,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """The spec of a manifest's ``features`` (the shape ``to_dict`` writes)."""
        try:
            document = _FeaturesDocument.model_validate(data)
            return cls(
                numeric=tuple(f.name for f in document.numeric),
                means=tuple(f.mean for f in document.numeric),
                stds=tuple(f.std for f in document.numeric),
                categorical=tuple(f.name for f in document.categorical),
                categories=tuple(f.categories for f in document.categorical),
                pooling=document.pooling,
            )
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(part) for part in ("features", *err["loc"]))
                if err["type"] == "extra_forbidden":
                    problems.append(f"unknown field {field}")
                elif err["type"] == "missing":
                    problems.append(f"missing field {field}")
                else:
                    problems.append(f"field {field}: {err['msg'].removeprefix('Value error, ')}")
            raise FeatureError(f"manifest features: {'; '.join(problems)}") from None


class _NumericFeature(_Strict):
    name: str
    mean: float
    std: float


class _CategoricalFeature(_Strict):
    name: str
    categories: tuple[str, ...]


class _FeaturesDocument(_Strict):
    """A manifest's ``features`` as written: ``{numeric: [...], categorical: [...], pooling}``."""

    numeric: tuple[_NumericFeature, ...] = ()
    categorical: tuple[_CategoricalFeature, ...] = ()
    pooling: Pooling = "mean"


def feature_spec_of(data: Mapping[str, Any] | None) -> FeatureSpec | None:
    """The spec of a manifest's ``features`` (empty: a text-only model, None)."""
    return FeatureSpec.from_dict(data) if data else None


def require_columns(present: Sequence[str], needed: Sequence[str], where: str) -> None:
    """Every ``needed`` column is among ``present``, or a FeatureError names the missing ones."""
    missing = [c for c in needed if c not in present]
    if missing:
        raise FeatureError(f"{where}: missing feature columns {missing} that the model needs")


def _numbers(values: pd.Series) -> np.ndarray:
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out[~np.isfinite(out)] = np.nan
    return out


def _labels(values: pd.Series) -> pd.Series:
    """Categorical values as strings, nulls as None."""
    return (
        values.astype(object)
        .where(values.notna(), None)
        .map(lambda v: None if v is None else str(v))
    )


def fit_features(
    train: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    pooling: Pooling = "mean",
) -> FeatureSpec:
    """Means, standard deviations (ddof 0) and categories of the training split's columns.

    Nulls are left out of the statistics; a constant or all-null column gets std 1.
    """
    require_columns(list(train.columns), [*numeric, *categorical], "training split")
    means, stds = [], []
    for column in numeric:
        values = _numbers(train[column])
        present = values[~np.isnan(values)]
        mean = float(present.mean()) if present.size else 0.0
        std = float(present.std()) if present.size else 0.0
        means.append(mean)
        stds.append(std if std > 0 else 1.0)
    categories = tuple(
        tuple(sorted({v for v in _labels(train[column]) if v is not None}))
        for column in categorical
    )
    return FeatureSpec(
        numeric=tuple(numeric),
        means=tuple(means),
        stds=tuple(stds),
        categorical=tuple(categorical),
        categories=categories,
        pooling=pooling,
    )


def no_columns(pooling: Pooling = "mean") -> FeatureSpec:
    """The spec of a text-only fused model: the pooled text alone."""
    return FeatureSpec(
        numeric=(), means=(), stds=(), categorical=(), categories=(), pooling=pooling
    )


def encode_features(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The float32 matrix (rows of ``frame`` x spec.width) that the fused head reads."""
    require_columns(list(frame.columns), spec.columns, "feature frame")
    out = np.zeros((len(frame), spec.width), dtype=np.float32)
    at = 0
    for column, mean, std in zip(spec.numeric, spec.means, spec.stds, strict=True):
        values = _numbers(frame[column])
        missing = np.isnan(values)
        out[:, at] = np.where(missing, 0.0, (values - mean) / std)
        out[:, at + 1] = missing
        at += 2
    for column, categories in zip(spec.categorical, spec.categories, strict=True):
        slot = {name: i for i, name in enumerate(categories)}
        other = len(categories)
        index = np.fromiter(
            (other if v is None else slot.get(v, other) for v in _labels(frame[column])),
            dtype=np.int64,
            count=len(frame),
        )
        out[np.arange(len(frame)), at + index] = 1.0
        at += other + 1
    return out
