"""What each Python worker reports to the run log (score_runs.scoring_workers), the model loaded
at the first batch only, and Arrow batches bounded in bytes."""

from __future__ import annotations

from pathlib import Path
from subprocess import run

import pytest
from pyspark.sql import functions as F

from benchmarks.harness import long_documents
from riskudf.config import GpuConf, SparkConf, load_config
from riskudf.lakehouse.cluster import ClusterSpec, worker_properties
from riskudf.model.artifact import artifact_key, load_artifact_bytes
from riskudf.scoring.pipeline import Documents, Model, score_documents
from riskudf.scoring.scorer import ScoringOptions
from riskudf.scoring.udf import _score_stream
from riskudf.scoring.worker import (
    TaskRecord,
    WorkerStats,
    executor_label,
    loads_by_executor,
    worker_load_count,
    worker_rows,
)


def record(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "executor": "0",
        "host": "h",
        "pid": 1,
        "tasks": 1,
        "batches": 2,
        "rows": 10,
        "model_loads": 1,
        "device": "cpu",
        "precision": "fp32",
        "resources": ["gpu:0"],
        "max_batch_rows": 5,
        "max_batch_chars": 500,
        "peak_rss_mb": 100.0,
    }
    return {**base, **values}


def test_worker_stats_sum_counts_and_keep_peaks_per_worker() -> None:
    param = WorkerStats()
    total = param.zero({})
    total = param.addInPlace(total, {"h:1": record()})
    total = param.addInPlace(
        total,
        {
            "h:1": record(model_loads=0, max_batch_rows=3, peak_rss_mb=150.0),
            "h:2": record(executor="1", pid=2, resources=["gpu:1"]),
        },
    )
    assert worker_rows(total) == [
        record(tasks=2, batches=4, rows=20, max_batch_rows=5, peak_rss_mb=150.0),
        record(executor="1", pid=2, resources=["gpu:1"]),
    ]
    assert loads_by_executor(worker_rows(total)) == {"0": 1, "1": 1}
    assert loads_by_executor([record(), record(pid=3)]) == {"0": 2}


@pytest.mark.parametrize(
    ("environ", "label"),
    [
        ({"SPARK_EXECUTOR_ID": "7", "CONTAINER_ID": "c"}, "7"),
        ({"SPARK_LOG_URL_STDERR": "http://h:1/logPage/?appId=a&executorId=3&logType=stderr"}, "3"),
        ({"CONTAINER_ID": "container_01"}, "container_01"),
        ({}, "driver"),
    ],
)
def test_executor_label_from_what_the_cluster_manager_sets(environ, label) -> None:
    assert executor_label(environ) == label


def test_task_record_counts_batches_rows_and_the_largest_batch() -> None:
    task = TaskRecord()
    task.count(["ab", "cde"])
    task.count(["x" * 10])
    assert (task.batches, task.rows, task.max_rows, task.max_chars) == (2, 3, 2, 10)


def test_a_task_without_rows_loads_no_model() -> None:
    # Nothing to score: the broadcast is never read (None would fail) and nothing is loaded.
    options = ScoringOptions(max_length=64, token_budget=512)
    assert list(_score_stream(iter([]), None, "no-rows", options)) == []  # type: ignore[arg-type]
    assert worker_load_count("no-rows") == 0


def test_stand_in_gpus_are_distinct_per_worker(tmp_path: Path) -> None:
    spec = ClusterSpec(tmp_path, gpus=2)
    for index in (0, 1):
        (tmp_path / f"worker-{index}").mkdir()
    scripts = [
        worker_properties(spec, i)["spark.worker.resource.gpu.discoveryScript"] for i in (0, 1)
    ]
    found = [run([s], capture_output=True, text=True, check=True).stdout for s in scripts]
    assert found == [
        '{"name": "gpu", "addresses": ["0", "1"]}\n',
        '{"name": "gpu", "addresses": ["2", "3"]}\n',
    ]
    assert worker_properties(ClusterSpec(tmp_path, gpus=0), 0) == {}


def test_event_logs_and_gpu_settings_from_conf() -> None:
    assert SparkConf(event_log_dir="/x/events", settings={"a": "b"}).session_settings() == {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": "/x/events",
        "a": "b",
    }
    assert SparkConf(event_log_dir=None).session_settings() == {}
    assert GpuConf().spark_settings() == {"spark.executor.resource.gpu.amount": "1"}


def test_long_documents_have_the_length_asked_for() -> None:
    docs = long_documents(["short text", "another one"], 3, chars=1000)
    assert [len(d) for d in docs] == [1000, 1000, 1000]
    assert docs[0].startswith("short text") and docs[1].startswith("another one")


def test_arrow_batches_are_bounded_in_bytes(spark, tiny_model: Path, make_conf) -> None:
    """12 documents of 5,000 characters in one task: 2,048 rows a batch would take them all at
    once; a 20,000-byte bound splits them into batches of five."""
    manifest, files = load_artifact_bytes(tiny_model)
    model = Model(manifest, files, artifact_key(files), None, tiny_model)
    text = "Payments were made on time. " * 180
    scorable = spark.createDataFrame(
        [(f"O{i:02d}", f"f{i}", 0, 0, [0], text[: 5000 - i]) for i in range(12)],
        "obligor_id string, fingerprint string, n_filings int, report_age_days int, "
        "redactions array<int>, document string",
    )
    documents = Documents(scorable, scorable, scorable, scorable)
    largest = {}
    for bound in (20_000, 2**31 - 2):
        conf = load_config(
            make_conf(
                database="bytes",
                model_dir=tiny_model,
                scoring__partitions=1,
                scoring__arrow_batch_bytes=bound,
                reasons__enabled=False,
            )
        )
        stats = spark.sparkContext.accumulator({}, WorkerStats())
        scored = score_documents(
            spark,
            conf,
            documents,
            model,
            spark.sparkContext.broadcast(files),
            run_id="bytes",
            previous=None,
            failpoint=None,
            stats=stats,
        )
        assert scored.where(F.col("pd").isNotNull()).count() == 12
        scored.unpersist()
        (worker,) = worker_rows(stats.value)
        assert (worker["rows"], worker["model_loads"] <= 1) == (12, True)
        largest[bound] = worker["max_batch_rows"]
    assert largest[2**31 - 2] == 12
    # A batch closes once it reaches the bound (with the row that crossed it): 5 x 5,000.
    assert largest[20_000] == 5
