from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from riskudf.model.artifact import (
    ArtifactError,
    Manifest,
    artifact_key,
    load_artifact_bytes,
    materialize_artifact,
    publish_directory,
    read_manifest,
    sha256_file,
    verify_artifact,
    versions_dir,
    write_manifest,
)
from riskudf.model.features import FeatureError, FeatureSpec


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model, target)
    return target


def test_published_model_verifies_with_every_file_checksummed(tiny_model: Path) -> None:
    manifest = verify_artifact(tiny_model)
    assert manifest.model_version == "tiny-1"
    assert "model.safetensors" in manifest.files
    assert set(manifest.files) == {
        p.relative_to(tiny_model).as_posix()
        for p in tiny_model.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert all(len(digest) == 64 for digest in manifest.files.values())


def test_tampered_weights_fail(model_copy: Path) -> None:
    weights = model_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"sha256 mismatch for \['model.safetensors'\]"):
        verify_artifact(model_copy)


def test_truncated_or_missing_file_fails(model_copy: Path) -> None:
    (model_copy / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"files missing \['config.json'\]"):
        verify_artifact(model_copy)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "extra.npy", "helper.py", "w.joblib"])
def test_files_other_than_safetensors_and_text_are_refused(model_copy: Path, name: str) -> None:
    (model_copy / name).write_bytes(b"not allowed")
    with pytest.raises(ArtifactError, match=rf"refused \['{name}'\]"):
        verify_artifact(model_copy)
    with pytest.raises(ArtifactError, match="refused"):
        load_artifact_bytes(model_copy)


def test_loaded_bytes_are_the_verified_bytes(tiny_model: Path, model_copy: Path) -> None:
    manifest, files = load_artifact_bytes(tiny_model)
    assert set(files) == {*manifest.files, "manifest.json"}
    assert artifact_key(files) == artifact_key(load_artifact_bytes(model_copy)[1])
    (model_copy / "vocab.txt").write_text("changed")
    with pytest.raises(ArtifactError, match=r"sha256 mismatch for \['vocab.txt'\]"):
        load_artifact_bytes(model_copy)


def test_shipped_bytes_materialise_and_verify(tiny_model: Path) -> None:
    local = materialize_artifact(load_artifact_bytes(tiny_model)[1])
    try:
        assert verify_artifact(local).files == verify_artifact(tiny_model).files
    finally:
        shutil.rmtree(local)


def test_materialise_refuses_paths_outside_the_directory(tiny_model: Path) -> None:
    _, files = load_artifact_bytes(tiny_model)
    files["../escape.json"] = b"{}"
    with pytest.raises(ArtifactError, match="escapes"):
        materialize_artifact(files)


def test_a_refused_artifact_leaves_no_local_copy(tiny_model: Path, tmp_path: Path) -> None:
    _, files = load_artifact_bytes(tiny_model)
    files["vocab.txt"] = b"changed"
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        materialize_artifact(files, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def _staged(root: Path, version: str) -> Path:
    """A finished model directory waiting to be published (what publish_model writes)."""
    staging = root / f".staging-{version}"
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(version.encode())
    return staging


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_later_version_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    output = tmp_path / "models" / "demo"
    first = publish_directory(_staged(tmp_path, "v1"), output, "v1")
    assert first == versions_dir(output) / "v1"
    before = _tree(first)
    second = publish_directory(_staged(tmp_path, "v2"), output, "v2")
    assert _tree(first) == before  # untouched, still where registry rows point
    assert output.is_symlink() and output.resolve() == second.resolve()
    assert (output / "model.safetensors").read_bytes() == b"v2"
    # A set-aside version does not move the link.
    aside = publish_directory(_staged(tmp_path, "v3"), output, "v3", point=False)
    assert aside.is_dir() and output.resolve() == second.resolve()
    with pytest.raises(ArtifactError, match="'v1' is already published"):
        publish_directory(_staged(tmp_path, "again"), output, "v1")
    assert _tree(first) == before and output.resolve() == second.resolve()


def test_a_model_directory_from_before_versions_is_kept_as_a_version(
    tiny_model: Path, tmp_path: Path
) -> None:
    output = tmp_path / "demo"
    shutil.copytree(tiny_model, output)  # a real directory, as training wrote it before
    old = _tree(output)
    publish_directory(_staged(tmp_path, "v2"), output, "v2")
    assert _tree(versions_dir(output) / read_manifest(tiny_model).model_version) == old
    assert (output / "model.safetensors").read_bytes() == b"v2"


# manifest.json schema

FIELDS = {
    "model_version": "m-1",
    "backbone": "tiny",
    "label_map": {"0": "performing", "1": "default"},
    "positive_label": 1,
    "max_length": 64,
    "seed": 1,
    "training_table": "risk.training_documents",
    "training_table_version": 3,
    "metrics": {"test_auc": 0.75},
    "created_at": "2026-11-29T00:00:00+00:00",
}


def written(tmp_path: Path, data: dict) -> Path:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path


def test_manifest_round_trip_gives_an_equal_object(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    features = {
        "numeric": [{"name": "exposure", "mean": 1500.0, "std": 250.0}],
        "categorical": [{"name": "region", "categories": ["north", "south"]}],
        "pooling": "mean",
    }
    manifest = Manifest(**FIELDS, features=features, chunking={"stride": 32, "aggregation": "max"})
    complete = write_manifest(tmp_path, manifest)
    assert complete.files == {"model.safetensors": sha256_file(tmp_path / "model.safetensors")}
    assert complete == manifest.model_copy(update={"files": complete.files})
    assert read_manifest(tmp_path) == complete
    assert verify_artifact(tmp_path) == complete
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(on_disk) == sorted(
        [
            *FIELDS,
            "files",
            "calibration",
            "chunking",
            "training",
            "features",
            "redaction",
            "quantization",
        ]
    )
    assert Manifest.from_dict(on_disk).to_json() == (tmp_path / "manifest.json").read_text()


def test_manifest_with_an_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    model = written(tmp_path, {**FIELDS, "files": {}, "tokeniser": "secret document text"})
    with pytest.raises(ArtifactError) as error:
        read_manifest(model)
    message = str(error.value)
    assert message == f"{model / 'manifest.json'}: unknown field tokeniser"
    assert "secret" not in message


def test_manifest_with_a_wrong_type_names_the_file_and_the_field(tmp_path: Path) -> None:
    model = written(tmp_path, {**FIELDS, "max_length": "sixty-four", "metrics": {"auc": "high"}})
    with pytest.raises(ArtifactError) as error:
        read_manifest(model)
    message = str(error.value)
    assert message.startswith(f"{model / 'manifest.json'}: field max_length: Input should be")
    assert "field metrics.auc: Input should be a valid number" in message
    assert "sixty-four" not in message and "high" not in message


def test_manifest_missing_a_required_field_names_the_file_and_the_field(tmp_path: Path) -> None:
    data = {key: value for key, value in FIELDS.items() if key != "seed"}
    model = written(tmp_path, data)
    with pytest.raises(ArtifactError, match=r"manifest\.json: missing field seed$"):
        read_manifest(model)


def test_manifest_feature_spec_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    features = {"numeric": [{"name": "a", "mean": 0.0, "std": "wide", "scale": 2}]}
    model = written(tmp_path, {**FIELDS, "features": features})
    with pytest.raises(ArtifactError) as error:
        read_manifest(model)
    message = str(error.value)
    assert message.startswith(f"{model / 'manifest.json'}: manifest features: ")
    assert "field features.numeric.0.std: Input should be a valid number" in message
    assert "unknown field features.numeric.0.scale" in message
    assert "wide" not in message


def test_feature_spec_is_frozen_and_checked() -> None:
    spec = FeatureSpec(
        numeric=("a",), means=(0.0,), stds=(1.0,), categorical=(), categories=(), pooling="cls"
    )
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValidationError):
        spec.pooling = "mean"  # type: ignore[misc]
    with pytest.raises(
        FeatureError,
        match=r"field features.pooling: Input should be 'mean', 'cls', 'lines' or 'paragraphs'",
    ):
        FeatureSpec.from_dict({**spec.to_dict(), "pooling": "max"})
    with pytest.raises(FeatureError, match="repeated columns"):
        FeatureSpec.from_dict({**spec.to_dict(), "categorical": [{"name": "a", "categories": []}]})
    text_only = FeatureSpec.from_dict({"pooling": "mean"})  # a linear probe: the pooled text
    assert (text_only.columns, text_only.width) == ((), 0)
