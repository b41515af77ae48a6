"""The rendered spark-submit command lines and the job's date arguments (no Spark)."""

from __future__ import annotations

import pytest
from test_jobs import ROOT, job

from riskudf.config import load_config
from riskudf.lakehouse.submit import render, submit_command

JOB = "jobs/score_portfolio.py"


SECURITY = ("spark.authenticate", "spark.network.crypto.enabled", "spark.io.encryption.enabled")


def test_cluster_conf_renders_the_full_command_line() -> None:
    conf = load_config(ROOT / "conf/cluster.yaml")
    command = submit_command(conf, "conf/cluster.yaml", JOB, ["--as-of", "2026-11-28"])
    assert command[:10] == [
        "spark-submit",
        "--master",
        "yarn",
        "--deploy-mode",
        "cluster",
        "--archives",
        "hdfs:///apps/riskudf/riskudf-venv.tar.gz#environment",
        "--files",
        # In cluster deploy mode the YAML and its base go with the job, read by file name.
        "hdfs:///apps/riskudf/gpu-discovery.sh,conf/cluster.yaml,conf/base.yaml",
        "--jars",
    ]
    assert command[-5:] == [JOB, "--as-of", "2026-11-28", "--conf", "cluster.yaml"]
    settings = dict(
        command[i + 1].split("=", 1) for i, part in enumerate(command[:-2]) if part == "--conf"
    )
    assert {k: settings[k] for k in sorted(settings) if "python" in k or "gpu" in k} == {
        "spark.executor.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": "./gpu-discovery.sh",
        "spark.pyspark.driver.python": "./environment/bin/python",
        "spark.pyspark.python": "./environment/bin/python",
        "spark.python.worker.reuse": "true",
    }
    # Only the scoring stage asks for a GPU (its ResourceProfile, see test_cluster): no global
    # task amount or task cores, and no address-space limit on the Python workers (CUDA).
    assert not {k for k in settings if k.startswith("spark.task.")}
    assert "spark.executor.pyspark.memory" not in settings
    assert conf.scoring.gpu is not None and conf.scoring.gpu.task_gpus == 1.0
    assert settings["spark.executor.memoryOverhead"] == "12g"
    assert settings["spark.app.name"] == "riskudf-nightly"
    # Document text is shuffled and spilled: RPC authenticated and encrypted, local disks too.
    assert {k: settings.get(k) for k in SECURITY} == dict.fromkeys(SECURITY, "true")
    assert render(command, job=JOB).splitlines()[1] == "  --master yarn \\"


def test_local_conf_leaves_the_launch_to_spark_defaults() -> None:
    conf = load_config(ROOT / "conf/local.yaml")
    command = submit_command(conf, "conf/local.yaml", JOB, ["--from", "2026-11-01"])
    assert command == [
        "spark-submit",
        "--conf",
        "spark.app.name=riskudf",
        JOB,
        "--from",
        "2026-11-01",
        "--conf",
        "conf/local.yaml",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "2026-11-01"],
        ["--as-of", "2026-11-01", "--to", "2026-11-03"],
        ["--as-of", "2026-11-01", "--from", "2026-11-01", "--to", "2026-11-03"],
        ["--as-of", "2026-11-01", "--mode", "partial"],
    ],
)
def test_score_job_rejects_inconsistent_dates_and_modes(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        job("score_portfolio").main([*args, "--conf", "conf/local.yaml"])
    assert exit_info.value.code == 2
