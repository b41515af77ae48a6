"""A model's versions in governance: every alias change and every promotion decision.

spark-submit jobs/models.py --model demo [--conf ...]

Prints model_aliases (oldest first: alias, version, from which version, who, why) and
model_promotions (each decision of the gate with its tests' colours). Reads only.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pyspark.sql import functions as F

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.model import aliases

log = logging.getLogger("models")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="the model's name (e.g. demo)")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def run(conf: RiskConf) -> int:
        spark = build_spark(conf.spark)
        table = conf.tables.qualified("model_aliases")
        changes = aliases.history(spark, table, args.model)
        print(f"{table}: {len(changes)} changes of {args.model}'s aliases")
        for c in changes:
            print(
                f"  {c.changed_at:%Y-%m-%d %H:%M:%S} {c.alias}: {c.previous_version or '-'} -> "
                f"{c.model_version or '(removed)'} by {c.changed_by}: {c.reason}"
            )
        promotions = conf.tables.qualified("model_promotions")
        if not spark.catalog.tableExists(promotions):
            print(f"{promotions}: no promotion yet")
            return EXIT_OK
        decisions = (
            spark.table(promotions)
            .where(F.col("model_name") == args.model)
            .orderBy("decided_at")
            .collect()
        )
        print(f"{promotions}: {len(decisions)} decisions")
        for d in decisions:
            colours: dict[str, int] = {}
            for test in d["tests"]:
                colours[test["colour"]] = colours.get(test["colour"], 0) + 1
            counted = ", ".join(f"{n} {c}" for c, n in sorted(colours.items()))
            print(
                f"  {d['decided_at']:%Y-%m-%d %H:%M:%S} {d['model_version']}: {d['decision']} "
                f"({counted}) by {d['decided_by']}; champion before: "
                f"{d['previous_champion'] or 'none'}; report {d['report']}"
            )
        return EXIT_OK

    return run_job(args.conf, run, log=log, failure="models failed")


if __name__ == "__main__":
    sys.exit(main())
