"""The documented command line: spark-submit with the project's Spark defaults, no --packages."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port

from riskudf.lakehouse.metastore import read_spark_defaults, server_from_spark_conf, stop_server

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


def submit(cwd: Path, *args: str, failpoint: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPARK_CONF_DIR": str(cwd / "conf/spark"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "RISKUDF_FAILPOINT": failpoint,
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


@contextmanager
def project(tmp_path: Path) -> Iterator[Path]:
    """A project-like working directory: the jobs, the jars and the conf; a fresh lakehouse whose
    metastore server the first job starts by itself (as on a fresh machine or after a reboot).
    """
    for name in ("jobs", "demo", "jars"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "conf").mkdir()
    spark_conf = project_defaults_on_a_free_port(tmp_path / "conf/spark")
    (tmp_path / "lakehouse").mkdir()
    defaults = read_spark_defaults(spark_conf / "spark-defaults.conf")
    server = server_from_spark_conf(defaults, cwd=tmp_path)
    assert server is not None
    try:
        yield tmp_path
    finally:
        stop_server(server, jars_dir=ROOT / "jars")


SENTINEL = "ZQXJ-SENTINEL-4471"
OUTPUTS = ("scored_portfolio", "scoring_quarantine", "score_runs", "scoring_locks")


def plant_sentinels(spark, warehouse: Path) -> None:
    """Text that carries a sentinel: scored, quarantined and set-aside, in reports and filings."""
    ids = sorted(
        r["obligor_id"]
        for r in spark.read.format("delta").load(str(warehouse / "portfolio")).collect()
    )
    day = dt.date(2026, 11, 1)
    spark.createDataFrame(
        [
            ("S-1", ids[0], day, f"Holder {SENTINEL}, 12 Elm Street. No delinquencies."),
            ("S-2", ids[1], day, f"{SENTINEL}\x00\x01\x02 binary"),
            ("S-3", ids[2], day, f"{SENTINEL} " * 20_000),
        ],
        "report_id string, obligor_id string, report_date date, text string",
    ).write.format("delta").mode("append").save(str(warehouse / "credit_reports"))
    spark.createDataFrame(
        [
            ("SF-1", ids[3], day, "8-K", f"Officer {SENTINEL} resigned."),
            ("SF-2", ids[3], day, "8-K", f"{SENTINEL} \ufffd\ufffd"),
        ],
        "filing_id string, obligor_id string, filing_date date, form_type string, text string",
    ).write.format("delta").mode("append").save(str(warehouse / "filings"))


def output_state(spark, warehouse: Path, *, with_run: bool) -> dict[str, list[str]]:
    state = {}
    for table in ("scored_portfolio", "scoring_quarantine"):
        df = spark.read.format("delta").load(str(warehouse / table))
        if not with_run:
            df = df.drop("run_id", "scored_run_id", "scored_at", "quarantined_at")
        state[table] = sorted(repr(tuple(r)) for r in df.collect())
    return state


@pytest.mark.slow
def test_killed_driver_then_rerun_matches_a_clean_run_and_no_text_leaks(
    spark, tiny_model, tmp_path
) -> None:
    """One spark-submit session for all (each submit costs a JVM and a model load): a clean run,
    a killed driver, a failed task, a rerun; one row per obligor throughout."""
    with project(tmp_path):
        killed_driver_then_rerun(spark, tiny_model, tmp_path)
    assert (tmp_path / "lakehouse/metastore_db").is_dir()


def killed_driver_then_rerun(spark, tiny_model: Path, tmp_path: Path) -> None:
    conf = tmp_path / "test.yaml"
    # An overlay on the shipped local conf, as a user would write one.
    conf.write_text(f"base: {ROOT / 'conf/local.yaml'}\nscoring:\n  model_dir: {tiny_model}\n")
    warehouse = tmp_path / "lakehouse/warehouse/risk.db"
    score = ("jobs/score_portfolio.py", "--as-of", "2026-11-28", "--conf", str(conf))
    made = submit(tmp_path, "demo/make_data.py", "--obligors", "20", "--conf", str(conf))
    assert made.returncode == 0, made.stderr[-3000:]
    plant_sentinels(spark, warehouse)

    clean = submit(tmp_path, *score)
    assert clean.returncode == 0, clean.stderr[-3000:]
    scored = spark.read.format("delta").load(str(warehouse / "scored_portfolio"))
    n_scored = scored.count()
    assert f"scored {n_scored} of 20 obligors as of 2026-11-28" in clean.stdout
    assert scored.select("obligor_id").distinct().count() == n_scored
    clean_full = output_state(spark, warehouse, with_run=True)
    clean_plain = output_state(spark, warehouse, with_run=False)
    assert any("NOT_TEXT" in row for row in clean_full["scoring_quarantine"])

    # The driver dies between the quarantine commit and the scores commit (SIGKILL, no cleanup).
    killed = submit(tmp_path, *score, failpoint="between_commits:kill")
    assert killed.returncode != 0
    after_kill = output_state(spark, warehouse, with_run=True)
    assert after_kill["scored_portfolio"] == clean_full["scored_portfolio"]
    locks = spark.read.format("delta").load(str(warehouse / "scoring_locks")).collect()
    assert len(locks) == 1  # the dead run's hold, taken over by the next run

    # A task that raises: exit code 1, nothing changes.
    failed = submit(tmp_path, *score, failpoint="udf:raise:0")
    assert failed.returncode == 1, failed.stderr[-3000:]
    # Under spark-submit the Python driver's log reaches the launcher's stdout.
    logged = re.search(r"ERROR score_portfolio: scoring run failed: (\w+)", failed.stdout)
    assert logged, failed.stdout[-3000:]

    rerun = submit(tmp_path, *score)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert output_state(spark, warehouse, with_run=False) == clean_plain
    assert f"scored {n_scored} of 20 obligors as of 2026-11-28" in rerun.stdout
    runs = spark.read.format("delta").load(str(warehouse / "score_runs")).orderBy("started_at")
    assert [(r["status"], r["error"]) for r in runs.collect()] == [
        ("success", None),
        ("failed", logged.group(1)),
        ("success", None),
    ]  # the killed run left no row: it never got to write one
    # After each published nightly write the date is compacted and Z-ordered by obligor_id.
    history = spark.sql(f"DESCRIBE HISTORY delta.`{warehouse / 'scored_portfolio'}`").collect()
    optimized = [h for h in history if h["operation"] == "OPTIMIZE"]
    assert [h["operationParameters"]["zOrderBy"] for h in optimized] == ['["obligor_id"]'] * 2

    # No sentinel in any output table, any Delta log, or anything the jobs printed.
    for table in OUTPUTS:
        for row in spark.read.format("delta").load(str(warehouse / table)).collect():
            assert SENTINEL not in repr(tuple(row)), table
        for log in (warehouse / table / "_delta_log").glob("*.json"):
            assert SENTINEL not in log.read_text(), log
    for proc in (clean, killed, failed, rerun):
        assert SENTINEL not in proc.stdout + proc.stderr
