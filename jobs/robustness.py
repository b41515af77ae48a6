"""The robustness report of any model version, on its own test split (docs/governance.md).

spark-submit jobs/robustness.py --model models/demo [--version V] [--conf ...]

Verifies the artifact, rebuilds its test split from its training table at the recorded Delta
version, runs the perturbation suite with this conf's thresholds (training.robustness), and
replaces the version's rows of model_robustness. The training job runs the same suite after
evaluation; this command is for older versions and changed thresholds. The gate reads the
manifest's report, else this table's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from riskudf.config import RiskConf
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.governance import robustness
from riskudf.lakehouse.session import build_spark
from riskudf.model.artifact import ArtifactError
from riskudf.model.load import load_artifact
from riskudf.model.registry import model_dir_of, robustness_line
from riskudf.training.pipeline import robustness_of, version_splits

log = logging.getLogger("robustness")


def model_name_of(path: Path) -> str:
    """``models/demo`` and ``models/demo.versions/<version>`` are both model ``demo``."""
    if path.parent.name.endswith(".versions"):
        return path.parent.name.removesuffix(".versions")
    return path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="the model's link, e.g. models/demo"
    )
    parser.add_argument(
        "--version", default=None, help="a registered version (default: the link's)"
    )
    add_conf_argument(parser)
    args = parser.parse_args(argv)

    def run(conf: RiskConf) -> int:
        spark = build_spark(conf.spark)
        registry = conf.tables.qualified("model_registry")
        directory = model_dir_of(spark, registry, args.model, args.version)
        manifest, tokenizer, model = load_artifact(directory)
        training, data, splits = version_splits(
            spark,
            manifest,
            redaction=conf.redaction,
            robustness_conf=conf.training.robustness,
        )
        summary = robustness_of(
            tokenizer,
            model,
            splits,
            data,
            training,
            calibration=manifest.calibration,
            grading=conf.grading,
            redaction=conf.redaction,
            features=manifest.features,
        )
        table = conf.tables.qualified("model_robustness")
        name = model_name_of(args.model)
        robustness.write_report(spark, table, name, manifest.model_version, summary)
        print(f"{name} {manifest.model_version}, {summary['documents']} test documents:")
        for t in summary["tests"]:
            print(f"  {t['test']:<22} {t['kind']:<13} {t['status']:<12} {t['detail']}")
        print(f"{robustness_line(summary)}; written to {table}")
        return EXIT_OK

    return run_job(args.conf, run, log=log, failure="robustness failed", bad_input=(ArtifactError,))


if __name__ == "__main__":
    sys.exit(main())
