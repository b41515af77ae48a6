"""Write the demo lakehouse tables: spark-submit demo/make_data.py [--obligors N]."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from pyspark import cloudpickle

from riskudf.config import ConfigError, load_config
from riskudf.entry import EXIT_BAD_INPUT, EXIT_OK, iso_date
from riskudf.lakehouse.session import build_spark
from riskudf.safe_logging import setup_logging

log = logging.getLogger("make_demo_data")


def demo_module() -> ModuleType:
    """The generator module beside this script, shipped to the executors by value: they run its
    mapInPandas closure and do not have demo/ (it is outside the installed package)."""
    try:
        from demo import portfolio
    except ModuleNotFoundError:  # spark-submit demo/make_data.py: sys.path has demo/, not the root
        portfolio = importlib.import_module("portfolio")
    cloudpickle.register_pickle_by_value(portfolio)
    return portfolio


def main(argv: list[str] | None = None) -> int:
    demo = demo_module()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--obligors", type=int, default=5000, help="portfolio size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--as-of", type=iso_date, default=demo.DemoSpec.as_of, help="latest date the data reaches"
    )
    parser.add_argument(
        "--cohorts",
        type=iso_date,
        nargs="+",
        default=list(demo.DemoSpec.cohorts),
        help="observation dates with 12-month outcomes",
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
    spec = demo.DemoSpec(
        seed=args.seed,
        as_of=args.as_of,
        cohorts=tuple(args.cohorts),
        shift=args.shift,
    )
    counts = demo.write_demo_tables(
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
