from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from riskudf.model.artifact import (
    ArtifactError,
    artifact_key,
    load_artifact_bytes,
    materialize_artifact,
    verify_artifact,
)


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
