"""The documented command line: spark-submit with the project's Spark defaults, no --packages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from riskudf.metastore import read_spark_defaults, server_from_spark_conf, stop_server

ROOT = Path(__file__).resolve().parents[1]


def project_defaults_on_a_free_port(conf_dir: Path) -> Path:
    """The project's Spark defaults, unchanged but for the metastore server's port.

    The suite must not reach a developer's own lakehouse metastore on the default port.
    """
    conf_dir.mkdir()
    defaults = (ROOT / "conf/spark/spark-defaults.conf").read_text()
    (conf_dir / "spark-defaults.conf").write_text(
        re.sub(
            r"jdbc:derby://127\.0\.0\.1:\d+/", f"jdbc:derby://127.0.0.1:{free_port()}/", defaults
        )
    )
    (conf_dir / "log4j2.properties").write_text((ROOT / "conf/spark/log4j2.properties").read_text())
    return conf_dir


def submit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPARK_CONF_DIR": str(cwd / "conf/spark"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    spark_submit = Path(sys.executable).parent / "spark-submit"
    return subprocess.run(
        [str(spark_submit), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_spark_submit_twice_keeps_one_row_per_obligor(spark, tiny_model, tmp_path) -> None:
    # A project-like working directory: the jobs, the jars and the conf; a fresh lakehouse whose
    # metastore server the first job starts by itself (as on a fresh machine or after a reboot).
    for name in ("jobs", "jars"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "conf").mkdir()
    spark_conf = project_defaults_on_a_free_port(tmp_path / "conf/spark")
    (tmp_path / "lakehouse").mkdir()
    defaults = read_spark_defaults(spark_conf / "spark-defaults.conf")
    server = server_from_spark_conf(defaults, cwd=tmp_path)
    assert server is not None
    try:
        run_jobs_twice(spark, tiny_model, tmp_path)
    finally:
        stop_server(server, jars_dir=ROOT / "jars")
    assert (tmp_path / "lakehouse/metastore_db").is_dir()


def run_jobs_twice(spark, tiny_model: Path, tmp_path: Path) -> None:
    conf = tmp_path / "test.yaml"
    conf.write_text(
        (ROOT / "conf/local.yaml")
        .read_text()
        .replace("model_dir: models/demo", f"model_dir: {tiny_model}")
    )

    made = submit(tmp_path, "jobs/make_demo_data.py", "--obligors", "25", "--conf", str(conf))
    assert made.returncode == 0, made.stderr[-3000:]
    for _ in range(2):
        run = submit(
            tmp_path, "jobs/score_portfolio.py", "--as-of", "2026-11-28", "--conf", str(conf)
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "scored 25 of 25 obligors as of 2026-11-28" in run.stdout

    warehouse = tmp_path / "lakehouse/warehouse/risk.db"
    scored = spark.read.format("delta").load(str(warehouse / "scored_portfolio"))
    runs = spark.read.format("delta").load(str(warehouse / "score_runs"))
    assert scored.count() == 25
    assert scored.select("obligor_id").distinct().count() == 25
    assert [r["status"] for r in runs.collect()] == ["success", "success"]
    # After each nightly write the date is compacted and Z-ordered by obligor_id.
    history = spark.sql(f"DESCRIBE HISTORY delta.`{warehouse / 'scored_portfolio'}`").collect()
    optimized = [h for h in history if h["operation"] == "OPTIMIZE"]
    assert [h["operationParameters"]["zOrderBy"] for h in optimized] == ['["obligor_id"]'] * 2
