"""End to end: the real jobs' main() on a small Delta lakehouse with a tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from pyspark.sql import functions as F

from riskudf.entry import EXIT_PROMOTION_REFUSED
from riskudf.governance.robustness import SUITE
from riskudf.model.artifact import versions_dir
from riskudf.model.registry import robustness_line

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
        training__quantize=True,
        scoring__model="e2e@champion",
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
                "--alias",
                "champion",  # a first champion without the gate (recorded as such)
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
    registry = spark.table("e2e.model_registry").orderBy("created_at").collect()
    assert [
        (r["model_version"], r["training_table"], r["training_table_version"], r["quantized_from"])
        for r in registry
    ] == [
        ("e2e-1", "e2e.training_documents", 0, None),
        ("e2e-1-int8", "e2e.training_documents", 0, "e2e-1"),
    ]
    # The int8 version: its own directory, calibration and figures beside its parent's.
    int8_dir = versions_dir(model_dir) / "e2e-1-int8"
    int8 = json.loads((int8_dir / "manifest.json").read_text())
    assert int8["quantization"]["parent_version"] == "e2e-1"
    assert "quantized.safetensors" in int8["files"] and "model.safetensors" not in int8["files"]
    beside = int8["training"]["int8"]
    assert beside["parent_test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-12)
    assert beside["test_auc"] == pytest.approx(int8["metrics"]["test_auc"], abs=1e-12)
    assert 0.0 <= beside["grade_agreement"] <= 1.0
    assert "## int8 version" in (int8_dir / "MODEL_CARD.md").read_text()
    assert registry[1]["robustness"] == robustness_line(int8["training"]["robustness"])
    assert registry[0]["parent_model"] is None
    # The registry names the version's own directory; model_dir links to it.
    assert registry[0]["model_dir"] == str(versions_dir(model_dir) / "e2e-1")
    assert model_dir.resolve() == (versions_dir(model_dir) / "e2e-1").resolve()
    [alias] = spark.table("e2e.model_aliases").collect()
    assert (alias["model_name"], alias["alias"], alias["model_version"]) == (
        "e2e",
        "champion",
        "e2e-1",
    )
    assert alias["model_dir"] == registry[0]["model_dir"] and alias["previous_version"] is None
    assert alias["reason"] == "first champion, set by the training job without the gate"
    assert registry[0]["metrics"]["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-12)
    # The robustness report: in the manifest, the model card, the registry and its table.
    report = manifest["training"]["robustness"]
    assert report["documents"] == rows["test"]
    assert report["source"] == "test split of e2e.training_documents version 0"
    assert [t["test"] for t in report["tests"]] == [t.name for t in SUITE]
    assert registry[0]["robustness"] == robustness_line(report)
    assert "## Robustness" in (model_dir / "MODEL_CARD.md").read_text()
    stored = spark.table("e2e.model_robustness").where("model_version = 'e2e-1'").collect()
    assert {r["test"]: r["cases"] for r in stored} == {
        t["test"]: t["cases"] for t in report["tests"]
    }
    # The command reruns it for a version: the same split and figures, its rows replaced.
    capsys.readouterr()
    again = ["--model", str(model_dir), "--version", "e2e-1", "--conf", str(conf)]
    assert job("robustness").main(again) == 0
    assert robustness_line(report) in capsys.readouterr().out
    rerun = spark.table("e2e.model_robustness").where("model_version = 'e2e-1'").collect()
    assert len(rerun) == len(SUITE) and min(r["assessed_at"] for r in rerun) > max(
        r["assessed_at"] for r in stored
    )
    for r in rerun:
        [t] = [t for t in report["tests"] if t["test"] == r["test"]]
        assert (r["cases"], r["status"]) == (t["cases"], t["status"])
        if t["mean_pd_change"] is not None:
            assert r["mean_pd_change"] == pytest.approx(t["mean_pd_change"], abs=1e-6)
    # Champion and challenger: a second version (another seed) becomes a challenger.
    reseeded = variant(conf, "reseeded", training={"seed": 12, "quantize": False})
    second = ["--train-table", "e2e.training_documents", "--text-col", "text"]
    second += ["--label-col", "default_12m", "--output", str(model_dir)]
    second += ["--model-version", "e2e-2", "--publish-if-benchmark-wins", "--conf", reseeded]
    assert job("train").main(second) == 0
    first = json.loads((versions_dir(model_dir) / "e2e-1" / "manifest.json").read_text())
    assert first == manifest  # the first version is untouched
    # jobs/quantize.py: e2e-2's int8 version, its splits rebuilt from the recorded table version
    second_manifest = json.loads((versions_dir(model_dir) / "e2e-2" / "manifest.json").read_text())
    quantized = ["--model", str(model_dir), "--version", "e2e-2", "--conf", str(conf)]
    assert job("quantize").main(quantized) == 0
    made = json.loads((versions_dir(model_dir) / "e2e-2-int8" / "manifest.json").read_text())
    assert made["quantization"]["parent_version"] == "e2e-2"
    # the fp32 model assessed again on the rebuilt splits: its manifest's figure
    assert made["training"]["int8"]["parent_test_auc"] == pytest.approx(
        second_manifest["metrics"]["test_auc"], abs=1e-6
    )

    def aliases_now() -> dict[str, str]:
        latest: dict[str, str] = {}
        for row in spark.table("e2e.model_aliases").orderBy("changed_at").collect():
            latest[row["alias"]] = row["model_version"]
        return {alias: version for alias, version in latest.items() if version is not None}

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
    assert {r["model_version"] for r in scored.collect()} == {"e2e-1"}  # never the challenger's
    # The challenger scored the same documents in the same run, into its own table.
    shadow = spark.table("e2e.shadow_scores").collect()
    run_id = scored.first()["run_id"]
    assert sorted(r["obligor_id"] for r in shadow) == portfolio_ids
    assert {(r["alias"], r["model_version"], r["run_id"]) for r in shadow} == {
        ("challenger", "e2e-2", run_id)
    }
    champion = {r["obligor_id"]: r for r in scored.collect()}
    [overall] = spark.table("e2e.monitor_shadow").where("segment = 'all'").collect()
    assert (overall["obligors"], overall["champion_version"]) == (120, "e2e-1")
    assert overall["grade_flips"] == sum(
        r["grade"] != champion[r["obligor_id"]]["grade"] for r in shadow
    )
    assert overall["decision_flips"] == sum(
        r["decision"] != champion[r["obligor_id"]]["decision"] for r in shadow
    )
    segments = spark.table("e2e.monitor_shadow").where("segment != 'all'").collect()
    assert sum(r["obligors"] for r in segments) == 120 and overall["psi"] >= 0.0

    assert aliases_now() == {"champion": "e2e-1", "challenger": "e2e-2"}
    # The 2025 cohort (matured, out of the training set) defaulted to a man: calibration is red.
    spark.sql("UPDATE e2e.outcomes SET default_12m = 1 WHERE observation_date = '2025-11-28'")
    gate = ["--model", "e2e", "--version", "e2e-2", "--by", "validator", "--knowledge", "current"]
    assert job("promote").main([*gate, "--conf", str(conf)]) == EXIT_PROMOTION_REFUSED
    assert "REFUSED" in capsys.readouterr().out
    assert aliases_now() == {"champion": "e2e-1", "challenger": "e2e-2"}  # nothing changed
    [refused] = spark.table("e2e.model_promotions").collect()
    assert (refused["decision"], refused["previous_champion"]) == ("refused", "e2e-1")
    portfolio = {
        t["test"]: t
        for t in refused["tests"]
        if t["scope"] == "matured" and t["grade"] == "portfolio"
    }
    assert portfolio["jeffreys"]["colour"] == "red"
    # e2e-2's own robustness report, one result per test
    assert sum(t["test"].startswith("robustness:") for t in refused["tests"]) == len(SUITE)
    n = spark.table("e2e.outcomes").where("observation_date = '2025-11-28'").count()
    assert f"{n} defaults of {n}" in portfolio["jeffreys"]["detail"]  # every obligor was scored
    assert "REFUSED" in Path(refused["report"]).read_text()
    # An override with a written reason promotes it, and is recorded.
    why = ["--override-reason", "outcomes feed under investigation"]
    assert job("promote").main([*gate, *why, "--conf", str(conf)]) == 0
    assert aliases_now() == {"champion": "e2e-2"}  # the challenger alias went with it
    # Rollback: the earlier version through the same gate (one that finds nothing red).
    lenient = variant(
        conf,
        "lenient",
        gate={
            "pvalue_yellow_below": 1e-299,
            "pvalue_red_below": 1e-300,
            "bandwidth_yellow_above": 1.0,
            "bandwidth_red_above": 1.0,
        },
        training={"robustness": {"red_kinds": []}},  # the tiny model's failures yellow
    )
    # --rollback: the champion before the current one (model_aliases' previous_version).
    back = ["--model", "e2e", "--rollback", "--by", "validator", "--knowledge", "current"]
    assert job("promote").main([*back, "--reason", "rollback", "--conf", lenient]) == 0
    assert aliases_now() == {"champion": "e2e-1"}
    records = spark.table("e2e.model_promotions").orderBy("decided_at").collect()
    assert [(r["model_version"], r["decision"], r["previous_champion"]) for r in records] == [
        ("e2e-2", "refused", "e2e-1"),
        ("e2e-2", "overridden", "e2e-1"),
        ("e2e-1", "promoted", "e2e-2"),
    ]
    assert records[1]["override_reason"] == "outcomes feed under investigation"
    history = spark.table("e2e.model_aliases").orderBy("changed_at").collect()
    assert [(h["alias"], h["model_version"], h["previous_version"]) for h in history] == [
        ("champion", "e2e-1", None),
        ("challenger", "e2e-2", None),
        ("challenger", None, "e2e-2"),
        ("champion", "e2e-2", "e2e-1"),
        ("champion", "e2e-1", "e2e-2"),
    ]
    assert history[-1]["reason"] == "rollback"
    assert history[-1]["promotion_id"] == records[-1]["promotion_id"]
    capsys.readouterr()
    assert job("models").main(["--model", "e2e", "--conf", str(conf)]) == 0
    printed = capsys.readouterr().out
    assert "e2e.model_aliases: 5 changes of e2e's aliases" in printed
    assert "champion: e2e-2 -> e2e-1 by validator: rollback" in printed
    assert "e2e.model_promotions: 3 decisions" in printed
    assert [line.split()[2:4] for line in printed.splitlines() if "champion before" in line] == [
        ["e2e-2:", "refused"],
        ["e2e-2:", "overridden"],
        ["e2e-1:", "promoted"],
    ]


def variant(conf: Path, name: str, **sections: dict) -> str:
    """A copy of ``conf`` with some keys of some sections changed."""
    data = yaml.safe_load(conf.read_text())
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    path = conf.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_bad_config_exits_with_bad_input_code(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text((ROOT / "conf/base.yaml").read_text() + "\nextra_section: {}\n")
    assert job("score_portfolio").main(["--as-of", "2026-11-28", "--conf", str(conf)]) == 2


def test_missing_input_table_exits_with_bad_input_code(spark, tiny_model, make_conf) -> None:
    conf = make_conf(database="empty_db", model_dir=tiny_model)
    assert job("score_portfolio").main(["--as-of", "2026-11-28", "--conf", str(conf)]) == 2
