"""Small SVG line charts for the model card: training curves and the calibration curve.

Plain SVG text (no plotting library): each series is one polyline with a marker per point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT, PAD = 480, 300, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _scale(values: Sequence[float], low: float, high: float, size: float) -> list[float]:
    span = (high - low) or 1.0
    return [(v - low) / span * size for v in values]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
) -> str:
    """An SVG chart of ``series`` (name -> points); ``diagonal`` draws y = x (perfect
    calibration) and uses one range for both axes."""
    points = [p for values in series.values() for p in values]
    xs, ys = [p[0] for p in points] or [0.0], [p[1] for p in points] or [0.0]
    x_low, x_high, y_low, y_high = min(xs), max(xs), min(ys), max(ys)
    if diagonal:
        x_low = y_low = min(x_low, y_low)
        x_high = y_high = max(x_high, y_high)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<rect x="{PAD}" y="{PAD}" width="{inner_w}" height="{inner_h}" fill="none" '
        'stroke="#999"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{escape(y_label)}</text>',
        f'<text x="{PAD}" y="{HEIGHT - PAD + 14}">{x_low:.3g}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 14}" text-anchor="end">{x_high:.3g}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">{y_low:.3g}</text>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{y_high:.3g}</text>',
    ]
    if diagonal:
        parts.append(
            f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{PAD}" '
            'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        px = [PAD + v for v in _scale([p[0] for p in values], x_low, x_high, inner_w)]
        py = [HEIGHT - PAD - v for v in _scale([p[1] for p in values], y_low, y_high, inner_h)]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
        parts.append(
            f'<polyline class="series" data-name="{escape(name)}" points="{coords}" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        parts += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>'
            for x, y in zip(px, py, strict=True)
        ]
        parts.append(
            f'<text x="{WIDTH - PAD - 4}" y="{PAD + 14 + 14 * i}" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def training_curves(history: Sequence[Mapping[str, float]]) -> str:
    """Training loss, validation loss and validation AUC per epoch (FineTuned.history)."""
    series = {
        name: [(float(row["epoch"]), float(row[key])) for row in history if key in row]
        for name, key in (
            ("training loss", "train_loss"),
            ("validation loss", "validation_loss"),
            ("validation AUC", "validation_auc"),
        )
    }
    return line_chart(
        {k: v for k, v in series.items() if v},
        title="Training curves",
        x_label="epoch",
        y_label="loss / AUC",
    )


def calibration_curve(bins: Sequence[Mapping[str, float]]) -> str:
    """Default rate against mean PD per quantile bin of the test split."""
    return line_chart(
        {"test split": [(float(b["mean_pd"]), float(b["default_rate"])) for b in bins]},
        title="Calibration on quantile bins (test split)",
        x_label="mean PD",
        y_label="default rate",
        diagonal=True,
    )
