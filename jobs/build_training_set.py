"""Build the labelled training set from the scoring inputs, as the scoring job assembles them:
spark-submit jobs/build_training_set.py --dates 2024-11-28 [2025-11-28 ...]."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, iso_date, iso_timestamp, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.scoring.pipeline import business_date
from riskudf.training.dataset import build_training_set

log = logging.getLogger("build_training_set")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dates", type=iso_date, nargs="+", required=True, help="observation dates (cohorts)"
    )
    parser.add_argument(
        "--knowledge",
        choices=("observation", "current"),
        default="observation",
        help="observation: read each input as known at the end of its observation date (Delta "
        "time travel; refused where a table has no version then); current: the inputs' current "
        "versions (record dates still bound the documents, undated portfolio columns are today's)",
    )
    parser.add_argument(
        "--inputs-as-of", type=iso_timestamp, help="one knowledge time for every date"
    )
    parser.add_argument("--table", help="default: tables.training_documents of the conf")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def build(conf: RiskConf) -> int:
        spark = build_spark(conf.spark)
        table = args.table or conf.tables.qualified("training_documents")
        cohorts = build_training_set(
            spark,
            conf,
            args.dates,
            knowledge=args.knowledge,
            today=business_date(dt.datetime.now(dt.UTC), conf.scoring.timezone),
            inputs_as_of=args.inputs_as_of,
            table=table,
        )
        counts = {
            row["observation_date"]: (row["rows"], row["defaults"])
            for row in spark.table(table)
            .groupBy("observation_date")
            .agg({"*": "count", conf.training.data.label_col: "sum"})
            .withColumnsRenamed(
                {"count(1)": "rows", f"sum({conf.training.data.label_col})": "defaults"}
            )
            .collect()
        }
        for cohort in cohorts:
            rows, defaults = counts.get(cohort.observation_date, (0, 0))
            known = (
                cohort.knowledge_time.isoformat() if cohort.knowledge_time else "current versions"
            )
            print(
                f"{table}: observation date {cohort.observation_date}: {rows} rows, "
                f"{defaults} defaults; inputs as known at {known}"
            )
        return EXIT_OK

    return run_job(args.conf, build, log=log, failure="building the training set failed")


if __name__ == "__main__":
    sys.exit(main())
