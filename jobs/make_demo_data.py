"""Write the demo lakehouse tables: spark-submit jobs/make_demo_data.py [--obligors N]."""

from __future__ import annotations

import argparse
import logging
import sys

from riskudf.cli import EXIT_BAD_INPUT, EXIT_OK, iso_date, setup_logging
from riskudf.config import ConfigError, load_config
from riskudf.demo import DemoSpec, write_demo_tables
from riskudf.spark import build_spark

log = logging.getLogger("make_demo_data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--obligors", type=int, default=5000, help="portfolio size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--as-of", type=iso_date, default=DemoSpec.as_of, help="latest date the data reaches"
    )
    parser.add_argument(
        "--observation-date",
        type=iso_date,
        default=DemoSpec.observation_date,
        help="cohort date of the training documents and 12-month outcomes",
    )
    parser.add_argument(
        "--shift",
        type=float,
        default=0.0,
        help="population shift: added to every obligor's latent risk (e.g. 1.0: a riskier book)",
    )
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    if args.obligors < 1:
        parser.error("--obligors must be at least 1")
    setup_logging()
    try:
        conf = load_config(args.conf)
    except ConfigError as exc:
        log.error("bad input: %s", exc)
        return EXIT_BAD_INPUT
    spark = build_spark(conf.spark)
    spec = DemoSpec(
        seed=args.seed,
        as_of=args.as_of,
        observation_date=args.observation_date,
        shift=args.shift,
    )
    counts = write_demo_tables(
        spark,
        database=conf.tables.database,
        n_obligors=args.obligors,
        spec=spec,
        filing_lookback_days=conf.scoring.filing_lookback_days,
    )
    for table, rows in counts.items():
        print(f"{conf.tables.database}.{table}: {rows} rows")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
