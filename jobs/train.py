"""Fine-tune the backbone on a labelled Delta table (training.data in conf, or --train-table),
calibrate, evaluate on a held-out test split, publish the model and register it:
spark-submit jobs/train.py --output models/demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.training.data import LabelError
from riskudf.training.finetune import TrainedModel
from riskudf.training.pipeline import train_model

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-table", help="Delta table name or path (training.data.table)")
    parser.add_argument("--text-col", help="default: training.data.text_col")
    parser.add_argument("--label-col", help="default: training.data.label_col")
    parser.add_argument("--output", type=Path, required=True, help="model directory to write")
    parser.add_argument("--model-version", default=None, help="default: timestamp and hash")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def train(conf: RiskConf) -> int:
        training = conf.training.with_data(
            table=args.train_table, text_col=args.text_col, label_col=args.label_col
        )
        trained = train_model(
            build_spark(conf.spark),
            training,
            output=args.output,
            model_version=args.model_version,
            grading=conf.grading,
            slice_columns=conf.monitoring.slice_columns,
            registry_table=conf.tables.qualified("model_registry"),
            redaction=conf.redaction,
        )
        return report(trained)

    return run_job(args.conf, train, log=log, failure="training failed", bad_input=(LabelError,))


def report(trained: TrainedModel) -> int:
    """Print the model's figures; the exit code."""
    metrics = trained.manifest.metrics
    print(f"model {trained.manifest.model_version} written to {trained.output}")
    print(
        f"rows: train {metrics['train_rows']:.0f}, validation {metrics['validation_rows']:.0f}, "
        f"test {metrics['test_rows']:.0f}"
    )
    if "test_macro_auc" in metrics:  # a grade classifier
        print(
            f"test macro AUC {metrics['test_macro_auc']:.3f} (TF-IDF + LR "
            f"{metrics['tfidf_test_macro_auc']:.3f}), accuracy {metrics['test_accuracy']:.3f}, "
            f"quadratic kappa {metrics['test_quadratic_kappa']:.3f}"
        )
        return EXIT_OK
    print(
        f"validation AUC {metrics['validation_auc']:.3f}; test AUC {metrics['test_auc']:.3f} "
        f"(TF-IDF + LR {metrics['tfidf_test_auc']:.3f}), Gini {metrics['test_gini']:.3f}, "
        f"KS {metrics['test_ks']:.3f}; Brier {metrics['test_raw_brier']:.4f} -> "
        f"{metrics['test_brier']:.4f}, ECE {metrics['test_raw_ece']:.4f} -> "
        f"{metrics['test_ece']:.4f} ({trained.manifest.calibration.get('method')})"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
