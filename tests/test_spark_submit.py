"""The documented command line: spark-submit with the project's Spark defaults, no --packages."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from pyspark.sql import functions as F

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
    """spark-submit of the venv with ``args``, in the project folder ``cwd``."""
    spark_submit = Path(sys.executable).parent / "spark-submit"
    return run_in(cwd, [str(spark_submit), *args], failpoint=failpoint)


def run_in(cwd: Path, command: list[str], failpoint: str = "") -> subprocess.CompletedProcess[str]:
    """``command`` in the project folder ``cwd``, with its Spark defaults and the venv first on
    PATH (where the submit module finds spark-submit)."""
    env = {
        **os.environ,
        "SPARK_CONF_DIR": str(cwd / "conf/spark"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "RISKUDF_FAILPOINT": failpoint,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        command,
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
            (
                "S-1",
                ids[0],
                day,
                f"Holder {SENTINEL}, born 1931, of 4471 Sentinel Road. No delinquencies.",
            ),
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


def output_state(spark, warehouse: Path, day: dt.date, *, with_run: bool) -> dict[str, list[str]]:
    state = {}
    for table in ("scored_portfolio", "scoring_quarantine"):
        df = spark.read.format("delta").load(str(warehouse / table))
        df = df.where(F.col("as_of_date") == day)
        if not with_run:
            df = df.drop("run_id", "scored_run_id", "scored_at", "quarantined_at")
        state[table] = sorted(repr(tuple(r)) for r in df.collect())
    return state


@dataclass(frozen=True)
class Submitted:
    """A project-like folder with demo data (and sentinels) made by one spark-submit."""

    root: Path
    warehouse: Path
    conf: Path  # an overlay on the shipped local conf, as a user would write one
    quiet: Path  # the same without monitoring


@contextmanager
def submitted_project(spark, tiny_model: Path, root: Path) -> Iterator[Submitted]:
    """A project with demo data and sentinels (the session's ``submitted`` fixture: each
    spark-submit costs a JVM, a metastore and a model load, so the suite makes one)."""
    with project(root):
        conf, quiet = root / "test.yaml", root / "quiet.yaml"
        conf.write_text(f"base: {ROOT / 'conf/local.yaml'}\nscoring:\n  model_dir: {tiny_model}\n")
        quiet.write_text(f"base: {conf}\nmonitoring:\n  enabled: false\n")
        made = submit(root, "demo/make_data.py", "--obligors", "20", "--conf", str(conf))
        assert made.returncode == 0, made.stderr[-3000:]
        warehouse = root / "lakehouse/warehouse/risk.db"
        plant_sentinels(spark, warehouse)
        yield Submitted(root, warehouse, conf, quiet)
    assert (root / "lakehouse/metastore_db").is_dir()


CLEAN_DAY = dt.date(2026, 11, 28)


@dataclass(frozen=True)
class CleanRun:
    """The session's clean local[2] run of CLEAN_DAY in the ``submitted`` project."""

    proc: subprocess.CompletedProcess[str]
    n_scored: int
    full: dict[str, list[str]]  # output_state with run ids
    plain: dict[str, list[str]]  # and without
    z_orders: list[str]
    scores: dict[str, tuple]  # obligor_id: (pd, grade, decision)


def clean_local_run(spark, submitted: Submitted) -> CleanRun:
    score = ("jobs/score_portfolio.py", "--as-of", CLEAN_DAY.isoformat())
    clean = submit(submitted.root, *score, "--conf", str(submitted.quiet))
    assert clean.returncode == 0, clean.stderr[-3000:]
    scored = spark.read.format("delta").load(str(submitted.warehouse / "scored_portfolio"))
    rows = scored.where(F.col("as_of_date") == CLEAN_DAY).collect()
    return CleanRun(
        clean,
        len(rows),
        output_state(spark, submitted.warehouse, CLEAN_DAY, with_run=True),
        output_state(spark, submitted.warehouse, CLEAN_DAY, with_run=False),
        z_orders(spark, submitted.warehouse),
        {r["obligor_id"]: (r["pd"], r["grade"], r["decision"]) for r in rows},
    )


def assert_no_sentinel(spark, warehouse: Path, *procs: subprocess.CompletedProcess[str]) -> None:
    """No sentinel in any output table, any Delta log, or anything the jobs printed."""
    for table in OUTPUTS:
        for row in spark.read.format("delta").load(str(warehouse / table)).collect():
            assert SENTINEL not in repr(tuple(row)), table
        for log in (warehouse / table / "_delta_log").glob("*.json"):
            assert SENTINEL not in log.read_text(), log
    for proc in procs:
        assert SENTINEL not in proc.stdout + proc.stderr


def z_orders(spark, warehouse: Path) -> list[str]:
    history = spark.sql(f"DESCRIBE HISTORY delta.`{warehouse / 'scored_portfolio'}`").collect()
    return [h["operationParameters"]["zOrderBy"] for h in history if h["operation"] == "OPTIMIZE"]


@pytest.mark.slow
def test_killed_driver_then_rerun_beside_a_failing_run_and_no_text_leaks(
    spark, submitted, clean_run
) -> None:
    """A clean run; a driver killed mid-commit; then two drivers at once: the rerun of the
    killed run's date (it takes over the dead run's hold) and a run of another date that
    commits its rows, waits, and fails (exit 1, logged). One row per obligor throughout; the
    rerun's outputs equal the clean run's; the failed run's undo puts back its own date only."""
    root, warehouse = submitted.root, submitted.warehouse
    day = CLEAN_DAY
    score = ("jobs/score_portfolio.py", "--as-of", day.isoformat(), "--conf", str(submitted.quiet))

    clean, n_scored = clean_run.proc, clean_run.n_scored
    assert f"scored {n_scored} of 20 obligors as of 2026-11-28" in clean.stdout
    assert len(clean_run.scores) == n_scored
    clean_full, clean_plain, optimized = clean_run.full, clean_run.plain, clean_run.z_orders
    assert output_state(spark, warehouse, day, with_run=True) == clean_full
    assert any("NOT_TEXT" in row for row in clean_full["scoring_quarantine"])

    # The driver dies between the quarantine commit and the scores commit (SIGKILL, no cleanup).
    killed = submit(root, *score, failpoint="between_commits:kill")
    assert killed.returncode != 0
    after_kill = output_state(spark, warehouse, day, with_run=True)
    assert after_kill["scored_portfolio"] == clean_full["scored_portfolio"]
    held = spark.read.format("delta").load(str(warehouse / "scoring_locks"))
    assert held.where(F.col("as_of_date") == day).count() == 1  # the dead run's hold

    # Another date's driver commits its rows and stalls before its run log; meanwhile the
    # rerun scores and publishes the killed run's date; then the stalled one fails.
    other = dt.date(2026, 11, 26)
    gate = root / "release"
    env = {
        **os.environ,
        "SPARK_CONF_DIR": str(root / "conf/spark"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "RISKUDF_FAILPOINT": f"before_run_log:stall:{gate}",
    }
    first = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "spark-submit"),
            "jobs/score_portfolio.py",
            "--conf",
            str(submitted.quiet),
            "--as-of",
            other.isoformat(),
        ],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(Path(f"{gate}.reached"))
        rerun = submit(root, *score)  # takes over the dead run's hold
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    finally:
        gate.touch()
        out, err = first.communicate(timeout=600)
    assert first.returncode == 1, err[-3000:]
    # Under spark-submit the Python driver's log reaches the launcher's stdout.
    assert "ERROR score_portfolio: scoring run failed: FailpointError" in out, out[-3000:]

    assert output_state(spark, warehouse, day, with_run=False) == clean_plain
    assert f"scored {n_scored} of 20 obligors as of 2026-11-28" in rerun.stdout
    runs = spark.read.format("delta").load(str(warehouse / "score_runs"))
    of_day = runs.where(F.col("as_of_date") == day).orderBy("started_at").collect()
    # The killed run left no row: it never got to write one.
    assert [(r["status"], r["error"]) for r in of_day] == [("success", None), ("success", None)]
    kept = spark.read.format("delta").load(str(warehouse / "scored_portfolio"))
    kept = kept.where(F.col("as_of_date") == day)
    assert kept.count() == of_day[-1]["rows_scored"] > 0
    assert {r["run_id"] for r in kept.select("run_id").distinct().collect()} == {
        of_day[-1]["run_id"]
    }
    [failed] = runs.where(F.col("as_of_date") == other).collect()
    assert (failed["status"], failed["error"]) == ("failed", "FailpointError")
    scored = spark.read.format("delta").load(str(warehouse / "scored_portfolio"))
    assert scored.where(F.col("as_of_date") == other).count() == 0
    # After each published nightly write the date is compacted and Z-ordered by obligor_id.
    assert z_orders(spark, warehouse) == ['["obligor_id"]', *optimized]
    assert optimized and set(optimized) == {'["obligor_id"]'}
    stalled = subprocess.CompletedProcess([], 1, out, err)
    assert_no_sentinel(spark, warehouse, clean, killed, rerun, stalled)


@pytest.mark.slow
def test_a_run_with_a_failing_task_leaks_no_input_text(spark, submitted) -> None:
    """A scoring task fails (the UDF raises after its first row): the run fails, and neither its
    output (driver and, in local mode, executor logs) nor the tables hold a sentinel."""
    day = dt.date(2026, 11, 25)
    score = ("jobs/score_portfolio.py", "--as-of", day.isoformat(), "--conf", str(submitted.quiet))
    failed = submit(submitted.root, *score, failpoint="udf:raise:1")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Lost task" in failed.stderr  # the executor's log of the failing task is there
    assert_no_sentinel(spark, submitted.warehouse, failed)


def test_spark_logs_withhold_values_that_failures_quote(tmp_path: Path) -> None:
    """conf/spark/log4j2.properties: a cast in a task, a Python UDF and the driver's analysis
    each fail on a value; the value is in no log line, the error class is."""
    probe = run_in(
        ROOT, [str(Path(sys.executable).parent / "spark-submit"), "tests/log_probe.py", SENTINEL]
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.splitlines()[-3:] == [
        "cast failed: NumberFormatException",
        "udf failed: PythonException",
        "analysis failed: NumberFormatException",
    ]
    assert "Lost task" in probe.stderr and "[CAST_INVALID_INPUT] (message withheld)" in probe.stderr
    assert SENTINEL not in probe.stdout + probe.stderr


def wait_for(path: Path, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.5)
