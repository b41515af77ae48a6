"""The run leases on as-of dates (scoring_locks): list them, or force-release a stuck one.

spark-submit jobs/leases.py list
spark-submit jobs/leases.py release --as-of YYYY-MM-DD --reason TEXT [--by NAME]

A forced release deletes the lease whoever holds it and records who released it and why in
scoring_lock_releases; a run that still lives fails its next lease check and writes nothing more.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, iso_date, run_job
from riskudf.lakehouse import leases
from riskudf.lakehouse.session import build_spark

log = logging.getLogger("leases")


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    add_conf_argument(common)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="print every lease")
    release = commands.add_parser("release", parents=[common], help="force-release one date")
    release.add_argument("--as-of", type=iso_date, required=True, help="YYYY-MM-DD")
    release.add_argument("--reason", required=True, help="why; kept in scoring_lock_releases")
    release.add_argument("--by", help="who releases it (default: this OS user)")
    args = parser.parse_args(argv)
    if args.command == "release" and not args.reason.strip():
        parser.error("--reason must not be empty")

    def run(conf: RiskConf) -> int:
        spark = build_spark(conf.spark)
        locks = conf.tables.qualified("scoring_locks")
        if args.command == "list":
            found = leases.leases(spark, locks)
            print("\n".join(leases.lease_lines(found, now=leases.now_utc())))
            print(f"{len(found)} leases in {locks}")
            return EXIT_OK
        lease = leases.force_release(
            spark,
            locks,
            releases=conf.tables.qualified("scoring_lock_releases"),
            as_of=args.as_of,
            reason=args.reason,
            released_by=args.by or getpass.getuser(),
        )
        print(f"released the lease of run {lease.run_id} ({lease.holder}) on {lease.as_of_date}")
        return EXIT_OK

    return run_job(
        args.conf,
        run,
        log=log,
        failure=f"leases {args.command} failed",
        bad_input=(leases.NoLeaseError,),
    )


if __name__ == "__main__":
    sys.exit(main())
