"""The BASELINE reference saved with a model: fine histograms of the validation split's scores
and document statistics, written to ``baseline.json`` in the model directory (and checksummed in
its manifest like every other file).

Built at training time from a small pandas frame (the validation split is on the driver anyway);
read at monitoring time into the same histogram shape that Spark produces for a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskudf.monitoring.columns import (
    CATEGORICAL_COLUMNS,
    EMPTY_DOCUMENT_MAX_TOKENS,
    NULL_SLICE,
    NUMERIC_COLUMNS,
)
from riskudf.monitoring.metrics import Grid, Histogram, decile_edges

log = logging.getLogger(__name__)

BASELINE_NAME = "baseline.json"
BASELINE_FORMAT = "riskudf-baseline/1"

SliceKey = tuple[str | None, str | None]


@dataclass(frozen=True)
class ColumnHistogram:
    """One column of one slice: rows, nulls, and either fine bins or category counts."""

    rows: int
    nulls: int
    numeric: Histogram | None = None
    categories: dict[str, int] | None = None

    @property
    def count(self) -> int:
        """Non-null values."""
        return self.rows - self.nulls


# (slice_key, slice_value, column_name) -> histogram
Histograms = dict[tuple[str | None, str | None, str], ColumnHistogram]


@dataclass(frozen=True)
class Baseline:
    model_version: str | None
    source: str
    histograms: Histograms
    edges: dict[str, np.ndarray]  # coarse PSI edges per numeric column (reference deciles)


def _grid_json(grid: Grid) -> dict[str, Any]:
    return {"lo": grid.lo, "width": grid.width, "exact": grid.exact, "bins": grid.bins}


def _column_entry(values: pd.Series, name: str) -> dict[str, Any]:
    nulls = int(values.isna().sum())
    present = values.dropna()
    entry: dict[str, Any] = {"rows": len(values), "nulls": nulls}
    if name in NUMERIC_COLUMNS:
        grid = NUMERIC_COLUMNS[name]
        hist = Histogram.from_values(grid, present.to_numpy(dtype=np.float64))
        entry["grid"] = _grid_json(grid)
        entry["bins"] = {str(k): int(c) for k, c in zip(hist.index, hist.counts, strict=True)}
    else:
        as_text = present.map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else v)
        entry["categories"] = {str(k): int(c) for k, c in as_text.value_counts().items()}
    return entry


def build_baseline(
    frame: pd.DataFrame,
    *,
    source: str,
    slice_columns: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The baseline document of a scored validation frame.

    ``frame`` holds some of the monitored columns (pd, n_tokens, truncated, grade, decision, ...)
    and optionally slice columns; ``empty_document`` is derived from n_tokens when absent.
    """
    frame = frame.copy()
    if "empty_document" not in frame and "n_tokens" in frame:
        frame["empty_document"] = frame["n_tokens"] <= EMPTY_DOCUMENT_MAX_TOKENS
    columns = [c for c in (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS) if c in frame]
    slices: list[dict[str, Any]] = [
        {"slice_key": None, "slice_value": None, "columns": _columns(frame, columns)}
    ]
    for key in slice_columns:
        if key not in frame:
            continue
        values = frame[key].astype("object").where(frame[key].notna(), NULL_SLICE)
        for value, part in frame.groupby(values.astype(str), sort=True):
            slices.append(
                {"slice_key": key, "slice_value": value, "columns": _columns(part, columns)}
            )
    whole = slices[0]["columns"]
    edges = {
        name: decile_edges(_numeric(whole[name], name)).tolist()
        for name in columns
        if name in NUMERIC_COLUMNS
    }
    return {
        "format": BASELINE_FORMAT,
        "source": source,
        "rows": len(frame),
        "psi_edges": edges,
        "slices": slices,
    }


def _columns(frame: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    return {name: _column_entry(frame[name], name) for name in columns}


def _numeric(entry: dict[str, Any], name: str) -> Histogram:
    grid = Grid(**entry["grid"])
    if grid != NUMERIC_COLUMNS[name]:
        raise ValueError(
            f"baseline column {name} is binned on {grid}, expected {NUMERIC_COLUMNS[name]}"
        )
    return Histogram.from_mapping(grid, {int(k): int(c) for k, c in entry["bins"].items()})


def write_baseline(model_dir: Path, document: dict[str, Any]) -> Path:
    path = model_dir / BASELINE_NAME
    path.write_text(json.dumps(document, sort_keys=True))
    return path


def parse_baseline(document: dict[str, Any], *, model_version: str | None) -> Baseline:
    if document.get("format") != BASELINE_FORMAT:
        raise ValueError(f"unknown baseline format {document.get('format')!r}")
    histograms: Histograms = {}
    for part in document["slices"]:
        for name, entry in part["columns"].items():
            if name in NUMERIC_COLUMNS:
                column = ColumnHistogram(
                    entry["rows"], entry["nulls"], numeric=_numeric(entry, name)
                )
            else:
                column = ColumnHistogram(
                    entry["rows"], entry["nulls"], categories=entry["categories"]
                )
            histograms[(part["slice_key"], part["slice_value"], name)] = column
    edges = {name: np.asarray(values, float) for name, values in document["psi_edges"].items()}
    return Baseline(model_version, document.get("source", ""), histograms, edges)


def load_baseline(
    model_dir: Path, *, expected_sha256: str | None, model_version: str
) -> Baseline | None:
    """The model's baseline, or None (logged) when it has none or the file is not the one its
    manifest lists."""
    path = model_dir / BASELINE_NAME
    if expected_sha256 is None or not path.is_file():
        log.info("model %s has no %s: BASELINE drift skipped", model_version, BASELINE_NAME)
        return None
    payload = path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != expected_sha256:
        log.warning("%s does not match the model manifest: BASELINE drift skipped", path)
        return None
    try:
        return parse_baseline(json.loads(payload), model_version=model_version)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s is not a usable baseline (%s): BASELINE drift skipped", path, exc)
        return None
