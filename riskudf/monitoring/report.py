"""A static HTML report per run, drawn as inline SVG from the aggregates only.

No row-level data and no document text reach the page: histograms, drift and backtest records,
migration counts, and the recent runs' PSI and AUC read back from the monitor tables. The page
needs no script and no network (no plotting dependency either).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.monitoring.alerts import Alert
from riskudf.monitoring.backtest import BacktestRecord
from riskudf.monitoring.baseline import Histograms
from riskudf.monitoring.drift import DriftRecord
from riskudf.monitoring.estimate import EstimateRecord
from riskudf.monitoring.fairness import FairnessRecord
from riskudf.monitoring.metrics import coarse_counts, decile_edges
from riskudf.monitoring.migration import MigrationRecord

BLUE, GREY, RED, AMBER = "#2f6db5", "#9aa5b1", "#c0392b", "#d68910"
SECTIONS = (
    "Alerts",
    "PD distribution against the baseline",
    "Population stability per column",
    "Grade migration",
    "Calibration (backtest)",
    "Estimated performance (before outcomes)",
    "Trends over recent runs",
    "Fairness",
    "Champion and challengers",
)


@dataclass(frozen=True)
class ReportData:
    run_id: str
    as_of: dt.date
    model_version: str
    histograms: Histograms
    baseline: Histograms | None
    psi_edges: dict[str, np.ndarray]
    drift: list[DriftRecord]
    migration: list[MigrationRecord]
    backtest: list[BacktestRecord]
    fairness: list[FairnessRecord]
    alerts: list[Alert]
    notes: list[str] = field(default_factory=list)
    previous_run_id: str | None = None
    shadow: list[dict[str, Any]] = field(default_factory=list)  # monitor_shadow's rows
    estimates: list[EstimateRecord] = field(default_factory=list)  # monitor_estimates' rows


@dataclass(frozen=True)
class TrendPoint:
    label: str
    values: dict[str, float | None]


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


class Svg:
    """A tiny SVG canvas with a plot area and linear or log axes."""

    def __init__(self, width: int = 640, height: int = 280, margin: int = 48) -> None:
        self.width, self.height, self.m = width, height, margin
        self.parts: list[str] = []

    def add(self, part: str) -> None:
        self.parts.append(part)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        anchor: str = "middle",
        size: int = 11,
        rotate: int = 0,
        color: str = "#333",
    ) -> None:
        transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}"{transform}>{_e(text)}</text>'
        )

    def rect(self, x: float, y: float, w: float, h: float, color: str, title: str = "") -> None:
        tip = f"<title>{_e(title)}</title>" if title else ""
        self.add(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{color}">{tip}</rect>'
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        color: str = "#555",
        dash: str = "",
        width: float = 1,
    ) -> None:
        style = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{color}" stroke-width="{width}"{style}/>'
        )

    def polyline(self, points: Sequence[tuple[float, float]], color: str) -> None:
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.add(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')

    def frame(self) -> tuple[float, float, float, float]:
        """Left, top, right, bottom of the plot area; draws its axes."""
        left, top = self.m + 10, 14
        right, bottom = self.width - 40, self.height - self.m
        self.line(left, bottom, right, bottom)
        self.line(left, top, left, bottom)
        return left, top, right, bottom

    def legend(self, items: Sequence[tuple[str, str]]) -> None:
        x = self.width - 14
        for label, color in reversed(items):
            x -= 8 + 7 * len(label)
            self.rect(x, 4, 10, 10, color)
            self.text(x + 14, 13, label, anchor="start", size=10)
            x -= 18

    def render(self) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" role="img">{"".join(self.parts)}</svg>'
        )


def grouped_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    y_label: str,
    lines: Sequence[tuple[float, str, str]] = (),
) -> str:
    svg = Svg()
    left, top, right, bottom = svg.frame()
    peak = max([*(v for _, _, values in series for v in values), *(y for y, _, _ in lines), 1e-9])
    slot = (right - left) / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for i, label in enumerate(labels):
        for j, (name, color, values) in enumerate(series):
            h = (bottom - top) * values[i] / peak
            svg.rect(
                left + i * slot + slot * 0.1 + j * bar,
                bottom - h,
                bar,
                h,
                color,
                f"{name} {label}: {values[i]:.4g}",
            )
        rotated = len(labels) > 6
        svg.text(
            left + (i + 0.5) * slot,
            bottom + 14,
            label,
            size=9,
            anchor="end" if rotated else "middle",
            rotate=-30 if rotated else 0,
        )
    for y, color, name in lines:
        level = bottom - (bottom - top) * y / peak
        svg.line(left, level, right, level, color, dash="4 3")
        svg.text(right - 2, level - 3, name, anchor="end", size=9, color=color)
    for frac in (0.0, 0.5, 1.0):
        svg.text(
            left - 4, bottom - (bottom - top) * frac + 4, f"{peak * frac:.3g}", anchor="end", size=9
        )
    svg.text(14, (top + bottom) / 2, y_label, rotate=-90, size=10)
    svg.legend([(name, color) for name, color, _ in series])
    return svg.render()


def pd_histogram(data: ReportData) -> str:
    current = data.histograms.get((None, None, "pd"))
    if current is None or current.numeric is None or current.numeric.total == 0:
        return "<p>No PDs in this run.</p>"
    reference = data.baseline.get((None, None, "pd")) if data.baseline else None
    edges = data.psi_edges.get("pd")
    if edges is None:
        edges = decile_edges(current.numeric)
    bounds = [0.0, *edges.tolist(), 1.0]
    labels = [f"< {b:.3g}" for b in bounds[1:-1]] + [f">= {bounds[-2]:.3g}"]
    shares = coarse_counts(current.numeric, edges) / current.numeric.total
    series = [("this run", BLUE, shares.tolist())]
    if reference is not None and reference.numeric is not None and reference.numeric.total:
        ref = coarse_counts(reference.numeric, edges) / reference.numeric.total
        series.append(("baseline", GREY, ref.tolist()))
    note = (
        "Bins: the baseline's PD deciles."
        if reference is not None
        else "No baseline: bins are this run's deciles."
    )
    return grouped_bars(labels, series, y_label="share of obligors") + f"<p>{note}</p>"


def psi_chart(data: ReportData, conf: RiskConf) -> str:
    whole = [d for d in data.drift if d.slice_key is None and d.psi is not None]
    if not whole:
        return "<p>No drift reference for this run.</p>"
    columns = sorted({d.column_name for d in whole})
    series = []
    for drift_type, color in (("BASELINE", GREY), ("CONSECUTIVE", BLUE)):
        values = {d.column_name: d.psi or 0.0 for d in whole if d.drift_type == drift_type}
        if values:
            series.append((drift_type.lower(), color, [values.get(c, 0.0) for c in columns]))
    rule = conf.monitoring.alerts.psi
    lines = [
        (level, color, name)
        for level, color, name in ((rule.warn, AMBER, "warn"), (rule.alert, RED, "alert"))
        if level is not None
    ]
    return grouped_bars(columns, series, y_label="PSI", lines=lines)


def _heat(rate: float) -> str:
    shade = int(255 - 200 * min(max(rate, 0.0), 1.0))
    return f"rgb({shade},{shade + (255 - shade) // 3},255)"


def migration_heatmap(data: ReportData, grades: list[str]) -> str:
    cells = {
        (c.from_grade, c.to_grade): c
        for c in data.migration
        if c.slice_key is None and c.record_type == "cell"
    }
    summary = next(
        (c for c in data.migration if c.slice_key is None and c.record_type == "summary"), None
    )
    if summary is None:
        return "<p>No previous run to migrate from.</p>"
    size = 34
    svg = Svg(width=90 + size * len(grades), height=70 + size * len(grades), margin=0)
    for i, grade in enumerate(grades):
        svg.text(70 + i * size + size / 2, 24, grade, size=10)
        svg.text(62, 44 + i * size + size / 2, grade, anchor="end", size=10)
        for j, to in enumerate(grades):
            cell = cells.get((grade, to))
            rate = cell.rate or 0.0 if cell else 0.0
            svg.rect(
                70 + j * size,
                30 + i * size,
                size - 2,
                size - 2,
                _heat(rate),
                f"{grade} → {to}: {cell.count if cell else 0} ({rate:.1%})",
            )
            if cell:
                svg.text(
                    70 + j * size + size / 2,
                    30 + i * size + size / 2 + 4,
                    str(cell.count),
                    size=9,
                    color="#000" if rate < 0.6 else "#fff",
                )
    svg.text(70 + size * len(grades) / 2, 10, "this run's grade", size=10)
    svg.text(12, 30 + size * len(grades) / 2, "previous grade", rotate=-90, size=10)
    text = (
        f"<p>Against run {_e(data.previous_run_id)}: {summary.count} obligors in both runs; "
        f"upgraded {_fmt(summary.upgrade_share)}, downgraded {_fmt(summary.downgrade_share)}, "
        f"stable {_fmt(summary.stable_share)}, more than {summary.moved_over_notches} notches "
        f"{_fmt(summary.moved_over_share)}; new {summary.new_obligors}, "
        f"left {summary.exited_obligors}.</p>"
    )
    return svg.render() + text


def calibration_chart(data: ReportData) -> str:
    whole = [b for b in data.backtest if b.slice_key is None]
    if not whole:
        return "<p>No matured cohort: nothing to backtest yet.</p>"
    cohort = max(b.cohort_date for b in whole)
    grades = [b for b in whole if b.cohort_date == cohort and b.grade is not None and b.n > 0]
    overall = next(b for b in whole if b.cohort_date == cohort and b.grade is None)
    svg = Svg()
    left, top, right, bottom = svg.frame()
    lo, hi = 1e-4, 1.0

    def scale(v: float, a: float, b: float) -> float:
        return a + (b - a) * (math.log10(min(max(v, lo), hi)) - math.log10(lo)) / (
            math.log10(hi) - math.log10(lo)
        )

    svg.line(
        scale(lo, left, right),
        scale(lo, bottom, top),
        scale(hi, left, right),
        scale(hi, bottom, top),
        GREY,
        dash="4 3",
    )
    for tick in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        svg.text(scale(tick, left, right), bottom + 14, f"{tick:g}", size=9)
        svg.text(left - 4, scale(tick, bottom, top) + 4, f"{tick:g}", anchor="end", size=9)
    for b in grades:
        x = scale(b.mean_pd, left, right)
        svg.line(
            x, scale(b.jeffreys_lower, bottom, top), x, scale(b.jeffreys_upper, bottom, top), BLUE
        )
        color = RED if b.jeffreys_pvalue < 0.05 else BLUE
        svg.add(
            f'<circle cx="{x:.1f}" cy="{scale(b.observed_dr, bottom, top):.1f}" r="4" '
            f'fill="{color}"><title>{_e(b.grade)}: n={b.n}, defaults={b.defaults}, '
            f"mean PD {b.mean_pd:.4f}, DR {b.observed_dr:.4f}</title></circle>"
        )
        svg.text(x + 6, scale(b.observed_dr, bottom, top) - 6, str(b.grade), anchor="start", size=9)
    svg.text((left + right) / 2, bottom + 32, "mean PD of the grade (log)", size=10)
    svg.text(14, (top + bottom) / 2, "observed default rate (log)", rotate=-90, size=10)
    text = (
        f"<p>Cohort {cohort} (run {_e(overall.cohort_run_id)}), {overall.n} obligors, "
        f"{overall.defaults} defaults: AUC {_fmt(overall.auc)} "
        f"(± {_fmt(overall.auc_error_bound, 2)}), Gini {_fmt(overall.gini)}, "
        f"KS {_fmt(overall.ks_statistic)}, Brier {_fmt(overall.brier)}, "
        f"log-loss {_fmt(overall.log_loss)}, "
        f"Hosmer-Lemeshow p {_fmt(overall.hosmer_lemeshow_pvalue)}. "
        "Bars: 95 % Jeffreys intervals; red: Jeffreys p &lt; 0.05 (PD too low).</p>"
    )
    return svg.render() + text


def line_chart(
    points: Sequence[TrendPoint], series: Sequence[tuple[str, str]], *, y_label: str
) -> str:
    if not points:
        return "<p>No earlier runs yet.</p>"
    svg = Svg()
    left, top, right, bottom = svg.frame()
    values = [p.values.get(k) for p in points for k, _ in series]
    present = [v for v in values if v is not None]
    if not present:
        return "<p>No values yet.</p>"
    lo, hi = min(0.0, *present), max(present) or 1.0
    step = (right - left) / max(len(points) - 1, 1)
    for key, color in series:
        coords = [
            (
                left + i * step if len(points) > 1 else (left + right) / 2,
                bottom - (bottom - top) * ((p.values[key] or 0.0) - lo) / ((hi - lo) or 1.0),
            )
            for i, p in enumerate(points)
            if p.values.get(key) is not None
        ]
        if coords:
            svg.polyline(coords, color)
    for i, p in enumerate(points):
        x = left + i * step if len(points) > 1 else (left + right) / 2
        svg.text(x, bottom + 14, p.label, size=9, rotate=-20 if len(points) > 6 else 0)
    for frac in (0.0, 0.5, 1.0):
        svg.text(
            left - 4,
            bottom - (bottom - top) * frac + 4,
            f"{lo + (hi - lo) * frac:.3g}",
            anchor="end",
            size=9,
        )
    svg.text(14, (top + bottom) / 2, y_label, rotate=-90, size=10)
    svg.legend([(k.lower(), c) for k, c in series])
    return svg.render()


def read_trends(
    spark: SparkSession, conf: RiskConf, as_of: dt.date
) -> tuple[list[TrendPoint], list[TrendPoint]]:
    """PSI of pd (whole table) and AUC of the latest matured cohort, per recent run."""
    db, n = conf.tables.database, conf.monitoring.trend_runs
    drift = (
        spark.table(f"{db}.monitor_drift")
        .where(
            F.col("slice_key").isNull()
            & (F.col("column_name") == "pd")
            & (F.col("as_of_date") <= F.lit(as_of))
        )
        .groupBy("run_id", "as_of_date")
        .agg(
            F.max("monitored_at").alias("at"),
            F.max(F.when(F.col("drift_type") == "BASELINE", F.col("psi"))).alias("BASELINE"),
            F.max(F.when(F.col("drift_type") == "CONSECUTIVE", F.col("psi"))).alias("CONSECUTIVE"),
        )
        .orderBy(F.col("as_of_date").desc(), F.col("at").desc())
        .limit(n)
        .collect()
    )
    psi = [
        TrendPoint(
            f"{r['as_of_date']} {r['run_id'][:6]}",
            {"BASELINE": r["BASELINE"], "CONSECUTIVE": r["CONSECUTIVE"]},
        )
        for r in reversed(drift)
    ]
    backtest = (
        spark.table(f"{db}.monitor_backtest")
        .where(
            F.col("slice_key").isNull()
            & F.col("grade").isNull()
            & (F.col("as_of_date") <= F.lit(as_of))
        )
        .groupBy("run_id", "as_of_date")
        .agg(
            F.max("monitored_at").alias("at"),
            F.max_by("auc", "cohort_date").alias("AUC"),
            F.max_by("gini", "cohort_date").alias("Gini"),
        )
        .orderBy(F.col("as_of_date").desc(), F.col("at").desc())
        .limit(n)
        .collect()
    )
    auc = [
        TrendPoint(f"{r['as_of_date']} {r['run_id'][:6]}", {"AUC": r["AUC"], "Gini": r["Gini"]})
        for r in reversed(backtest)
    ]
    return psi, auc


def estimate_table(data: ReportData, grades: list[str]) -> str:
    """The PD-only estimates of this run and of each matured cohort, realised beside them."""
    if not data.estimates:
        return "<p>No scored rows to estimate from.</p>"

    def band(value: float | None, lower: float | None, upper: float | None) -> str:
        return f"{_fmt(value, 4)} [{_fmt(lower, 4)}, {_fmt(upper, 4)}]"

    rows = [
        (
            r.cohort_date,
            r.grade or "all",
            r.obligors,
            band(r.expected_dr, r.dr_lower, r.dr_upper),
            _fmt(r.realised_dr, 4),
            band(r.expected_auc, r.auc_lower, r.auc_upper) if r.grade is None else "",
            _fmt(r.realised_auc, 4) if r.grade is None else "",
        )
        for r in sorted(
            data.estimates,
            key=lambda r: (
                -r.cohort_date.toordinal(),
                r.grade is not None,
                grades.index(r.grade) if r.grade in grades else len(grades),
            ),
        )
    ]
    return (
        "<p class=note>From the calibrated PDs alone (bands of coverage "
        "monitoring.estimate_level, from simulated outcomes and the calibration's own level "
        "uncertainty): what the PDs predict if they stay "
        "calibrated. A change in "
        "how the text relates to default shows only in realised figures, once a cohort "
        "matures.</p>"
        + _table(
            ["cohort", "grade", "obligors", "default rate [band]", "realised DR", "AUC [band]",
             "realised AUC"],
            rows,
        )
    )  # fmt: skip


def shadow_tables(data: ReportData) -> str:
    """Flips and PSI per challenger and segment; then, per challenger, both AUCs on the
    latest matured cohort it scored in shadow, with DeLong's p-value."""
    if not data.shadow:
        return "<p>No challenger was scored in shadow in this run.</p>"
    order = sorted(data.shadow, key=lambda r: (r["alias"], r["segment"] != "all", r["segment"]))
    flips = _table(
        ["challenger", "segment", "obligors", "grade flips", "decision flips", "PSI of PD"],
        [
            (
                f"{r['model_name']}@{r['alias']} ({r['model_version']})",
                r["segment"],
                r["obligors"],
                f"{r['grade_flips']} ({_fmt(r['grade_flip_share'])})",
                f"{r['decision_flips']} ({_fmt(r['decision_flip_share'])})",
                _fmt(r["psi"], 4),
            )
            for r in order
        ],
    )
    matured = _table(
        ["challenger", "cohort", "champion then", "obligors", "defaults", "AUC champion",
         "AUC challenger", "difference", "DeLong p"],
        [
            (
                f"{r['model_name']}@{r['alias']} ({r['model_version']})",
                r["matured_as_of"] or "none matured yet",
                r["matured_champion_version"] or "-",
                "-" if r["matured_obligors"] is None else r["matured_obligors"],
                "-" if r["matured_defaults"] is None else r["matured_defaults"],
                _fmt(r["champion_auc"], 4),
                _fmt(r["challenger_auc"], 4),
                _fmt(r["auc_difference"], 4),
                _fmt(r["auc_difference_pvalue"], 4),
            )
            for r in order
            if r["segment"] == "all"
        ],
    )  # fmt: skip
    return (
        f"<p>Champion {_e(order[0]['champion_version'])}; challengers scored on the same "
        "documents, never used for decisions (shadow_scores).</p>"
        + flips
        + "<h3>On the latest matured cohort scored in shadow</h3>"
        + matured
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


# Long on purpose: the report's HTML sections, one after another.
def render_report(
    data: ReportData, conf: RiskConf, trends: tuple[list[TrendPoint], list[TrendPoint]]
) -> str:
    grades = [band.grade for band in conf.grading.master_scale]
    alerts = _table(
        ["severity", "rule", "metric", "slice", "value", "threshold"],
        [
            (
                a.severity,
                a.rule,
                a.metric,
                f"{a.slice_key}={a.slice_value}" if a.slice_key else "all",
                _fmt(a.value, 4),
                _fmt(a.threshold, 4),
            )
            for a in sorted(data.alerts, key=lambda a: (a.severity != "alert", a.rule))
        ],
    )
    fairness = _table(
        [
            "cohort",
            "attribute",
            "group",
            "n",
            "approval rate",
            "disparate impact",
            "equal opportunity diff.",
        ],
        [
            (
                f.cohort_date,
                f.attribute,
                f.group_value + (" (reference)" if f.group_value == f.reference_group else ""),
                f.n,
                _fmt(f.approval_rate),
                _fmt(f.disparate_impact),
                _fmt(f.equal_opportunity_difference),
            )
            for f in data.fairness
        ],
    )
    psi_trend, auc_trend = trends
    sections = [
        alerts + "".join(f"<p class=note>{_e(n)}</p>" for n in data.notes),
        pd_histogram(data),
        psi_chart(data, conf),
        migration_heatmap(data, grades),
        calibration_chart(data),
        estimate_table(data, grades),
        "<h3>PSI of pd</h3>"
        + line_chart(psi_trend, [("BASELINE", GREY), ("CONSECUTIVE", BLUE)], y_label="PSI")
        + "<h3>AUC of the latest matured cohort</h3>"
        + line_chart(auc_trend, [("AUC", BLUE), ("Gini", GREY)], y_label="AUC / Gini"),
        fairness,
        shadow_tables(data),
    ]
    body = "".join(
        f"<section><h2>{_e(title)}</h2>{content}</section>"
        for title, content in zip(SECTIONS, sections, strict=True)
    )
    fired = sum(1 for a in data.alerts if a.severity == "alert")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>riskudf monitoring {_e(data.as_of)} {_e(data.run_id)}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px}}
section{{margin-bottom:2em}}.note{{color:#666;font-size:13px}}</style></head>
<body><h1>Monitoring report: as of {_e(data.as_of)}</h1>
<p>Run {_e(data.run_id)}, model {_e(data.model_version)}: {fired} alerts,
{len(data.alerts) - fired} warnings. Built from aggregates only (no obligor rows, no documents).</p>
{body}</body></html>
"""


def write_report(spark: SparkSession, conf: RiskConf, path: Path, data: ReportData) -> Path:
    html_text = render_report(data, conf, read_trends(spark, conf, data.as_of))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(path)
    return path
