from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from riskudf.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def local() -> dict:
    return load_config(ROOT / "conf/local.yaml").model_dump(mode="json")


def test_shipped_local_config_loads() -> None:
    conf = load_config(ROOT / "conf/local.yaml")
    assert conf.tables.qualified("scored_portfolio") == "risk.scored_portfolio"
    assert conf.grading.master_scale[-1].upper_pd == 1.0
    assert conf.scoring.model == "demo@champion"


def test_unknown_key_is_an_error_naming_it() -> None:
    raw = local()
    raw["scoring"]["token_budjet"] = 4096
    with pytest.raises(ConfigError, match=r"scoring\.token_budjet: Extra inputs"):
        parse_config(raw)


def test_wrong_type_names_the_key() -> None:
    raw = local()
    raw["scoring"]["arrow_batch_rows"] = "many"
    with pytest.raises(ConfigError, match=r"scoring\.arrow_batch_rows"):
        parse_config(raw)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("portfolio", "portfolio'; DROP TABLE risk.score_runs; --"),
        ("scored_portfolio", "scored;portfolio"),
        ("database", "risk db"),
        ("score_runs", "runs`"),
        ("filings", "1filings"),
    ],
)
def test_a_table_name_that_is_not_a_plain_identifier_is_refused(key: str, name: str) -> None:
    raw = local()
    raw["tables"][key] = name
    with pytest.raises(ConfigError, match=rf"tables\.{key}.*not a plain identifier"):
        parse_config(raw)


def test_master_scale_must_increase_and_close_at_one() -> None:
    raw = local()
    raw["grading"]["master_scale"] = [
        {"grade": "A", "upper_pd": 0.2},
        {"grade": "B", "upper_pd": 0.1},
    ]
    with pytest.raises(ConfigError, match="must increase strictly"):
        parse_config(raw)
    raw["grading"]["master_scale"] = [
        {"grade": "A", "upper_pd": 0.2},
        {"grade": "B", "upper_pd": 0.9},
    ]
    with pytest.raises(ConfigError, match=r"upper_pd 1\.0"):
        parse_config(raw)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_bi_section_defaults_and_checks() -> None:
    conf = load_config(ROOT / "conf/local.yaml")
    assert (conf.bi.host, conf.bi.port, conf.bi.lgd) == ("127.0.0.1", 10000, 0.45)
    assert conf.bi.lgd_by_segment == {"retail": 0.75, "corporate": 0.45}
    assert conf.tables.qualified("monitor_alerts") == "risk.monitor_alerts"
    raw = local()
    raw["bi"]["zorder"] = True
    with pytest.raises(ConfigError, match=r"bi\.zorder: Extra inputs"):
        parse_config(raw)
    raw = local()
    raw["bi"]["lgd_by_segment"] = {"retail": 1.5}
    with pytest.raises(ConfigError, match="lgd_by_segment values must lie in"):
        parse_config(raw)
    raw = local()
    raw["bi"]["port"] = 70000
    with pytest.raises(ConfigError, match=r"bi\.port"):
        parse_config(raw)


def test_gpu_conf_is_optional_and_typed() -> None:
    from riskudf.config import GpuConf

    assert load_config(ROOT / "conf/local.yaml").scoring.gpu is None
    gpu = load_config(ROOT / "conf/gpu.yaml").scoring.gpu
    assert gpu is not None and gpu.task_gpus == 1.0
    assert GpuConf(discovery_script="d.sh").spark_settings() == {
        "spark.executor.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": "d.sh",
    }


# Base and overlays


BASE = """
scoring: {model_dir: models/demo, token_budget: 8192, partitions: 0}
grading:
  master_scale: [{grade: A, upper_pd: 0.1}, {grade: B, upper_pd: 1.0}]
  review_from_pd: 0.05
  decline_from_pd: 0.2
reasons:
  decisions: [review, decline]
  library: [{code: X, description: x, patterns: [x]}]
spark: {app_name: riskudf, settings: {a: "1", b: "2"}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_overlay_merges_mappings_and_replaces_lists_and_values(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    overlay = write(
        tmp_path,
        "env.yaml",
        """
base: base.yaml
scoring: {token_budget: 65536}
reasons: {decisions: [decline]}
spark: {settings: {b: "3"}}
""",
    )
    conf = load_config(overlay)
    base = load_config(tmp_path / "base.yaml")
    assert conf.scoring.token_budget == 65536
    assert conf.scoring.model == "models/demo"  # kept from the base
    assert conf.reasons.decisions == ("decline",)  # a list replaces, never appends
    assert conf.spark.settings == {"a": "1", "b": "3"}  # mappings merge key by key
    assert conf.reasons.library == base.reasons.library
    assert conf.grading == base.grading


def test_an_overlay_with_the_older_model_dir_replaces_the_base_model(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE.replace("model_dir: models/demo", "model: demo@champion"))
    overlay = write(tmp_path, "env.yaml", "base: base.yaml\nscoring: {model_dir: /mnt/m}\n")
    assert load_config(overlay).scoring.model == "/mnt/m"
    both = write(tmp_path, "both.yaml", "base: base.yaml\nscoring: {model: a@b, model_dir: /m}\n")
    with pytest.raises(ConfigError, match="not both"):
        load_config(both)


def test_overlay_null_replaces_a_base_mapping(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    overlay = write(tmp_path, "env.yaml", "base: base.yaml\nspark: {settings: null}\n")
    with pytest.raises(ConfigError, match=r"env\.yaml.*spark\.settings"):
        load_config(overlay)


def test_base_path_is_relative_to_the_overlay_and_may_chain(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    write(tmp_path / "shared", "base.yaml", BASE)
    write(tmp_path / "shared", "gpu.yaml", "base: base.yaml\nscoring: {partitions: 4}\n")
    overlay = write(tmp_path, "site.yaml", "base: shared/gpu.yaml\nscoring: {model_dir: /mnt/m}\n")
    scoring = load_config(overlay).scoring
    assert (scoring.model, scoring.partitions, scoring.token_budget) == ("/mnt/m", 4, 8192)


def test_base_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="base cycle"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path, "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="base cycle"):
        load_config(tmp_path / "self.yaml")


def test_missing_or_bad_base_names_the_overlay(tmp_path: Path) -> None:
    write(tmp_path, "env.yaml", "base: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"not found: .*gone\.yaml"):
        load_config(tmp_path / "env.yaml")
    write(tmp_path, "list.yaml", "base: [a.yaml]\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: base must be a file name"):
        load_config(tmp_path / "list.yaml")


def test_unknown_key_in_an_overlay_or_its_base_names_the_files(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE + "bi: {zorder: true}\n")
    overlay = write(tmp_path, "env.yaml", "base: base.yaml\nscoring: {token_budjet: 1}\n")
    with pytest.raises(ConfigError) as error:
        load_config(overlay)
    message = str(error.value)
    assert message.startswith(f"{overlay} (base {tmp_path / 'base.yaml'}): ")
    assert "scoring.token_budjet: Extra inputs" in message
    assert f"bi.zorder: Extra inputs are not permitted (set in {tmp_path / 'base.yaml'})" in message


def test_a_file_without_base_is_a_whole_config(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yaml", BASE)
    assert load_config(path).spark.settings == {"a": "1", "b": "2"}
    with pytest.raises(ConfigError, match=r"mine2\.yaml: grading: Field required"):
        load_config(write(tmp_path, "mine2.yaml", "scoring: {model_dir: m}\n"))


def test_shipped_overlays_differ_where_expected() -> None:
    local_conf, gpu, cluster, standalone = (
        load_config(ROOT / f"conf/{name}.yaml")
        for name in ("local", "gpu", "cluster", "standalone")
    )
    assert local_conf.reasons.decisions == ("decline",)
    assert gpu.reasons.decisions == cluster.reasons.decisions == ("review", "decline")
    assert (local_conf.scoring.token_budget, gpu.scoring.token_budget) == (8192, 65536)
    # GPU scoring everywhere but locally: the scoring stage's profile asks for the GPU.
    assert local_conf.scoring.gpu is None
    assert gpu.scoring.gpu is not None and cluster.scoring.gpu is not None
    assert standalone.scoring.gpu is not None and standalone.scoring.gpu.discovery_script is None
    assert standalone.submit.master == "spark://127.0.0.1:7077"
    assert standalone.scoring.model == local_conf.scoring.model
    assert (cluster.scoring.precision, cluster.scoring.partitions) == ("bf16", 16)
    assert cluster.submit.master == "yarn" and local_conf.submit.master is None
    assert cluster.monitoring.report_dir == "/mnt/shared/riskudf/reports"
    for conf in (gpu, cluster):
        assert conf.grading == local_conf.grading
        assert conf.reasons.library == local_conf.reasons.library
        assert conf.monitoring.alerts == local_conf.monitoring.alerts
        assert conf.training == local_conf.training


@pytest.mark.parametrize(
    ("name", "base"),
    # The standalone cluster runs the local lakehouse: an overlay on local.yaml.
    [
        ("local", "base.yaml"),
        ("gpu", "base.yaml"),
        ("cluster", "base.yaml"),
        ("standalone", "local.yaml"),
    ],
)
def test_shipped_overlays_name_the_base_and_do_not_repeat_it(name: str, base: str) -> None:
    raw = yaml.safe_load((ROOT / f"conf/{name}.yaml").read_text())
    assert raw["base"] == base
    assert "grading" not in raw
    assert "library" not in raw.get("reasons", {})
    assert "alerts" not in raw.get("monitoring", {})
    assert "training" not in raw


def test_a_probe_refuses_chunking() -> None:
    from riskudf.config import CandidateConf, ChunkingConf, TrainingConf

    chunked = {"chunking": ChunkingConf(stride=64)}
    with pytest.raises(ValueError, match=r"method probe \(training.method\) .* no chunking"):
        TrainingConf(method="probe", **chunked)  # type: ignore[arg-type]
    probe = CandidateConf(name="head", method="probe")
    with pytest.raises(ValueError, match=r"method probe \(head\)"):
        TrainingConf(candidates=(probe,), **chunked)  # type: ignore[arg-type]
    assert TrainingConf(method="probe").method == "probe"


def test_segment_pooling_is_for_probes_and_a_candidate_may_set_it() -> None:
    from riskudf.config import CandidateConf, FeaturesConf, TrainingConf, TrainingDataConf

    paragraphs = TrainingDataConf(features=FeaturesConf(pooling="paragraphs"))
    with pytest.raises(ValueError, match=r"training: pooling paragraphs is for method probe"):
        TrainingConf(method="full", data=paragraphs)
    tuned = CandidateConf(name="tuned", method="lora", pooling="lines")
    with pytest.raises(ValueError, match=r"candidate tuned: pooling lines .* not lora"):
        TrainingConf(candidates=(tuned,))
    with pytest.raises(ValueError, match=r"candidate fine-tune: pooling paragraphs"):
        TrainingConf(data=paragraphs, candidates=(CandidateConf(name="fine-tune"),))
    assert TrainingConf(method="probe", data=paragraphs).data.features.pooling == "paragraphs"
    training = load_config(ROOT / "conf/local.yaml").training
    pooling = {n: (c.method, c.data.features.pooling) for n, c in training.candidate_confs()}
    assert pooling == {"probe": ("probe", "lines"), "fine-tune": ("full", "mean")}


def test_the_command_line_trains_the_named_candidates_only() -> None:
    training = load_config(ROOT / "conf/local.yaml").training
    assert [c.name for c in training.candidates] == ["probe", "fine-tune"]
    assert [c.name for c in training.only_candidates(["probe"]).candidates] == ["probe"]
    with pytest.raises(ConfigError, match="no candidate named lora; the conf has probe, fine-tune"):
        training.only_candidates(["probe", "lora"])
