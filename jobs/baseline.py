"""TF-IDF + logistic regression on the split the fine-tuning job would use, without training the
transformer: spark-submit jobs/baseline.py [--train-table T]. (jobs/train.py reports it too.)"""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.training.data import LabelError
from riskudf.training.pipeline import benchmark_only

log = logging.getLogger("baseline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-table", help="Delta table name or path (training.data.table)")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def benchmark(conf: RiskConf) -> int:
        training = conf.training.with_data(table=args.train_table)
        figures = benchmark_only(build_spark(conf.spark), training, conf.redaction)
        print(
            f"TF-IDF + logistic regression on {training.data.table}: "
            + ", ".join(f"{k.removeprefix('tfidf_')} {v:.3f}" for k, v in figures.items())
        )
        return EXIT_OK

    return run_job(
        args.conf, benchmark, log=log, failure="baseline failed", bad_input=(LabelError,)
    )


if __name__ == "__main__":
    sys.exit(main())
