"""One local Spark session for the suite (Delta, Hive metastore in a temp dir), and tiny models.

The metastore database is served by a Derby network server on a free loopback port, as in the
local lakehouse, so that a second JVM (the BI server under test) can share it with the suite.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DELTA_JARS = sorted(str(path) for path in (ROOT / "jars").glob("delta-*.jar"))
DERBY_CLIENT_JARS = sorted(str(path) for path in (ROOT / "jars").glob("derbyclient-*.jar"))


# What is promised across batchings, processes and code paths (UDF against the in-process
# Scorer, mapper against UDF, reruns, cluster against local): PDs and reason weights agree to
# PD_ATOL absolute. A different batch composition changes padding and kernel blocking, so the
# last float bits differ from CPU to CPU (about 1e-7); only a computation run twice on the
# same batches is compared exactly.
PD_ATOL = 1e-6


def reasons_close(got: list | None, expected: list | None, atol: float = PD_ATOL) -> bool:
    """Reason codes that agree up to float noise: the same codes and descriptions with weights
    within ``atol``, in order of weight. A code may be on one side only when its weight is
    within ``atol`` of dropping out (of zero, or of the other side's smallest weight)."""
    if got is None or expected is None:
        return got is expected
    mine = {r["code"]: r for r in got}
    theirs = {r["code"]: r for r in expected}
    for code in mine.keys() | theirs.keys():
        a, b = mine.get(code), theirs.get(code)
        if a is not None and b is not None:
            if a["description"] != b["description"] or abs(a["weight"] - b["weight"]) > atol:
                return False
            continue
        # Lists of one length swapped a code at the cut; a shorter one lost a weight near 0.
        alone, other = (a, expected) if a is not None else (b, got)
        full = len(got) == len(expected)
        floor = min(r["weight"] for r in other) if full and other else 0.0
        if alone["weight"] > floor + atol:
            return False
    return all(
        later["weight"] <= earlier["weight"] + atol
        for side in (got, expected)
        for earlier, later in pairwise(side)
    )


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pyspark.sql import SparkSession

    from riskudf.lakehouse.metastore import DerbyServer, start_server, stop_server

    if len(DELTA_JARS) != 2 or len(DERBY_CLIENT_JARS) != 1:
        pytest.exit("Delta or Derby jars missing under jars/: run `make install`", returncode=3)
    base = tmp_path_factory.mktemp("spark")
    derby = DerbyServer(host="127.0.0.1", port=free_port(), home=base / "derby")
    start_server(derby, jars_dir=ROOT / "jars")
    try:
        conf_dir = base / "conf"
        conf_dir.mkdir()
        shutil.copy(ROOT / "conf/spark/log4j2.properties", conf_dir)
        # The suite's session must not pick up the local lakehouse's defaults.
        os.environ["SPARK_CONF_DIR"] = str(conf_dir)
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        os.environ["HF_HUB_OFFLINE"] = "1"
        session = (
            SparkSession.builder.master("local[2]")
            .appName("riskudf-tests")
            .config("spark.jars", ",".join(DELTA_JARS))
            .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config(
                "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
            )
            .config("spark.sql.catalogImplementation", "hive")
            .config("spark.sql.warehouse.dir", str(base / "warehouse"))
            .config(
                "spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby://{derby.address}/metastore_db;create=true",
            )
            .config(
                "spark.hadoop.javax.jdo.option.ConnectionDriverName",
                "org.apache.derby.jdbc.ClientDriver",
            )
            .config("spark.driver.extraClassPath", DERBY_CLIENT_JARS[0])
            .config(
                "spark.driver.extraJavaOptions", f"-Dderby.stream.error.file={base / 'derby.log'}"
            )
            .config("spark.driver.memory", "4g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.python.worker.reuse", "true")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.databricks.delta.snapshotPartitions", "2")
            .config("spark.databricks.delta.catalog.update.enabled", "true")
            .getOrCreate()
        )
        yield session
        session.stop()
    finally:
        stop_server(derby, jars_dir=ROOT / "jars")


def _backbone_dir() -> Path:
    from riskudf.training.finetune import default_backbone_dir

    return default_backbone_dir()


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the packaged backbone's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-backbone")
    tokenizer = AutoTokenizer.from_pretrained(str(_backbone_dir()), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def tiny_baseline() -> dict:
    """A monitoring baseline for the tiny model: PDs, token counts, grades and decisions of a
    fixed synthetic validation split, sliced by segment."""
    import numpy as np
    import pandas as pd

    from riskudf.config import load_config
    from riskudf.monitoring.baseline import build_baseline
    from riskudf.scoring.grading import decisions_of, grades_of

    grading = load_config(ROOT / "conf/local.yaml").grading
    rng = np.random.default_rng(5)
    pds = rng.beta(2, 30, 200)
    frame = pd.DataFrame(
        {
            "pd": pds,
            "n_tokens": rng.integers(40, 400, 200).astype("int32"),
            "grade": grades_of(pds, grading),
            "decision": decisions_of(pds, grading),
            "segment": np.where(rng.random(200) < 0.3, "corporate", "retail"),
        }
    )
    frame["truncated"] = frame["n_tokens"] > 64
    return build_baseline(frame, source="tests", slice_columns=("segment",))


@pytest.fixture(scope="session")
def tiny_model(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published riskudf artifact (manifest and checksums, a monitoring baseline) around an
    untrained tiny head."""
    import torch

    from riskudf.model.load import load_sequence_classifier

    torch.manual_seed(1)
    model = load_sequence_classifier(tiny_backbone, num_labels=2)
    out = tmp_path_factory.mktemp("models") / "tiny"
    return publish_tiny(model, tiny_backbone, out, version="tiny-1", baseline=tiny_baseline())


def publish_tiny(model: object, backbone: Path, out: Path, *, version: str, **kw: object) -> Path:
    """Publish an untrained tiny model as a riskudf artifact (window 64, table "tests")."""
    from riskudf.config import TrainingConf
    from riskudf.model.load import load_tokenizer
    from riskudf.training.finetune import publish_model

    publish_model(
        load_tokenizer(backbone),
        model,
        out,
        backbone=str(backbone),
        conf=TrainingConf(max_length=64),
        training_table="tests",
        training_table_version=0,
        metrics={"validation_auc": 0.5},
        model_version=version,
        **kw,  # type: ignore[arg-type]
    )
    return out


@pytest.fixture
def make_conf(tmp_path: Path):
    """Write a test config: conf/local.yaml with the database, model and any key replaced.

    Overrides are given as section__key=value, e.g. ``scoring__partitions=3``.
    """

    def make(*, database: str, model_dir: Path, **overrides: object) -> Path:
        from riskudf.config import load_config

        data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
        data["tables"]["database"] = database
        data["scoring"]["model"] = str(model_dir)
        # Reports go to the test's folder, never the project's lakehouse/.
        data["monitoring"]["report_dir"] = str(tmp_path / "reports")
        data["spark"]["event_log_dir"] = str(tmp_path / "spark-events")
        # One training run per job unless a test asks for the shipped candidates.
        data["training"]["candidates"] = []
        for dotted, value in overrides.items():
            section, key = dotted.split("__")
            data[section][key] = value
        path = tmp_path / f"{database}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return make


@pytest.fixture(scope="session")
def submitted(spark, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """A project-like folder with demo data and sentinels, for the spark-submit tests."""
    from test_spark_submit import submitted_project

    with submitted_project(spark, tiny_model, tmp_path_factory.mktemp("submit")) as made:
        yield made


@pytest.fixture(scope="session")
def clean_run(spark, submitted):
    """The clean local[2] run of 2026-11-28 in ``submitted`` (a reference for the killed-driver
    test and for the standalone cluster's runs)."""
    from test_spark_submit import clean_local_run

    return clean_local_run(spark, submitted)
