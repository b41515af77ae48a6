"""Scoring throughput benchmark (``make bench``): python benchmarks/bench.py --docs 600."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pyspark import cloudpickle

# Run as a script (python benchmarks/bench.py, also the per-path children), sys.path has
# benchmarks/ only: add the project root, where `benchmarks` and `demo` import from.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness
from demo import portfolio


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
    parser.add_argument(
        "--long-docs", type=int, default=0, help="documents of 200,000 characters (peak memory)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Spark's Python workers run closures of both modules and have neither folder: by value.
    cloudpickle.register_pickle_by_value(harness)
    cloudpickle.register_pickle_by_value(portfolio)
    if args.child:
        harness.run_path(harness.Job(**json.loads(args.child)), args.docs)
        return 0
    return harness.main(
        n_docs=args.docs,
        conf=args.conf,
        model_dir=args.model,
        threads=args.threads,
        master=args.master or f"local[{args.threads}]",
        device=args.device,
        check_docs=args.check_docs,
        workdir=args.workdir,
        entry=str(Path(__file__).resolve()),
        long_docs=args.long_docs,
    )


if __name__ == "__main__":
    sys.exit(cli())
