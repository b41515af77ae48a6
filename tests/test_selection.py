"""Issue 21: the training job never lets the benchmark win silently, and checks its outputs
before it trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskudf.config import load_config
from riskudf.entry import EXIT_BAD_INPUT, EXIT_BENCHMARK_WINS
from riskudf.governance.evidence import EvidenceError, load_version
from riskudf.model.artifact import versions_dir
from riskudf.training.pipeline import OutputError, prepare_outputs, selection_of
from tests.test_jobs import job

FILLER = " ".join(["report"] * 40)


def test_selection_compares_on_the_split_that_chose_nothing() -> None:
    # Validation chose the epoch (and the candidate): it flatters the transformer. The
    # calibration split chose nothing; its raw PDs keep the ranking.
    metrics = {
        "validation_raw_auc": 0.80,
        "tfidf_validation_auc": 0.74,
        "calibration_raw_auc": 0.71,
        "tfidf_calibration_auc": 0.74,
    }
    assert selection_of(metrics, "default") == {
        "criterion": "calibration_raw_auc",
        "transformer": 0.71,
        "benchmark": 0.74,
        "verdict": "benchmark_better",
    }
    metrics["calibration_raw_auc"] = 0.74  # a tie goes to the transformer
    assert selection_of(metrics, "default")["verdict"] == "transformer_better"
    del metrics["calibration_raw_auc"]  # no calibration split (calibration none)
    assert selection_of(metrics, "default")["criterion"] == "validation_raw_auc"


def test_outputs_are_checked_and_created_before_training(spark, tmp_path: Path) -> None:
    assert not spark.catalog.databaseExists("fresh_registry_db")
    prepare_outputs(spark, tmp_path / "models" / "m", "fresh_registry_db.model_registry")
    assert spark.catalog.tableExists("fresh_registry_db.model_registry")
    assert "verdict" in spark.table("fresh_registry_db.model_registry").columns
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        prepare_outputs(spark, blocker / "m", None)


@pytest.fixture(scope="module")
def words_beyond_the_window(spark) -> str:
    """The label's word sits after 40 filler words: a 16-token window never sees it, TF-IDF
    does."""
    rows = []
    for i in range(160):
        bad = i % 4 == 0
        word = "arrears" if bad else "punctual"
        rows.append((f"o{i:03d}", "retail", f"{FILLER} {word}", int(bad)))
    spark.sql("CREATE DATABASE IF NOT EXISTS selection")
    frame = spark.createDataFrame(rows, "obligor_id string, segment string, text string, y int")
    frame.write.format("delta").mode("overwrite").saveAsTable("selection.training")
    return "selection.training"


def _train(conf: Path, table: str, output: Path, *extra: str) -> int:
    args = ["--train-table", table, "--label-col", "y", "--output", str(output)]
    return job("train").main([*args, "--conf", str(conf), *extra])


def test_a_better_benchmark_is_loud_recorded_and_not_published(
    spark, tiny_backbone, make_conf, tmp_path, capsys, words_beyond_the_window
) -> None:
    output = tmp_path / "models" / "m"
    conf = make_conf(
        database="selection",
        model_dir=output,
        training__backbone=str(tiny_backbone),
        training__max_length=16,
        training__max_train_rows=0,
    )
    assert _train(conf, words_beyond_the_window, output, "--model-version", "lost-1") == (
        EXIT_BENCHMARK_WINS
    )
    out = capsys.readouterr().out
    assert "THE BENCHMARK WINS" in out and "NOT published" in out
    assert not output.exists()  # the model in use is untouched
    aside = versions_dir(output) / "lost-1"  # set aside: a version nothing points at
    card = (aside / "MODEL_CARD.md").read_text()
    assert "**WARNING: the benchmark beats this model**" in card
    assert "NOT published" in card
    manifest = json.loads((aside / "manifest.json").read_text())
    assert manifest["training"]["selection"]["verdict"] == "benchmark_better"
    assert manifest["training"]["selection"]["criterion"] == "calibration_raw_auc"
    assert manifest["metrics"]["tfidf_calibration_auc"] == pytest.approx(1.0)
    row = spark.table("selection.model_registry").where("model_version = 'lost-1'").first()
    assert (row["verdict"], row["published"], row["model_dir"]) == (
        "benchmark_better",
        False,
        str(aside),
    )

    # Publishing it anyway takes the flag, and is recorded.
    assert (
        _train(
            conf,
            words_beyond_the_window,
            output,
            "--model-version",
            "anyway-1",
            "--publish-if-benchmark-wins",
        )
        == 0
    )
    assert "published anyway" in capsys.readouterr().out
    assert "published anyway by explicit choice" in (output / "MODEL_CARD.md").read_text()
    row = spark.table("selection.model_registry").where("model_version = 'anyway-1'").first()
    assert (row["verdict"], row["published"], row["model_dir"]) == (
        "benchmark_better",
        True,
        str(versions_dir(output) / "anyway-1"),
    )
    assert output.resolve() == (versions_dir(output) / "anyway-1").resolve()
    assert (aside / "MODEL_CARD.md").read_text() == card  # the earlier version is untouched
    # The gate refuses a set-aside version unless an override says why.
    with pytest.raises(EvidenceError, match="set aside"):
        load_version(spark, load_config(conf), "lost-1")
    assert load_version(spark, load_config(conf), "lost-1", allow_unpublished=True).path == aside
    # A version is published once: naming it again fails before any training.
    again = _train(conf, words_beyond_the_window, output, "--model-version", "anyway-1")
    assert again == EXIT_BAD_INPUT
    with pytest.raises(OutputError, match="'anyway-1' is already published"):
        prepare_outputs(spark, output, None, "anyway-1")
