"""int8 versions of a model: dynamic quantisation of the encoder's Linear layers, stored as
plain tensors in safetensors (no pickle) and rebuilt from them.

Dynamic quantisation (torch.ao) keeps int8 weights with one scale and zero point per layer, and
quantises activations per batch; embeddings, layer norms and the classification head stay fp32.
``quantized.safetensors`` holds, per quantised layer ``<name>``, ``<name>.int8_weight``,
``<name>.int8_scale``, ``<name>.int8_zero_point`` and ``<name>.int8_bias`` (fp32), and every
other parameter and buffer as is. Loading builds the architecture from ``config.json`` (no
weights read), quantises it the same way, and puts the stored tensors in: every layer and
tensor must match, or it is refused.

On a GPU the equivalent is weight-only int8 (bitsandbytes, torchao): another artifact, not this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from riskudf.model.artifact import ArtifactError

QUANTIZED_FILE = "quantized.safetensors"
METHOD = "dynamic_int8"
_PARTS = ("int8_weight", "int8_scale", "int8_zero_point", "int8_bias")


# Heads stay fp32: a probe's head carries the folded standardisation (large weights, a large
# cancelling bias) that one scale per layer would coarsen; it is one small matmul anyway.
HEADS = ("classifier", "head")


def quantize(model: Any) -> Any:
    """Dynamic int8 quantisation of every Linear layer outside the classification head."""
    import warnings

    import torch

    names = {
        name: None
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.split(".")[0] not in HEADS
    }
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated for torchao from torch 2.10; torch is pinned < 2.10.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        spec = dict.fromkeys(names, default_dynamic_qconfig)
        return quantize_dynamic(model, spec, dtype=torch.qint8).eval()


def _quantized_layers(model: Any) -> dict[str, Any]:
    from torch.ao.nn.quantized.dynamic import Linear

    return {name: m for name, m in model.named_modules() if isinstance(m, Linear)}


def _owned_by(key: str, layers: dict[str, Any]) -> bool:
    return any(key.startswith(f"{name}.") for name in layers)


def quantized_tensors(model: Any) -> dict[str, Any]:
    """The tensors of a dynamically quantised model, as safetensors can hold them."""
    import torch

    layers = _quantized_layers(model)
    if not layers:
        raise ValueError("the model has no dynamically quantised Linear layer")
    tensors: dict[str, Any] = {}
    for name, layer in layers.items():
        weight = layer.weight()
        if weight.qscheme() != torch.per_tensor_affine:
            raise ValueError(f"layer {name}: {weight.qscheme()} is not stored (per tensor only)")
        tensors[f"{name}.int8_weight"] = weight.int_repr().contiguous()
        tensors[f"{name}.int8_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        tensors[f"{name}.int8_zero_point"] = torch.tensor([weight.q_zero_point()])
        bias = layer.bias()
        tensors[f"{name}.int8_bias"] = (
            bias.detach().contiguous() if bias is not None else torch.zeros(weight.shape[0])
        )
    for key, value in model.state_dict().items():
        if not _owned_by(key, layers) and isinstance(value, torch.Tensor):
            tensors[key] = value.detach().contiguous()
    return tensors


def save_quantized(model: Any, directory: Path) -> Path:
    from safetensors.torch import save_file

    path = directory / QUANTIZED_FILE
    save_file(quantized_tensors(model), str(path), metadata={"method": METHOD})
    return path


def load_quantized(skeleton: Any, path: Path) -> Any:
    """``skeleton`` (the fp32 architecture, any weights) quantised, with ``path``'s tensors."""
    import torch
    from safetensors.torch import load_file

    stored = load_file(str(path))
    model = quantize(skeleton)
    layers = _quantized_layers(model)
    expected = {f"{name}.{part}" for name in layers for part in _PARTS}
    stored_layers = {key for key in stored if key.rsplit(".", 1)[-1] in _PARTS}
    if stored_layers != expected:
        odd = sorted(stored_layers ^ expected)[:3]
        raise ArtifactError(f"{path.name}: quantised layers differ from the architecture's ({odd})")
    for name, layer in layers.items():
        weight = torch._make_per_tensor_quantized_tensor(
            stored[f"{name}.int8_weight"],
            float(stored[f"{name}.int8_scale"][0]),
            int(stored[f"{name}.int8_zero_point"][0]),
        )
        layer.set_weight_bias(weight, stored[f"{name}.int8_bias"])
    rest = {key: value for key, value in stored.items() if key not in expected}
    # state_dict's tensors share storage with the parameters and buffers they name
    current = {k: v for k, v in model.state_dict().items() if not _owned_by(k, layers)}
    if set(current) != set(rest):
        odd = sorted(set(current) ^ set(rest))[:3]
        raise ArtifactError(f"{path.name}: tensors differ from the architecture's ({odd})")
    with torch.no_grad():
        for key, value in rest.items():
            if current[key].shape != value.shape:
                raise ArtifactError(f"{path.name}: {key} has shape {tuple(value.shape)}")
            current[key].copy_(value)
    return model.eval()
