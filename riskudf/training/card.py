"""A short model card (markdown) for the model directory, from the manifest alone."""

from __future__ import annotations

from typing import Any

from riskudf.model.artifact import Manifest

SUMMARY = (
    ("auc", "AUC"),
    ("gini", "Gini"),
    ("ks", "KS"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("log_loss", "log-loss"),
)


def _figure(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return "n/a" if value is None else f"{value:.4f}"


def _features(manifest: Manifest) -> str:
    """The fused features in one line: numerics with their train mean/std, categoricals."""
    if not manifest.features:
        return "none (text only)"
    parts = [
        f"{f['name']} (numeric, train mean {f['mean']:.4g}, std {f['std']:.4g})"
        for f in manifest.features.get("numeric", [])
    ]
    parts += [
        f"{f['name']} (categorical, {len(f['categories'])} train values + other)"
        for f in manifest.features.get("categorical", [])
    ]
    return "; ".join(parts) + f", beside the {manifest.features.get('pooling', 'mean')}-pooled text"


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _change(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def _int8(manifest: Manifest) -> list[str]:
    """An int8 version's figures beside its fp32 parent's, on the same splits."""
    c = manifest.training.get("int8")
    if not manifest.quantization or not c:
        return []
    speed = c["docs_per_second"] / c["parent_docs_per_second"]
    return [
        "",
        "## int8 version",
        f"- static int8 quantisation of the encoder's Linear layers "
        f"({manifest.quantization['engine']} kernels, CPU only; input scales observed on training "
        f"documents) of fp32 version {c['parent_version']}; calibrated on its own "
        "outputs, evaluated on the same splits",
        "",
        "| figure | int8 | fp32 parent |",
        "| --- | --- | --- |",
        f"| test AUC | {c['test_auc']:.4f} | {c['parent_test_auc']:.4f} |",
        f"| test ECE (calibrated) | {c['test_ece']:.4f} | {c['parent_test_ece']:.4f} |",
        f"| docs/s, evaluation splits in the training job | {c['docs_per_second']:.1f} | "
        f"{c['parent_docs_per_second']:.1f} ({speed:.2f}x) |",
        "",
        f"On the test split: the same grade for {c['grade_agreement']:.1%} of obligors, the same "
        f"decision for {c['decision_agreement']:.1%}; largest PD difference "
        f"{c['max_abs_pd_difference']:.4f}.",
    ]


def _robustness(manifest: Manifest) -> list[str]:
    """The robustness report's table (docs/governance.md, Robustness)."""
    summary = manifest.training.get("robustness")
    if not summary:
        return []
    failed = summary.get("failed") or []
    lines = [
        "",
        "## Robustness",
        f"- the {summary['source']} ({summary['documents']} documents, at most "
        f"{summary.get('max_documents', 'n/a')} per test); verdict "
        f"**{summary['verdict']}**"
        + (f", failed: {', '.join(failed)}" if failed else "")
        + " (also in risk.model_robustness)",
        "",
        "| test | kind | cases | fail rate | mean PD change | largest | grade flips | "
        "decision flips | threshold | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in summary["tests"]:
        largest = "" if t["max_abs_pd_change"] is None else f"{t['max_abs_pd_change']:.4f}"
        lines.append(
            f"| {t['test']} | {t['kind']} ({t['expect']}) | {t['cases']} | "
            f"{_rate(t['fail_rate'])} | {_change(t['mean_pd_change'])} | {largest} | "
            f"{_rate(t['grade_flip_rate'])} | {_rate(t['decision_flip_rate'])} | "
            f"{t['threshold']} | {t['status']} |"
        )
    return lines


# Long on purpose: the card's markdown lines, one after another.
def _redaction(manifest: Manifest) -> str:
    rules = manifest.redaction
    if not rules:
        return "not redacted (trained before redaction existed; scoring refuses this model)"
    found = manifest.training.get("redactions") or {}
    counts = ", ".join(f"{kind} {n}" for kind, n in found.items() if n) or (
        "none found (a table from the training-set builder arrives redacted by scoring's own step)"
    )
    kinds = ", ".join(r["kind"] for r in rules.get("rules", []))
    return (
        f"redacted before tokenisation ({kinds}; rules sha256 {str(rules.get('sha256'))[:12]}); "
        f"replacements in the training rows: {counts}"
    )


def _calibration(manifest: Manifest) -> str:
    return calibration_text(manifest.calibration)


def calibration_text(calibration: dict[str, Any]) -> str:
    """A manifest's calibration in words: the method and what it was fitted on."""
    method = calibration.get("method", "platt")
    if method == "none":
        why = calibration.get("fallback")
        return "none: the PDs are the model's raw probabilities" + (f" ({why})" if why else "")
    return f"{method}, fitted on {fitted_on_text(calibration)}"


def fitted_on_text(calibration: dict[str, Any]) -> str:
    """What a calibration was fitted on (never the split that chose the epoch or strength)."""
    fitted = calibration.get("fitted_on")
    if not fitted:  # versions before the record
        return "the calibration split"
    return f"{fitted['data']} ({fitted['rows']:,} rows, {fitted['defaults']:,} defaults)"


def _setting(candidate: dict[str, Any]) -> str:
    """A candidate's learning rate, or a linear probe's chosen regularisation."""
    if candidate.get("learning_rate") is None:
        return f"C={candidate['strength']:g}"
    return f"{candidate['learning_rate']:g}"


def _selection(manifest: Manifest) -> list[str]:
    """The verdict against the benchmark, loud when the benchmark won."""
    selection = manifest.training.get("selection")
    if not selection:
        return []
    candidates = manifest.training.get("candidates") or []
    table = []
    if len(candidates) > 1:
        table = [
            "",
            "| candidate | method | learning rate (probe: C) | epochs | seconds | validation AUC "
            "| chosen |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *[
                f"| {c['name']} | {c['method']} | {_setting(c)} | {c['epochs_run']} | "
                f"{c['seconds']} | {c['validation_auc']:.4f} | {'yes' if c['chosen'] else ''} |"
                for c in candidates
            ],
        ]
    figures = (
        f"on {selection['criterion']}: transformer {selection['transformer']:.4f}, TF-IDF + "
        f"logistic regression {selection['benchmark']:.4f}"
    )
    if selection["verdict"] != "benchmark_better":
        return ["", "## Selection", f"- the transformer beats the benchmark {figures}", *table]
    outcome = (
        "published anyway by explicit choice (publish_if_benchmark_wins)"
        if selection.get("published")
        else "NOT published: set aside; the model in use was left unchanged"
    )
    return [
        "",
        "## Selection",
        f"- **WARNING: the benchmark beats this model** {figures}.",
        f"- this model was {outcome}.",
        *table,
    ]


def model_card(manifest: Manifest) -> str:
    """Identity, training, calibration and held-out test figures of a model, in markdown."""
    m = manifest.metrics
    t = manifest.training
    lines = [
        f"# Model card: {manifest.model_version}",
        "",
        "PD model: probability of default within 12 months from an obligor's assembled credit "
        "report and filings. Scores feed the master scale and the review/decline thresholds.",
        "",
        "## Training",
        f"- created: {manifest.created_at}",
        f"- backbone: {manifest.backbone}",
        f"- method: {t.get('method', 'n/a')}; trainable parameters "
        f"{t.get('trainable_parameters', 'n/a')} of {t.get('total_parameters', 'n/a')}",
        f"- epochs run: {t.get('epochs_run', 'n/a')} (early stopping on validation AUC, "
        "best epoch kept)"
        + (f"; TensorBoard events in {t['tensorboard']}" if t.get("tensorboard") else ""),
        *(["", "![Training curves](training_curves.svg)", ""] if t.get("history") else []),
        f"- training table: {manifest.training_table} "
        f"(Delta version {manifest.training_table_version})",
        f"- split: {t.get('split', 'n/a')}, by obligor; rows "
        + (
            ", ".join(f"{name} {n}" for name, n in (t.get("split_rows") or {}).items())
            or f"train {m.get('train_rows', 0):.0f}, test {m.get('test_rows', 0):.0f}"
        )
        + (
            f"; {t['dropped_in_gaps']} rows in the time gaps left out"
            if t.get("dropped_in_gaps")
            else ""
        ),
        f"- parent model: {t.get('parent_model') or 'none'}",
        f"- window: {manifest.max_length} tokens; longer documents are cut and flagged "
        "`truncated` at scoring",
        f"- structured features: {_features(manifest)}",
        f"- personal data: {_redaction(manifest)}",
        "",
        "## Calibration",
        f"- method: {_calibration(manifest)}",
        *(
            ["", "![Calibration on quantile bins](calibration_curve.svg)", ""]
            if t.get("calibration_curve")
            else []
        ),
        f"- test Brier {_figure(m, 'test_raw_brier')} before, {_figure(m, 'test_brier')} after; "
        f"test ECE {_figure(m, 'test_raw_ece')} before, {_figure(m, 'test_ece')} after",
        "",
        "## Held-out test split (calibrated PDs)",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {label} | {_figure(m, 'test_' + key)} |" for key, label in SUMMARY],
        f"| default rate | {_figure(m, 'test_default_rate')} |",
    ]
    if "tfidf_test_auc" in m:
        lines += [
            "",
            f"Benchmark on the same split, TF-IDF + logistic regression: test AUC "
            f"{_figure(m, 'tfidf_test_auc')}, Gini {_figure(m, 'tfidf_test_gini')}, "
            f"KS {_figure(m, 'tfidf_test_ks')}.",
        ]
    if "reference_pd_test_auc" in m:
        lines += [
            "",
            f"Reference PD column of the training table on the same test split: AUC "
            f"{_figure(m, 'reference_pd_test_auc')}.",
        ]
    lines += _selection(manifest)
    if "test_accuracy" in m:
        lines += [
            "",
            "Grade classifier (no PD, not for nightly scoring): "
            f"test accuracy {_figure(m, 'test_accuracy')}, macro F1 {_figure(m, 'test_macro_f1')}, "
            f"quadratic weighted kappa {_figure(m, 'test_quadratic_kappa')}, macro AUC "
            f"{_figure(m, 'test_macro_auc')}.",
        ]
    segments = sorted(k for k in m if k.startswith("test_auc_segment="))
    if segments:
        lines += ["", "| segment | AUC |", "| --- | --- |"]
        lines += [f"| {k.split('=', 1)[1]} | {m[k]:.4f} |" for k in segments]
    for name in ("review", "decline"):
        if f"test_{name}_tp" in m:
            tp, fp, fn, tn = (m[f"test_{name}_{kind}"] for kind in ("tp", "fp", "fn", "tn"))
            lines += [
                "",
                f"Flagged at the {name} threshold (pd at or above it): "
                f"{tp:.0f} defaults and {fp:.0f} non-defaults flagged, "
                f"{fn:.0f} defaults and {tn:.0f} non-defaults not.",
            ]
    lines += _int8(manifest)
    lines += _robustness(manifest)
    lines += [
        "",
        "## Limits",
        "- Trained and tested on one portfolio and period; monitor drift and backtest outcomes "
        "(risk.monitor_alerts) before relying on it elsewhere.",
        "- Text beyond the window is not read (see `truncated`).",
        "",
    ]
    return "\n".join(lines)
