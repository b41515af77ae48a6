"""Fine-tune the backbone on a labelled Delta table (training.data in conf, or --train-table),
calibrate, evaluate on a held-out test split, publish the model and register it:
spark-submit jobs/train.py --output models/demo."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from riskudf.config import RiskConf
from riskudf.entry import EXIT_BENCHMARK_WINS, EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.model.registry import robustness_line
from riskudf.training.card import calibration_text
from riskudf.training.data import LabelError
from riskudf.training.finetune import TrainedModel
from riskudf.training.pipeline import OutputError, train_model

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-table", help="Delta table name or path (training.data.table)")
    parser.add_argument("--text-col", help="default: training.data.text_col")
    parser.add_argument("--label-col", help="default: training.data.label_col")
    parser.add_argument(
        "--reference-pd-col", help="a PD column reported beside the model's (training.data)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="the model's link (its name is the model's name); each version goes to its own "
        "directory in <output>.versions and is never replaced",
    )
    parser.add_argument(
        "--alias",
        default=None,
        help="alias for the new version (default: challenger; champion only for a model "
        "without one, skipping the gate: later champions go through jobs/promote.py)",
    )
    parser.add_argument(
        "--first-champion",
        action="store_true",
        help="champion when the model has none yet (recorded as set without the gate), else "
        "challenger: what make demo uses",
    )
    parser.add_argument(
        "--candidates",
        default=None,
        help="comma-separated names of training.candidates to train (default: all of them)",
    )
    parser.add_argument("--model-version", default=None, help="default: timestamp and hash")
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="also publish an int8 version of the model, evaluated on its own (training.quantize)",
    )
    parser.add_argument(
        "--publish-if-benchmark-wins",
        action="store_true",
        help="publish the transformer even when TF-IDF + LR beats it on validation (recorded)",
    )
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def train(conf: RiskConf) -> int:
        training = conf.training.with_data(
            table=args.train_table,
            text_col=args.text_col,
            label_col=args.label_col,
            reference_pd_col=args.reference_pd_col,
        )
        if args.candidates:
            training = training.only_candidates([n.strip() for n in args.candidates.split(",")])
        if args.quantize:
            training = training.model_copy(update={"quantize": True})
        if args.publish_if_benchmark_wins:
            training = training.model_copy(update={"publish_if_benchmark_wins": True})
        trained = train_model(
            build_spark(conf.spark),
            training,
            output=args.output,
            model_version=args.model_version,
            grading=conf.grading,
            slice_columns=conf.monitoring.slice_columns,
            registry_table=conf.tables.qualified("model_registry"),
            redaction=conf.redaction,
            aliases_table=conf.tables.qualified("model_aliases"),
            alias=args.alias,
            first_champion=args.first_champion,
            changed_by=_user(),
            robustness_table=conf.tables.qualified("model_robustness"),
        )
        return report(trained)

    return run_job(
        args.conf, train, log=log, failure="training failed", bad_input=(LabelError, OutputError)
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container without USER or a passwd entry
        return "training job"


def report(trained: TrainedModel) -> int:
    """Print the model's figures and the verdict against the benchmark; the exit code (6 when
    the benchmark won and the model was set aside)."""
    metrics = trained.manifest.metrics
    training = trained.manifest.training
    print(f"model {trained.manifest.model_version} written to {trained.output}")
    if trained.alias:
        print(
            f"alias {trained.output.parent.name.removesuffix('.versions')}@{trained.alias} -> "
            f"{trained.manifest.model_version}"
        )
    rows = training.get("split_rows") or {}
    print("rows: " + ", ".join(f"{name} {count}" for name, count in rows.items()))
    if trained.int8 is not None:
        c = trained.int8.manifest.training["int8"]
        print(
            f"int8 version {trained.int8.manifest.model_version} (no alias): test AUC "
            f"{c['test_auc']:.4f} against {c['parent_test_auc']:.4f}, ECE {c['test_ece']:.4f} "
            f"against {c['parent_test_ece']:.4f}, grades agree on {c['grade_agreement']:.1%}, "
            f"{c['docs_per_second'] / c['parent_docs_per_second']:.2f}x the fp32 docs/s"
        )
    code = _verdict(trained)
    if "test_macro_auc" in metrics:  # a grade classifier
        print(
            f"test macro AUC {metrics['test_macro_auc']:.3f} (TF-IDF + LR "
            f"{metrics['tfidf_test_macro_auc']:.3f}), accuracy {metrics['test_accuracy']:.3f}, "
            f"quadratic kappa {metrics['test_quadratic_kappa']:.3f}"
        )
        return code
    print(
        f"validation AUC {metrics['validation_auc']:.3f}; test AUC {metrics['test_auc']:.3f} "
        f"(TF-IDF + LR {metrics['tfidf_test_auc']:.3f}), Gini {metrics['test_gini']:.3f}, "
        f"KS {metrics['test_ks']:.3f}; Brier {metrics['test_raw_brier']:.4f} -> "
        f"{metrics['test_brier']:.4f}, ECE {metrics['test_raw_ece']:.4f} -> "
        f"{metrics['test_ece']:.4f} (calibration {calibration_text(trained.manifest.calibration)})"
    )
    summary = training.get("robustness")
    if summary:
        print(f"robustness ({summary['documents']} test documents): {robustness_line(summary)}")
    if "reference_pd_test_auc" in metrics:
        print(
            f"reference PD column on the same test split: AUC "
            f"{metrics['reference_pd_test_auc']:.3f} (the model reaches "
            f"{metrics['test_auc'] / metrics['reference_pd_test_auc']:.2f} of its AUC)"
        )
    return code


def _verdict(trained: TrainedModel) -> int:
    selection = trained.manifest.training.get("selection") or {}
    line = (
        f"selection on {selection.get('criterion')}: transformer "
        f"{selection.get('transformer', float('nan')):.3f}, TF-IDF + LR "
        f"{selection.get('benchmark', float('nan')):.3f}"
    )
    if selection.get("verdict") != "benchmark_better":
        print(f"{line}: the transformer is better")
        return EXIT_OK
    print("!" * 78)
    print(f"THE BENCHMARK WINS. {line}.")
    if trained.published:
        print("The transformer was published anyway (--publish-if-benchmark-wins); recorded.")
        print("!" * 78)
        return EXIT_OK
    print(
        f"The transformer was NOT published: set aside at {trained.output}, with no alias. The "
        "model in use is unchanged. Rerun with --publish-if-benchmark-wins to publish it anyway."
    )
    print("!" * 78)
    return EXIT_BENCHMARK_WINS


if __name__ == "__main__":
    sys.exit(main())
