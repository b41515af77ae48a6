"""Load a verified model artifact with transformers: safetensors only, no remote code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from riskudf.model.artifact import ArtifactError, Manifest, verify_artifact
from riskudf.model.features import FeatureSpec, feature_spec_of


def offline() -> None:
    """No model hub at run time: transformers must only read local directories."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Long documents are cut by riskudf itself (and flagged); the tokenizer's warning is noise.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def load_tokenizer(model_dir: str | Path) -> Any:
    offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        str(model_dir), local_files_only=True, trust_remote_code=False
    )


def load_sequence_classifier(model_dir: str | Path, **kwargs: Any) -> Any:
    """A sequence-classification model from a local directory of safetensors weights."""
    offline()
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(model_dir),
        local_files_only=True,
        use_safetensors=True,
        trust_remote_code=False,
        **kwargs,
    )


def load_encoder(model_dir: str | Path) -> Any:
    """The bare encoder (AutoModel, no head) from a local directory of safetensors weights."""
    offline()
    from transformers import AutoModel

    return AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, use_safetensors=True, trust_remote_code=False
    )


def load_fused(model_dir: str | Path, spec: FeatureSpec, num_labels: int) -> Any:
    """A saved fused classifier (safetensors, local files, no remote code), in eval mode."""
    from safetensors.torch import load_file

    from riskudf.model.fused import HEAD_FILE, FusedClassifier

    model_dir = Path(model_dir)
    model = FusedClassifier(load_encoder(model_dir), spec, num_labels)
    head = load_file(str(model_dir / HEAD_FILE))
    model.head.load_state_dict(head)  # strict: shapes must match the spec's width
    return model.eval()


def load_quantized_version(model_dir: Path, manifest: Manifest) -> Any:
    """An int8 version: the architecture from config.json (no weights read), with int8 layers
    and every tensor from the stored file (riskudf.model.quantized)."""
    offline()
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from riskudf.model.fused import FusedClassifier
    from riskudf.model.quantized import METHOD, QUANTIZED_FILE, load_quantized

    if manifest.quantization.get("method") != METHOD:
        raise ArtifactError(
            f"model {manifest.model_version}: quantisation {manifest.quantization.get('method')!r}"
            f" is not {METHOD!r}"
        )
    import torch

    from riskudf.model.quantized import ENGINES

    engine = manifest.quantization.get("engine")
    if engine not in ENGINES or engine not in torch.backends.quantized.supported_engines:
        raise ArtifactError(
            f"model {manifest.model_version} was quantised for torch engine {engine!r}, which "
            f"this host lacks ({torch.backends.quantized.supported_engines}): score its fp32 "
            f"parent {manifest.quantization.get('parent_version')}"
        )
    torch.backends.quantized.engine = engine
    config = AutoConfig.from_pretrained(
        str(model_dir), local_files_only=True, trust_remote_code=False
    )
    spec = feature_spec_of(manifest.features)
    if spec is not None:
        skeleton = FusedClassifier(AutoModel.from_config(config), spec, len(manifest.label_map))
    else:
        skeleton = AutoModelForSequenceClassification.from_config(config)
    return load_quantized(skeleton, model_dir / QUANTIZED_FILE)


def load_artifact(model_dir: str | Path) -> tuple[Manifest, Any, Any]:
    """Verify the checksums, then load tokenizer and model (in eval mode, on the CPU).

    A manifest with a feature spec is a fused classifier (encoder + feature head); without one,
    a transformers sequence classifier, as every model before features. An int8 version is
    rebuilt from its stored tensors (load_quantized_version).
    """
    manifest = verify_artifact(model_dir)
    tokenizer = load_tokenizer(model_dir)
    if manifest.quantization:
        return manifest, tokenizer, load_quantized_version(Path(model_dir), manifest)
    spec = feature_spec_of(manifest.features)
    if spec is not None:
        return manifest, tokenizer, load_fused(model_dir, spec, len(manifest.label_map))
    model = load_sequence_classifier(model_dir)
    model.eval()
    return manifest, tokenizer, model
