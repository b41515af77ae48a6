"""The nightly job on a real Spark standalone cluster: a master and two workers on loopback, each
with its own executor JVM and one stand-in GPU address, submitted with conf/standalone.yaml.

It runs in the spark-submit tests' project (conftest ``submitted``) after them (the file name
sorts after test_spark_submit.py) and compares with their clean local run."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import pytest
from conftest import PD_ATOL, free_port
from pyspark.sql import functions as F
from test_spark_submit import ROOT, assert_no_sentinel, run_in

from riskudf.lakehouse.cluster import ClusterSpec, start, start_history, stop

DAY = dt.date(2026, 11, 28)  # the session's clean local run (conftest clean_run)
NEXT = dt.date(2026, 11, 29)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    spec = ClusterSpec(
        tmp_path_factory.mktemp("cluster"), port=free_port(), ui_port=free_port(), memory="3g"
    )
    start(spec)
    try:
        yield spec
    finally:
        stop(spec.state)


def run_on(root: Path, conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A job through the conf's submit section, as `make score CONF=...` runs it."""
    submit_module = [sys.executable, "-m", "riskudf.lakehouse.submit", "--run", "--conf"]
    return run_in(root, [*submit_module, str(conf), *args])


@dataclass(frozen=True)
class Backfill:
    """A backfill of two dates on the cluster, incremental: the first date scores every
    document (the local run's fingerprints differ: a GPU conf), the second carries the rows
    whose documents did not change."""

    proc: subprocess.CompletedProcess[str]
    events: Path
    runs: list[dict]  # oldest first
    scores: dict[dt.date, dict[str, tuple]]
    changed: str


@pytest.fixture(scope="module")
def backfill(spark, submitted, clean_run, tiny_model: Path, cluster: ClusterSpec) -> Backfill:
    root, warehouse = submitted.root, submitted.warehouse
    events = root / "standalone-events"
    on_cluster = root / "standalone.yaml"
    on_cluster.write_text(
        f"base: {ROOT / 'conf/standalone.yaml'}\n"
        f"scoring:\n  model_dir: {tiny_model}\n  arrow_batch_rows: 2\n"
        # Monitoring and Z-ordering are the same code on any master; the suite runs them locally.
        "monitoring:\n  enabled: false\n"
        "bi:\n  zorder_after_write: false\n"
        f"spark:\n  event_log_dir: {events}\n"
        "  settings: {spark.eventLog.compress: 'false'}\n"
        f"submit:\n  master: {cluster.url}\n"
    )
    changed = sorted(clean_run.scores)[-1]
    spark.createDataFrame(
        [("R-CHANGED", changed, NEXT, "Two payments 60 days past due this quarter.")],
        "report_id string, obligor_id string, report_date date, text string",
    ).write.format("delta").mode("append").save(str(warehouse / "credit_reports"))
    proc = run_on(
        root,
        on_cluster,
        "jobs/score_portfolio.py",
        "--from",
        DAY.isoformat(),
        "--to",
        NEXT.isoformat(),
        "--mode",
        "incremental",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = spark.read.format("delta").load(str(warehouse / "score_runs"))
    runs = runs.where(F.col("as_of_date").isin(DAY, NEXT)).orderBy("started_at").collect()
    rows = spark.read.format("delta").load(str(warehouse / "scored_portfolio"))
    scores: dict[dt.date, dict[str, tuple]] = defaultdict(dict)
    for r in rows.where(F.col("as_of_date").isin(DAY, NEXT)).collect():
        scores[r["as_of_date"]][r["obligor_id"]] = (
            r["pd"],
            r["grade"],
            r["decision"],
            r["carried_forward"],
        )
    # The clean run, the killed-driver test's rerun (when it ran first), then the backfill.
    return Backfill(proc, events, [r.asDict(recursive=True) for r in runs[-2:]], scores, changed)


def test_a_cluster_run_scores_like_local_mode(backfill: Backfill, clean_run) -> None:
    first = backfill.runs[0]
    assert (first["as_of_date"], first["status"], first["rows_carried_forward"]) == (
        DAY,
        "success",
        0,
    )
    on_cluster = backfill.scores[DAY]
    assert on_cluster.keys() == clean_run.scores.keys()
    largest = max(abs(on_cluster[k][0] - v[0]) for k, v in clean_run.scores.items())
    print(f"largest PD difference, standalone cluster against local[2]: {largest:.3g}")
    assert largest <= PD_ATOL
    assert {k: v[1:3] for k, v in on_cluster.items()} == {
        k: v[1:3] for k, v in clean_run.scores.items()
    }


def test_the_model_loads_once_per_python_worker(backfill: Backfill) -> None:
    first, second = backfill.runs
    workers = first["scoring_workers"]
    # Both executors scored, each in one Python worker that kept its model across its tasks
    # and batches (Arrow batches of 2 rows).
    assert sorted(w["executor"] for w in workers) == ["0", "1"]
    assert [w["model_loads"] for w in workers] == [1, 1]
    assert sum(w["rows"] for w in workers) == first["rows_scored"]
    assert sum(w["tasks"] for w in workers) > 2 and sum(w["batches"] for w in workers) > 4
    assert all(w["max_batch_rows"] <= 2 and w["device"] == "cpu" for w in workers)
    # The second date, in the same application: only the changed documents were scored, and no
    # worker loaded the model a second time (once per worker, not once per date).
    assert (second["as_of_date"], second["mode"]) == (NEXT, "incremental")
    rescored = {k for k, v in backfill.scores[NEXT].items() if not v[3]}
    assert backfill.changed in rescored
    assert second["rows_carried_forward"] == second["rows_scored"] - len(rescored) > 10
    assert sum(w["rows"] for w in second["scoring_workers"]) == len(rescored)
    loads: dict[tuple[str, int], int] = defaultdict(int)
    for w in workers + second["scoring_workers"]:
        loads[(w["host"], w["pid"])] += w["model_loads"]
    assert set(loads.values()) == {1}
    carried = {k: v for k, v in backfill.scores[NEXT].items() if k not in rescored}
    assert carried == {k: (*backfill.scores[DAY][k][:3], True) for k in carried}


def events_of(events: Path) -> list[list[dict]]:
    """The event logs of the cluster runs (Spark 4 writes a folder of rolled files per app)."""
    apps = []
    for folder in sorted(events.glob("eventlog_v2_app-*")):
        lines = [
            json.loads(line)
            for path in sorted(folder.glob("events_*"))
            for line in path.read_text().splitlines()
        ]
        apps.append(lines)
    return apps


def concurrency(tasks: list[tuple[int, int]]) -> int:
    """The most tasks running at one time, from (launch, finish) times."""
    edges = sorted([(t0, 1) for t0, _ in tasks] + [(t1, -1) for _, t1 in tasks])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_only_the_scoring_stage_asks_for_a_gpu(backfill: Backfill, cluster: ClusterSpec) -> None:
    (events,) = events_of(backfill.events)
    executors = {
        e["Executor ID"]: e["Executor Info"]["Resources"]["gpu"]["addresses"]
        for e in events
        if e["Event"] == "SparkListenerExecutorAdded"
    }
    assert sorted(executors.values()) == [["0"], ["1"]]
    profile_of = {
        e["Stage Info"]["Stage ID"]: e["Stage Info"]["Resource Profile Id"]
        for e in events
        if e["Event"] == "SparkListenerStageSubmitted"
    }
    spans: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if e["Event"] == "SparkListenerTaskEnd":
            # The executor's own time: the driver stamps "Finish Time" when it has the result,
            # a few ms after the executor freed the slot and took its next task.
            info, metrics = e["Task Info"], e["Task Metrics"]
            ran = metrics["Executor Deserialize Time"] + metrics["Executor Run Time"]
            spans[e["Stage ID"]][info["Executor ID"]].append(
                (info["Launch Time"], info["Launch Time"] + ran)
            )
    gpu_stages = [stage for stage in spans if profile_of[stage] != 0]
    # One scoring stage per date, each of 4 tasks (scoring.partitions) run one at a time per
    # executor (one GPU each); every other stage as wide as the executor's 2 cores.
    assert [sum(len(t) for t in spans[s].values()) for s in gpu_stages] == [4, 4]
    widest = {
        gpu: max(
            concurrency(t) for s in spans if (s in gpu_stages) == gpu for t in spans[s].values()
        )
        for gpu in (True, False)
    }
    assert widest == {True: 1, False: 2}
    # Each scoring task saw the address of its own executor's GPU.
    workers = backfill.runs[0]["scoring_workers"]
    assert {w["executor"]: w["resources"] for w in workers} == {
        executor: [f"gpu:{a}" for a in addresses] for executor, addresses in executors.items()
    }
    # The history server (make history) lists the run from the same event logs.
    url = start_history(cluster.state, backfill.events, port=free_port())
    try:
        listed = applications(url, wait_s=60)
    finally:
        stop(cluster.state, names=["history"])
    assert listed == ["riskudf-standalone"]


def applications(url: str, wait_s: float) -> list[str]:
    """The application names the history server lists, once its first scan found some."""
    deadline = time.monotonic() + wait_s
    while True:
        with urlopen(f"{url}/api/v1/applications", timeout=30) as response:
            names = [app["name"] for app in json.load(response)]
        if names or time.monotonic() > deadline:
            return names
        time.sleep(1)


def test_no_report_text_reaches_the_cluster_runs_outputs(spark, submitted, backfill) -> None:
    assert_no_sentinel(spark, submitted.warehouse, backfill.proc)
