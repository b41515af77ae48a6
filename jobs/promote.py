"""Put a model version to the promotion gate; it becomes champion unless a test is red.

spark-submit jobs/promote.py --model demo [--version V | --rollback] --by NAME [--cohorts ...]
  [--override-reason TEXT] [--reason TEXT] [--knowledge observation|current] [--conf ...]

The gate scores the latest matured cohort outside the version's training set (or --cohorts)
with the version and with the current champion, and tests calibration (Jeffreys, binomial,
per grade and portfolio), discrimination (AUC against the test split's), concentration
(Herfindahl) and stability (migration bandwidths from the champion's grades). Every decision
goes to model_promotions and a report. Rollback: --rollback (the champion before the current
one) or --version of an earlier one, through the same gate.
Exit codes: 0 promoted (or overridden), 7 refused (a red test; nothing changed), 2 bad input,
1 failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from riskudf.config import RiskConf
from riskudf.entry import (
    EXIT_OK,
    EXIT_PROMOTION_REFUSED,
    add_conf_argument,
    iso_date,
    run_job,
)
from riskudf.governance.evidence import EvidenceError
from riskudf.governance.promote import promote
from riskudf.lakehouse.session import build_spark
from riskudf.model.aliases import AliasError
from riskudf.scoring.pipeline import business_date

log = logging.getLogger("promote")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the model's name (e.g. demo)")
    parser.add_argument(
        "--version", help="model_version from the registry (default: the model's challenger)"
    )
    parser.add_argument(
        "--rollback",
        action="store_true",
        help="promote the champion before the current one (model_aliases), through the gate",
    )
    parser.add_argument("--by", required=True, help="who decides (name or user id)")
    parser.add_argument("--reason", help="why, recorded with the alias change")
    parser.add_argument(
        "--override-reason",
        help="promote despite red tests; the written reason is recorded with the decision",
    )
    parser.add_argument(
        "--cohorts", nargs="*", type=iso_date, default=[], help="matured observation dates"
    )
    parser.add_argument(
        "--knowledge",
        choices=("observation", "current"),
        default="observation",
        help="inputs as known at each cohort date (time travel), or their current versions",
    )
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def run(conf: RiskConf) -> int:
        spark = build_spark(conf.spark)
        promotion = promote(
            spark,
            conf,
            model_name=args.model,
            version=args.version,
            rollback=args.rollback,
            by=args.by,
            today=business_date(dt.datetime.now(dt.UTC), conf.scoring.timezone),
            reason=args.reason,
            override_reason=args.override_reason,
            cohorts=args.cohorts,
            knowledge=args.knowledge,
        )
        colours: dict[str, int] = {}
        for result in promotion.results:
            colours[result.colour] = colours.get(result.colour, 0) + 1
        print(
            f"{args.model} {promotion.model_version}: {promotion.decision.upper()} "
            f"({', '.join(f'{n} {c}' for c, n in sorted(colours.items()))}); "
            f"champion before: {promotion.previous_champion or 'none'}"
        )
        for result in promotion.results:
            if result.colour == "red":
                print(f"  red: {result.test} ({result.scope}, {result.grade}): {result.detail}")
        print(f"evidence: {promotion.evidence}")
        print(f"report: {promotion.report}; record {promotion.promotion_id} in model_promotions")
        return EXIT_PROMOTION_REFUSED if promotion.decision == "refused" else EXIT_OK

    return run_job(
        args.conf, run, log=log, failure="promotion failed", bad_input=(EvidenceError, AliasError)
    )


if __name__ == "__main__":
    sys.exit(main())
