"""Scoring throughput benchmark (``make bench``): python jobs/bench.py --docs 600."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from riskudf.bench import Job, main, run_path


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=600, help="demo documents to score")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config (scoring section)")
    parser.add_argument("--model", default=None, help="a riskudf model dir; default: bench model")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--master", default=None, help="default local[<threads>]")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--check-docs", type=int, default=64, help="0: no precision check")
    parser.add_argument("--workdir", default=None, help="keeps documents and model between runs")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_path(Job(**json.loads(args.child)), args.docs)
        return 0
    return main(
        n_docs=args.docs,
        conf=args.conf,
        model_dir=args.model,
        threads=args.threads,
        master=args.master or f"local[{args.threads}]",
        device=args.device,
        check_docs=args.check_docs,
        workdir=args.workdir,
        entry=str(Path(__file__).resolve()),
    )


if __name__ == "__main__":
    sys.exit(cli())
