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
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riskudf.model.features import FeatureError, feature_spec_of

MANIFEST_NAME = "manifest.json"
# The only kinds of file a model directory may hold: weights as safetensors, and text or JSON
# (configs, tokenizer vocabularies, the model card). Anything else (pickles, .bin, .pt, .npy,
# code) is refused.
ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".md", ".model", ".svg")


class ArtifactError(ValueError):
    """The model directory is incomplete, altered, or holds files that are not allowed."""


def describe_errors(exc: ValidationError) -> str:
    """Which fields are wrong and how, never the values (a document's text may be among them)."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown field {field}")
        elif err["type"] == "missing":
            problems.append(f"missing field {field}")
        else:
            problems.append(f"field {field}: {err['msg']}")
    return "; ".join(problems)


class Manifest(BaseModel):
    """``manifest.json``: unknown keys, missing required ones and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str
    backbone: str
    label_map: dict[str, str]
    positive_label: int
    max_length: int
    seed: int
    training_table: str
    training_table_version: int | None
    metrics: dict[str, float]  # validation_* and test_* figures, see riskudf.training.evaluate
    created_at: str
    files: dict[str, str] = Field(default_factory=dict)
    # Fitted on the calibration split (a probe: out of fold; `fitted_on` says which), applied at
    # scoring (see riskudf.model.calibration); older manifests hold Platt's slope and intercept
    # only; {"method": "none"}: uncalibrated.
    calibration: dict[str, Any] = Field(
        default_factory=lambda: {"method": "platt", "slope": 1.0, "intercept": 0.0}
    )
    # Long documents: {"stride": s, "aggregation": "max" | "mean"} over windows of max_length
    # (riskudf.documents.windows); empty: the head of the document is scored and flagged truncated.
    chunking: dict[str, Any] = Field(default_factory=dict)
    # Training method, trainable parameters, split sizes, the model it replaces (issue 9).
    training: dict[str, Any] = Field(default_factory=dict)
    # Structured features fused with the text (riskudf.model.features: columns, train means and
    # stds, categories, pooling); empty: a text-only transformers classifier.
    features: dict[str, Any] = Field(default_factory=dict)
    # The redaction rules the training text went through (riskudf.documents.redact.rules_record);
    # scoring refuses the model under other rules. Empty: trained before redaction existed.
    redaction: dict[str, Any] = Field(default_factory=dict)
    # An int8 version (riskudf.model.quantized): {"method": "static_int8", "engine": ...,
    # "parent_version": the fp32 version it was made from}; empty: the weights are fp32.
    quantization: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = MANIFEST_NAME) -> Manifest:
        """Validate a parsed manifest; ``source`` names the file in the ArtifactError."""
        try:
            manifest = cls.model_validate(data)
        except ValidationError as exc:
            raise ArtifactError(f"{source}: {describe_errors(exc)}") from None
        try:
            feature_spec_of(manifest.features)
        except FeatureError as exc:
            raise ArtifactError(f"{source}: {exc}") from None
        return manifest


def require_pd_model(manifest: Manifest) -> None:
    """Nightly scoring needs a PD model (two labels, a positive one), not a grade classifier."""
    if len(manifest.label_map) != 2 or str(manifest.positive_label) not in manifest.label_map:
        raise ArtifactError(
            f"model {manifest.model_version} is not a PD model: labels "
            f"{sorted(manifest.label_map.values())}, positive label {manifest.positive_label}"
        )


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


def _check_file_kinds(names: list[str] | set[str], model_dir: Path) -> None:
    refused = sorted(name for name in names if not name.lower().endswith(ALLOWED_SUFFIXES))
    if refused:
        raise ArtifactError(
            f"{model_dir}: only safetensors weights and text/JSON/SVG files are allowed, "
            f"refused {refused}"
        )
    if not any(name.endswith(".safetensors") for name in names):
        raise ArtifactError(f"{model_dir}: no .safetensors weights")


def write_manifest(model_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum every file of ``model_dir`` and write ``manifest.json`` beside them."""
    names = _artifact_files(model_dir)
    _check_file_kinds(names, model_dir)
    files = {name: sha256_file(model_dir / name) for name in names}
    complete = manifest.model_copy(update={"files": files})
    (model_dir / MANIFEST_NAME).write_text(complete.to_json())
    return complete


def _parse_manifest(payload: bytes, where: Path) -> Manifest:
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where / MANIFEST_NAME}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{where / MANIFEST_NAME}: not a JSON object")
    return Manifest.from_dict(data, source=str(where / MANIFEST_NAME))


def _check_against_manifest(
    manifest: Manifest, names: list[str], digests: dict[str, str], model_dir: Path
) -> None:
    _check_file_kinds(names, model_dir)
    missing = sorted(set(manifest.files) - set(names))
    extra = sorted(set(names) - set(manifest.files))
    if missing or extra:
        raise ArtifactError(f"{model_dir}: files missing {missing}, files not in manifest {extra}")
    altered = [name for name in names if digests[name] != manifest.files[name]]
    if altered:
        raise ArtifactError(f"{model_dir}: sha256 mismatch for {altered}")


def read_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no {MANIFEST_NAME}; not a riskudf model directory")
    return _parse_manifest(path.read_bytes(), model_dir)


def verify_artifact(model_dir: str | Path) -> Manifest:
    """Check that the directory holds exactly the manifest's files with matching sha256."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    names = _artifact_files(model_dir)
    digests = {name: sha256_file(model_dir / name) for name in names}
    _check_against_manifest(manifest, names, digests, model_dir)
    return manifest


def load_artifact_bytes(model_dir: str | Path) -> tuple[Manifest, dict[str, bytes]]:
    """Read every file once, verify those very bytes, and return them with the manifest.

    What is verified is what gets shipped: a model republished meanwhile cannot slip in.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no {MANIFEST_NAME}; not a riskudf model directory")
    files = {MANIFEST_NAME: path.read_bytes()}
    manifest = _parse_manifest(files[MANIFEST_NAME], model_dir)
    names = _artifact_files(model_dir)
    files.update({name: (model_dir / name).read_bytes() for name in names})
    digests = {name: hashlib.sha256(files[name]).hexdigest() for name in names}
    _check_against_manifest(manifest, names, digests, model_dir)
    return manifest, files


def artifact_key(files: dict[str, bytes]) -> str:
    """Identity of a shipped artifact: the sha256 of its manifest (which lists every file's)."""
    return hashlib.sha256(files[MANIFEST_NAME]).hexdigest()


def materialize_artifact(files: dict[str, bytes], root: str | Path | None = None) -> Path:
    """Write shipped artifact files to a fresh local directory and verify them there."""
    target = Path(tempfile.mkdtemp(prefix="riskudf-model-", dir=root))
    try:
        for name, payload in files.items():
            path = (target / name).resolve()
            if target.resolve() not in path.parents:
                raise ArtifactError(f"artifact file name escapes the model directory: {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        verify_artifact(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def versions_dir(output: Path) -> Path:
    """Where the versions published at ``output`` live: ``<output>.versions/<model_version>``."""
    return output.with_name(f"{output.name}.versions")


def publish_directory(staging: Path, output: Path, version: str, *, point: bool = True) -> Path:
    """Move a finished model directory to its own version directory, never replacing one, and
    (``point``) make ``output`` a link to it; return the version directory.

    A published version is immutable: registry rows name its directory, and a later training
    run neither overwrites nor deletes it. The link is swapped atomically (a rename), so readers
    of ``output`` see the old version or the new one, never none. A real directory found at
    ``output`` (the layout before versions) is moved, whole, into the versions first.
    """
    output = output.absolute()
    versions = versions_dir(output)
    target = versions / version
    if target.exists() or target.is_symlink():
        raise ArtifactError(
            f"model version {version!r} is already published at {target}; a published version "
            f"is never replaced (the new model is left at {staging}; give the run another "
            "--model-version)"
        )
    versions.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    if not point:
        return target
    if output.is_dir() and not output.is_symlink():
        try:
            earlier = read_manifest(output).model_version
        except ArtifactError:
            earlier = "unversioned"
        keep = versions / earlier
        if keep.exists():
            keep = versions / f"{earlier}.kept-{os.getpid()}"
        output.rename(keep)
    link = output.with_name(f".{output.name}.link-{uuid.uuid4().hex}")
    link.unlink(missing_ok=True)
    link.symlink_to(Path(versions.name) / version, target_is_directory=True)
    os.replace(link, output)
    return target
