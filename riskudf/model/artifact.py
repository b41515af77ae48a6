"""The versioned model artifact: a directory of safetensors weights, tokenizer files and
``manifest.json`` carrying the sha256 of every other file.

Nothing here imports torch: the driver checks an artifact before Spark ships it anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
# Files that can carry pickled code: never accepted in a model directory.
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack", ".py")


class ArtifactError(ValueError):
    """The model directory is incomplete, altered, or holds files that are not allowed."""


@dataclass(frozen=True)
class Manifest:
    model_version: str
    backbone: str
    label_map: dict[str, str]
    positive_label: int
    max_length: int
    seed: int
    training_table: str
    training_table_version: int | None
    metrics: dict[str, float]
    created_at: str
    files: dict[str, str] = field(default_factory=dict)
    # Platt scaling of the log-odds, fitted on the validation split: pd = sigmoid(a * z + b).
    calibration: dict[str, float] = field(default_factory=lambda: {"slope": 1.0, "intercept": 0.0})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            return cls(**data)
        except TypeError as exc:
            raise ArtifactError(
                f"{MANIFEST_NAME} does not match the manifest schema: {exc}"
            ) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _artifact_files(model_dir: Path) -> list[str]:
    return sorted(
        path.relative_to(model_dir).as_posix()
        for path in model_dir.rglob("*")
        if path.is_file() and path.name != MANIFEST_NAME
    )


def _check_file_kinds(names: list[str], model_dir: Path) -> None:
    unsafe = [name for name in names if name.lower().endswith(UNSAFE_SUFFIXES)]
    if unsafe:
        raise ArtifactError(
            f"{model_dir}: files that may hold pickled code are not allowed: {unsafe}"
        )
    if not any(name.endswith(".safetensors") for name in names):
        raise ArtifactError(f"{model_dir}: no .safetensors weights")


def write_manifest(model_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum every file of ``model_dir`` and write ``manifest.json`` beside them."""
    names = _artifact_files(model_dir)
    _check_file_kinds(names, model_dir)
    files = {name: sha256_file(model_dir / name) for name in names}
    complete = Manifest(**{**asdict(manifest), "files": files})
    (model_dir / MANIFEST_NAME).write_text(complete.to_json())
    return complete


def read_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no {MANIFEST_NAME}; not a riskudf model directory")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc.msg})") from None
    return Manifest.from_dict(data)


def verify_artifact(model_dir: str | Path) -> Manifest:
    """Check that the directory holds exactly the manifest's files with matching sha256."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    names = _artifact_files(model_dir)
    _check_file_kinds(names, model_dir)
    missing = sorted(set(manifest.files) - set(names))
    extra = sorted(set(names) - set(manifest.files))
    if missing or extra:
        raise ArtifactError(f"{model_dir}: files missing {missing}, files not in manifest {extra}")
    altered = [name for name in names if sha256_file(model_dir / name) != manifest.files[name]]
    if altered:
        raise ArtifactError(f"{model_dir}: sha256 mismatch for {altered}")
    return manifest


def read_artifact_bytes(model_dir: str | Path) -> dict[str, bytes]:
    """Every file of a verified artifact, manifest included, for shipping to executors."""
    model_dir = Path(model_dir)
    manifest = verify_artifact(model_dir)
    files = {name: (model_dir / name).read_bytes() for name in manifest.files}
    files[MANIFEST_NAME] = (model_dir / MANIFEST_NAME).read_bytes()
    return files


def materialize_artifact(files: dict[str, bytes], root: str | Path | None = None) -> Path:
    """Write shipped artifact files to a fresh local directory and verify them there."""
    target = Path(tempfile.mkdtemp(prefix="riskudf-model-", dir=root))
    for name, payload in files.items():
        path = (target / name).resolve()
        if target.resolve() not in path.parents:
            raise ArtifactError(f"artifact file name escapes the model directory: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    verify_artifact(target)
    return target


def atomic_publish(staging: Path, output: Path) -> None:
    """Move a finished model directory into place; an existing one is replaced whole."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old)
    else:
        staging.rename(output)
