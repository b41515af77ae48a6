from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from riskudf.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def local() -> dict:
    return yaml.safe_load((ROOT / "conf/local.yaml").read_text())


def test_shipped_local_config_loads() -> None:
    conf = load_config(ROOT / "conf/local.yaml")
    assert conf.tables.qualified("scored_portfolio") == "risk.scored_portfolio"
    assert conf.grading.master_scale[-1].upper_pd == 1.0
    assert conf.scoring.model_dir == "models/demo"


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
