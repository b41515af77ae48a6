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

from riskudf.config import RiskConf, TrainingConf
from riskudf.documents.redact import check_model_rules
from riskudf.entry import EXIT_OK, add_conf_argument, run_job
from riskudf.governance import robustness
from riskudf.lakehouse.session import build_spark
from riskudf.model.artifact import ArtifactError
from riskudf.model.load import load_artifact
from riskudf.model.registry import robustness_line, version_dir
from riskudf.training.pipeline import load_and_split

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
        directory = args.model
        if args.version:
            found = version_dir(spark, conf.tables.qualified("model_registry"), args.version)
            if found is None:
                raise ArtifactError(f"model version {args.version!r} is not in the registry")
            directory = Path(found)
        manifest, tokenizer, model = load_artifact(directory)
        if manifest.positive_label < 0:
            raise ArtifactError(f"{manifest.model_version} is a grade classifier: no PD to test")
        check_model_rules(manifest, conf.redaction)
        if "conf" not in manifest.training or manifest.training_table_version is None:
            raise ArtifactError(
                f"{manifest.model_version} records no training conf or table version: its test "
                "split cannot be rebuilt"
            )
        training = TrainingConf.model_validate(manifest.training["conf"]).model_copy(
            update={"robustness": conf.training.robustness}
        )
        data, splits = load_and_split(
            spark, training, redaction=conf.redaction, version=manifest.training_table_version
        )
        summary = robustness.assess(
            tokenizer,
            model,
            splits.test,
            calibration=manifest.calibration,
            grading=conf.grading,
            conf=training.robustness,
            redaction=conf.redaction,
            max_length=manifest.max_length,
            chunking=manifest.chunking,
            features=manifest.features,
            source=f"test split of {data.table} version {data.version}",
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
