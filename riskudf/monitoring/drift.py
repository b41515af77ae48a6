"""Drift of one run's histograms against a reference (the model baseline or the previous run)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskudf.monitoring.baseline import ColumnHistogram, Histograms
from riskudf.monitoring.metrics import (
    align,
    chi_squared,
    coarse_counts,
    decile_edges,
    js_distance,
    ks_error_bound,
    ks_two_sample,
    nan_to_none,
    psi,
    wasserstein,
)


@dataclass(frozen=True)
class Reference:
    drift_type: str  # BASELINE | CONSECUTIVE
    histograms: Histograms
    edges: dict[str, np.ndarray]  # fixed PSI edges per numeric column
    run_id: str | None = None
    as_of: dt.date | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class DriftRecord:
    drift_type: str
    reference_run_id: str | None
    reference_as_of_date: dt.date | None
    reference_model_version: str | None
    slice_key: str | None
    slice_value: str | None
    column_name: str
    data_type: str
    count: int
    reference_count: int
    count_delta: int
    avg_delta: float | None
    psi: float | None
    psi_bins: int | None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    ks_error_bound: float | None = None
    js_distance: float | None = None
    wasserstein_distance: float | None = None
    wasserstein_error_bound: float | None = None
    chi_squared_statistic: float | None = None
    chi_squared_pvalue: float | None = None


def psi_edges(reference: Histograms, fixed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PSI edges per numeric column: the fixed ones (baseline deciles) where given, else the
    deciles of the reference's whole-table histogram, shared by every slice."""
    edges = dict(fixed)
    for (slice_key, _, name), column in reference.items():
        if slice_key is None and column.numeric is not None and name not in edges:
            edges[name] = decile_edges(column.numeric)
    return edges


def compare(
    current: ColumnHistogram, reference: ColumnHistogram, edges: np.ndarray | None
) -> dict[str, Any]:
    """The drift metrics of one column of one slice, named as the DriftRecord fields."""
    out: dict[str, Any] = {
        "avg_delta": None,
        "psi": None,
        "psi_bins": None,
        "count": current.count,
        "reference_count": reference.count,
        "count_delta": current.count - reference.count,
    }
    if current.numeric is not None and reference.numeric is not None:
        cur, ref = current.numeric, reference.numeric
        out["data_type"] = "numeric"
        if cur.total == 0 or ref.total == 0:
            return out
        index, counts_cur, counts_ref = align(cur, ref)
        statistic, pvalue = ks_two_sample(counts_cur, counts_ref)
        bins = edges if edges is not None else decile_edges(ref)
        coarse_cur, coarse_ref = coarse_counts(cur, bins), coarse_counts(ref, bins)
        out |= {
            "avg_delta": cur.mean() - ref.mean(),
            "psi": psi(coarse_ref, coarse_cur),
            "psi_bins": len(bins) + 1,
            "ks_statistic": statistic,
            "ks_pvalue": pvalue,
            "ks_error_bound": ks_error_bound(cur.grid, counts_cur, counts_ref),
            "js_distance": js_distance(coarse_cur, coarse_ref),
            "wasserstein_distance": wasserstein(cur.grid, index, counts_cur, counts_ref),
            "wasserstein_error_bound": cur.grid.wasserstein_error_bound,
        }
        return out
    out["data_type"] = "categorical"
    cats_cur, cats_ref = current.categories or {}, reference.categories or {}
    names = sorted(set(cats_cur) | set(cats_ref))
    if not names or current.count == 0 or reference.count == 0:
        return out
    counts_cur = np.array([cats_cur.get(n, 0) for n in names], float)
    counts_ref = np.array([cats_ref.get(n, 0) for n in names], float)
    statistic, pvalue = chi_squared(counts_cur, counts_ref)
    out |= {
        "psi": psi(counts_ref, counts_cur),
        "psi_bins": len(names),
        "js_distance": js_distance(counts_cur, counts_ref),
        "chi_squared_statistic": statistic,
        "chi_squared_pvalue": pvalue,
    }
    return out


def drift_records(current: Histograms, reference: Reference) -> list[DriftRecord]:
    """One record per (slice, column) present in both the run and the reference."""
    edges = psi_edges(reference.histograms, reference.edges)
    records = []
    for key in sorted(current, key=_sort_key):
        if key not in reference.histograms:
            continue
        slice_key, slice_value, name = key
        metrics: dict[str, Any] = {
            k: nan_to_none(v) if isinstance(v, float) else v
            for k, v in compare(current[key], reference.histograms[key], edges.get(name)).items()
        }
        records.append(
            DriftRecord(
                drift_type=reference.drift_type,
                reference_run_id=reference.run_id,
                reference_as_of_date=reference.as_of,
                reference_model_version=reference.model_version,
                slice_key=slice_key,
                slice_value=slice_value,
                column_name=name,
                **metrics,
            )
        )
    return records


def _sort_key(key: tuple[str | None, str | None, str]) -> tuple[str, str, str]:
    return (key[0] or "", key[1] or "", key[2])
