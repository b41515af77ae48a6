"""The documented command line: spark-submit with the project's Spark defaults, no --packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def submit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPARK_CONF_DIR": str(ROOT / "conf/spark"),
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
    # A project-like working directory: the jobs, the jars and the conf; a fresh lakehouse.
    for name in ("jobs", "jars", "conf"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "lakehouse").mkdir()
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
    assert (tmp_path / "lakehouse/metastore_db").is_dir()
