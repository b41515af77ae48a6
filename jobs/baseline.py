"""TF-IDF + logistic regression on the split the fine-tuning job would use, without training the
transformer: spark-submit jobs/baseline.py [--train-table T]. (jobs/train.py reports it too.)"""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.config import load_config
from riskudf.entry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from riskudf.lakehouse.session import build_spark
from riskudf.safe_logging import BAD_INPUT, safe_message, setup_logging
from riskudf.training.data import LabelError
from riskudf.training.pipeline import benchmark_only

log = logging.getLogger("baseline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-table", help="Delta table name or path (training.data.table)")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        conf = load_config(args.conf)
        training = conf.training.with_data(table=args.train_table)
        figures = benchmark_only(build_spark(conf.spark), training)
    except (*BAD_INPUT, LabelError) as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.error("baseline failed: %s", safe_message(exc))
        return EXIT_FAILED
    table = training.data.table
    print(
        f"TF-IDF + logistic regression on {table}: "
        + ", ".join(f"{name.removeprefix('tfidf_')} {value:.3f}" for name, value in figures.items())
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
