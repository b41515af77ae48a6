"""The int8 version of a published fp32 model version (docs/training.md, int8 versions).

spark-submit jobs/quantize.py --model models/demo [--version V] [--conf ...]

Verifies the fp32 artifact, rebuilds its splits from its training table at the recorded Delta
version, quantises it, calibrates and evaluates the int8 model on them with its own robustness
report, and publishes it as ``<version>-int8`` (no alias; the gate promotes it like any
version), registered with the fp32 version it came from. ``training.quantize`` does the same in
the training job.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.lakehouse.session import build_spark
from riskudf.model.artifact import ArtifactError
from riskudf.model.registry import model_dir_of, robustness_line
from riskudf.training.pipeline import quantize_version

log = logging.getLogger("quantize")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="its link, e.g. models/demo")
    parser.add_argument("--version", default=None, help="a registered version (default: the link)")
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def run(conf: RiskConf) -> int:
        spark = build_spark(conf.spark)
        registry = conf.tables.qualified("model_registry")
        directory = model_dir_of(spark, registry, args.model, args.version)
        variant = quantize_version(
            spark,
            directory,
            grading=conf.grading,
            redaction=conf.redaction,
            robustness_conf=conf.training.robustness,
            slice_columns=conf.monitoring.slice_columns,
            registry_table=conf.tables.qualified("model_registry"),
            robustness_table=conf.tables.qualified("model_robustness"),
        )
        c = variant.manifest.training["int8"]
        print(f"int8 version {variant.manifest.model_version} written to {variant.output}")
        print(
            f"test AUC {c['test_auc']:.4f} (fp32 {c['parent_test_auc']:.4f}), ECE "
            f"{c['test_ece']:.4f} (fp32 {c['parent_test_ece']:.4f}); the same grade for "
            f"{c['grade_agreement']:.1%} of the test split, the same decision for "
            f"{c['decision_agreement']:.1%}, largest PD difference {c['max_abs_pd_difference']:.4f}"
        )
        speed = c["docs_per_second"] / c["parent_docs_per_second"]
        print(
            f"docs/s on the evaluation splits: {c['docs_per_second']:.1f} against "
            f"{c['parent_docs_per_second']:.1f} ({speed:.2f}x)"
        )
        summary = variant.manifest.training.get("robustness")
        if summary:
            print(f"robustness: {robustness_line(summary)}")
        return EXIT_OK

    return run_job(args.conf, run, log=log, failure="quantize failed", bad_input=(ArtifactError,))


if __name__ == "__main__":
    sys.exit(main())
