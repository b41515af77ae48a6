"""End to end: the real jobs' main() on a small Delta lakehouse with a tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]


def job(name: str) -> ModuleType:
    """A job's module by name (jobs/<name>.py), or by path from the root ("demo/make_data")."""
    path = ROOT / f"{name}.py" if "/" in name else ROOT / "jobs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"jobs_{name.replace('/', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_data_train_and_score(spark, tiny_backbone, make_conf, tmp_path, capsys) -> None:
    model_dir = tmp_path / "models" / "e2e"
    conf = make_conf(
        database="e2e",
        model_dir=model_dir,
        training__backbone=str(tiny_backbone),
        training__max_length=64,
        training__batch_size=8,
        training__max_train_rows=0,
    )
    # 120 obligors of a riskier book (shift 2): enough defaults for every split
    made = ["--obligors", "120", "--shift", "2.0", "--conf", str(conf)]
    assert job("demo/make_data").main(made) == 0
    built = ["--dates", "2024-11-28", "--knowledge", "current", "--conf", str(conf)]
    assert job("build_training_set").main(built) == 0
    assert (
        job("train").main(
            [
                "--train-table",
                "e2e.training_documents",
                "--text-col",
                "text",
                "--label-col",
                "default_12m",
                "--output",
                str(model_dir),
                "--conf",
                str(conf),
                "--model-version",
                "e2e-1",
                "--reference-pd-col",
                "oracle_pd",
                # A tiny random model against TF-IDF: either may win; the verdict is recorded.
                "--publish-if-benchmark-wins",
            ]
        )
        == 0
    )
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["model_version"] == "e2e-1"
    assert manifest["training_table"] == "e2e.training_documents"
    assert manifest["training_table_version"] == 0
    assert manifest["max_length"] == 64
    metrics = manifest["metrics"]
    assert 0.0 <= metrics["validation_auc"] <= 1.0
    assert 0.0 <= metrics["test_auc"] <= 1.0
    rows = manifest["training"]["split_rows"]
    assert set(rows) == {"train", "validation", "calibration", "test"}
    assert sum(rows.values()) == spark.table("e2e.training_documents").count()
    assert [rows[part] for part in ("train", "validation", "test")] == [
        metrics[f"{part}_rows"] for part in ("train", "validation", "test")
    ]
    assert 0.5 < metrics["reference_pd_test_auc"] <= 1.0  # the generator's own PD
    verdict = manifest["training"]["selection"]["verdict"]
    assert verdict in ("transformer_better", "benchmark_better")
    assert "training_curves.svg" in manifest["files"]
    assert "calibration_curve.svg" in manifest["files"]
    events = list(Path(manifest["training"]["tensorboard"]).glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].parent.parent == model_dir.with_name("e2e.tensorboard")
    written = events[0].read_bytes()  # the Trainer's TensorBoard integration, per epoch
    assert b"train/loss" in written and b"eval/loss" in written and b"eval/auc" in written
    assert "model.safetensors" in manifest["files"] and "MODEL_CARD.md" in manifest["files"]
    assert manifest["calibration"]["method"] == "platt"
    assert manifest["training"]["method"] == "full"
    assert manifest["training"]["parent_model"] is None
    assert "# Model card: e2e-1" in (model_dir / "MODEL_CARD.md").read_text()
    registry = spark.table("e2e.model_registry").collect()
    assert [
        (r["model_version"], r["training_table"], r["training_table_version"]) for r in registry
    ] == [("e2e-1", "e2e.training_documents", 0)]
    assert registry[0]["parent_model"] is None
    assert registry[0]["metrics"]["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-12)
    capsys.readouterr()
    baseline = job("baseline").main(
        ["--train-table", "e2e.training_documents", "--conf", str(conf)]
    )
    assert baseline == 0
    # the same split as the training job: the same benchmark figure as in its manifest
    assert f"test_auc {metrics['tfidf_test_auc']:.3f}" in capsys.readouterr().out

    assert job("score_portfolio").main(["--as-of", "2026-11-28", "--conf", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "scored 120 of 120 obligors as of 2026-11-28 with model e2e-1" in out
    scored = spark.table("e2e.scored_portfolio")
    portfolio_ids = sorted(r["obligor_id"] for r in spark.table("e2e.portfolio").collect())
    scored_ids = sorted(r["obligor_id"] for r in scored.collect())
    assert scored_ids == portfolio_ids
    bad = scored.where((F.col("pd") < 0) | (F.col("pd") > 1) | F.col("grade").isNull()).count()
    assert bad == 0
    assert {r["model_version"] for r in scored.collect()} == {"e2e-1"}


def test_bad_config_exits_with_bad_input_code(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text((ROOT / "conf/base.yaml").read_text() + "\nextra_section: {}\n")
    assert job("score_portfolio").main(["--as-of", "2026-11-28", "--conf", str(conf)]) == 2


def test_missing_input_table_exits_with_bad_input_code(spark, tiny_model, make_conf) -> None:
    conf = make_conf(database="empty_db", model_dir=tiny_model)
    assert job("score_portfolio").main(["--as-of", "2026-11-28", "--conf", str(conf)]) == 2
