"""Fine-tune the backbone on a labelled Delta table: spark-submit jobs/train.py --train-table T."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from riskudf.cli import (
    BAD_INPUT,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    safe_message,
    setup_logging,
)
from riskudf.config import load_config
from riskudf.spark import build_spark
from riskudf.training.data import LabelError
from riskudf.training.pipeline import train_model

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-table", required=True, help="Delta table name or path")
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="default_12m")
    parser.add_argument("--output", type=Path, required=True, help="model directory to write")
    parser.add_argument("--model-version", default=None, help="default: timestamp and hash")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        conf = load_config(args.conf)
        spark = build_spark(conf.spark)
        trained = train_model(
            spark,
            conf.training,
            train_table=args.train_table,
            text_col=args.text_col,
            label_col=args.label_col,
            output=args.output,
            model_version=args.model_version,
            grading=conf.grading,
            slice_columns=conf.monitoring.slice_columns,
        )
    except (*BAD_INPUT, LabelError) as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.error("training failed: %s", safe_message(exc))
        return EXIT_FAILED
    metrics = trained.manifest.metrics
    print(f"model {trained.manifest.model_version} written to {trained.output}")
    print(
        f"validation AUC {metrics['validation_auc']:.3f} on {metrics['validation_rows']:.0f} "
        f"rows (train rows {metrics['train_rows']:.0f})"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
