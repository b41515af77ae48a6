"""The spark-submit command line of a job for a given conf: printed, or run.

``python -m riskudf.lakehouse.submit --conf conf/cluster.yaml jobs/score_portfolio.py ...``
prints it (``make submit-check``); with ``--run`` it runs it (the make targets, so that a conf's
submit section, e.g. conf/standalone.yaml's master, applies to every job). In cluster deploy
mode the driver runs on the cluster: the YAML conf and its bases travel with ``--files`` and the
job reads it by its file name.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from riskudf.config import ConfigError, RiskConf, config_chain, load_config


def submit_command(conf: RiskConf, conf_path: str, job: str, job_args: list[str]) -> list[str]:
    """The argument vector of spark-submit for ``job`` with ``job_args`` under ``conf``."""
    submit = conf.submit
    cluster_mode = submit.deploy_mode == "cluster"
    files = list(submit.files) + (_conf_files(conf_path) if cluster_mode else [])
    command = [submit.spark_submit]
    if submit.master:
        command += ["--master", submit.master]
    if submit.deploy_mode:
        command += ["--deploy-mode", submit.deploy_mode]
    for flag, values in (
        ("--archives", submit.archives),
        ("--files", files),
        ("--jars", submit.jars),
    ):
        if values:
            command += [flag, ",".join(values)]
    settings = dict(submit.settings)
    # Executor-level GPU settings come from scoring.gpu; the task amount is the scoring stage's.
    for key, value in (conf.scoring.gpu.spark_settings() if conf.scoring.gpu else {}).items():
        settings.setdefault(key, value)
    if submit.python:
        settings.setdefault("spark.pyspark.python", submit.python)
        settings.setdefault("spark.pyspark.driver.python", submit.python)
    settings.setdefault("spark.app.name", conf.spark.app_name)
    for key in sorted(settings):
        command += ["--conf", f"{key}={settings[key]}"]
    job_conf = Path(conf_path).name if cluster_mode else conf_path
    return [*command, job, *job_args, "--conf", job_conf]


def _conf_files(conf_path: str) -> list[str]:
    """The conf and its bases: --files puts them in one folder, so a base is a bare file name."""
    chain = [str(path) for path, _ in config_chain(conf_path)]
    names = [Path(path).name for path in chain]
    for path, below in zip(chain[1:], chain, strict=False):
        if Path(path).parent != Path(below).parent or names.count(Path(path).name) > 1:
            raise ConfigError(
                f"{below}: in cluster deploy mode its base must be a file in the same folder"
            )
    return chain


def render(command: list[str], *, job: str) -> str:
    """One option (with its value) per line, shell-quoted, ready to paste."""
    lines: list[list[str]] = [[]]
    for part in command:
        if part.startswith("--") or part == job:
            lines.append([])
        lines[-1].append(shlex.quote(part))
    return " \\\n  ".join(" ".join(line) for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conf", required=True, help="YAML config file")
    parser.add_argument("--run", action="store_true", help="run it; exit with its exit code")
    parser.add_argument("job", help="the job script, e.g. jobs/score_portfolio.py")
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="the job's own arguments")
    args = parser.parse_args(argv)
    try:
        command = submit_command(load_config(args.conf), args.conf, args.job, args.job_args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.run:
        return subprocess.run(command, check=False).returncode
    print(render(command, job=args.job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
