"""int8 versions of a model: static quantisation of the encoder's Linear layers, stored as
plain tensors in safetensors (no pickle) and rebuilt from them.

Each quantised layer keeps int8 weights (one scale and zero point per output channel) and one
fixed scale and zero point for its input, set by observing the layer's inputs on calibration
documents (torch.ao's HistogramObserver, the x86 engine's default). Activations are quantised
with those fixed scales, so a document's PD does not depend on the documents beside it in a
batch, and batches can be as large as for fp32. The layer's output is fp32 (fbgemm's
``linear_with_input_q_dq_qweight_dq_output_fp32``). Embeddings, layer norms, attention and
the classification head stay fp32.

``quantized.safetensors`` holds, per quantised layer ``<name>``, ``<name>.int8_weight``,
``<name>.int8_scale``, ``<name>.int8_zero_point``, ``<name>.int8_bias`` (fp32),
``<name>.int8_input_scale`` and ``<name>.int8_input_zero_point``, and every other parameter and
buffer as is. Loading builds the architecture from ``config.json`` (no weights read), puts the
same layers in place, and the stored tensors in: every layer and tensor must match, or it is
refused.

On a GPU the equivalent is weight-only int8 (bitsandbytes, torchao): another artifact, not this.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from riskudf.model.artifact import ArtifactError

QUANTIZED_FILE = "quantized.safetensors"
METHOD = "static_int8"
ENGINES = ("x86", "fbgemm")  # the fbgemm kernels the fp32-output int8 linear needs
_PARTS = (
    "int8_weight",
    "int8_scale",
    "int8_zero_point",
    "int8_bias",
    "int8_input_scale",
    "int8_input_zero_point",
)

# Heads stay fp32: a probe's head carries the folded standardisation (large weights, a large
# cancelling bias) that int8 would coarsen; it is one small matmul anyway.
HEADS = ("classifier", "head")


INPUT_QMAX = 127  # inputs use 7 bits (0..127), as fbgemm needs on CPUs without AVX512-VNNI


class Int8Linear(torch.nn.Module):
    """A Linear layer with int8 weights and a fixed int8 input scale; fp32 in and out.

    Inputs are clipped to the calibrated range first: fbgemm would otherwise quantise them up
    to 255, which its AVX2 kernels (16-bit sums) and VNNI kernels compute differently."""

    def __init__(self, weight: Any, bias: Any, input_scale: float, input_zero_point: int) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.input_scale = float(input_scale)
        self.input_zero_point = int(input_zero_point)
        self.high = (INPUT_QMAX - self.input_zero_point) * self.input_scale
        self.packed = torch.ops.quantized.linear_prepack(weight, bias)

    def forward(self, x: Any) -> Any:
        flat = x.reshape(-1, self.in_features).float()
        # Below the range, quantisation clips at 0 itself; above, clip only when needed (a
        # full clamp writes a copy of every input: twice the layer's time).
        if flat.numel() and float(flat.max()) > self.high:
            flat = flat.clamp_max(self.high)
        flat = flat.contiguous()
        out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            flat, self.input_scale, self.input_zero_point, self.packed
        )
        return out.reshape(*x.shape[:-1], self.out_features)

    def weight_bias(self) -> tuple[Any, Any]:
        weight, bias = torch.ops.quantized.linear_unpack(self.packed)
        return weight, (bias if bias is not None else torch.zeros(self.out_features))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def is_int8(model: Any) -> bool:
    """Whether ``model`` holds int8 layers (an int8 version)."""
    return any(isinstance(module, Int8Linear) for module in model.modules())


def _targets(model: Any) -> dict[str, Any]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.split(".")[0] not in HEADS
    }


def _replace(model: Any, name: str, module: Any) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _observer(kind: str) -> Any:
    """The x86 engine's default observer: a histogram of inputs (7-bit, as fbgemm needs on CPUs
    without VNNI) or per-channel weight ranges."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated for torchao from torch 2.10; torch is pinned < 2.10.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig

        return getattr(get_default_qconfig("x86"), kind)()


def quantize(model: Any, calibrate: Callable[[Any], object]) -> Any:
    """``model`` with every Linear layer outside the head made int8, in place. ``calibrate``
    runs the fp32 model on calibration documents (the scoring path): each layer's input scale
    is set from the inputs it saw there."""
    targets = _targets(model)
    if not targets:
        raise ValueError("the model has no Linear layer to quantise")
    if torch.backends.quantized.engine not in ENGINES:
        raise ValueError(
            f"int8 versions need torch's quantised engine to be one of {ENGINES}, not "
            f"{torch.backends.quantized.engine!r} (an x86 CPU with AVX2)"
        )
    observers = {name: _observer("activation") for name in targets}
    hooks = [
        module.register_forward_pre_hook(lambda _m, args, o=observers[name]: o(args[0].float()))
        for name, module in targets.items()
    ]
    try:
        with torch.no_grad():
            calibrate(model.eval())
    finally:
        for hook in hooks:
            hook.remove()
    for name, linear in targets.items():
        observer = observers[name]
        if observer.min_val.numel() == 0 or not torch.isfinite(observer.min_val):
            raise ValueError(f"layer {name} saw no calibration input")
        scale, zero_point = observer.calculate_qparams()
        observe = _observer("weight")
        weight = linear.weight.detach().float()
        observe(weight)
        w_scale, w_zero = observe.calculate_qparams()
        qweight = torch.quantize_per_channel(
            weight, w_scale.double(), w_zero.long(), 0, torch.qint8
        )
        bias = linear.bias.detach().float() if linear.bias is not None else None
        _replace(model, name, Int8Linear(qweight, bias, float(scale), int(zero_point)))
    return model.eval()


def quantized_tensors(model: Any) -> dict[str, Any]:
    """The tensors of an int8 model, as safetensors can hold them."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, Int8Linear)}
    if not layers:
        raise ValueError("the model has no int8 Linear layer")
    tensors: dict[str, Any] = {}
    for name, layer in layers.items():
        weight, bias = layer.weight_bias()
        tensors[f"{name}.int8_weight"] = weight.int_repr().contiguous()
        tensors[f"{name}.int8_scale"] = weight.q_per_channel_scales().double().contiguous()
        tensors[f"{name}.int8_zero_point"] = weight.q_per_channel_zero_points().long().contiguous()
        tensors[f"{name}.int8_bias"] = bias.detach().float().contiguous()
        tensors[f"{name}.int8_input_scale"] = torch.tensor([layer.input_scale], dtype=torch.float64)
        tensors[f"{name}.int8_input_zero_point"] = torch.tensor([layer.input_zero_point])
    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().contiguous()
    return tensors


def save_quantized(model: Any, directory: Path) -> Path:
    from safetensors.torch import save_file

    path = directory / QUANTIZED_FILE
    save_file(quantized_tensors(model), str(path), metadata={"method": METHOD})
    return path


def _check_layer(file: str, name: str, stored: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Refuse a layer's stored tensors unless they are what quantize makes: int8 weights of the
    layer's shape, positive finite per-channel scales, symmetric (zero) weight zero points, an
    fp32 bias, one positive finite input scale and one input zero point in 0..127."""
    out = shape[0]
    t = {part: stored[f"{name}.{part}"] for part in _PARTS}
    problems = {
        "int8_weight": t["int8_weight"].dtype != torch.int8
        or tuple(t["int8_weight"].shape) != shape,
        "int8_scale": t["int8_scale"].dtype != torch.float64
        or tuple(t["int8_scale"].shape) != (out,)
        or not bool(torch.all(torch.isfinite(t["int8_scale"]) & (t["int8_scale"] > 0))),
        "int8_zero_point": t["int8_zero_point"].dtype != torch.int64
        or tuple(t["int8_zero_point"].shape) != (out,)
        or bool(torch.any(t["int8_zero_point"] != 0)),
        "int8_bias": t["int8_bias"].dtype != torch.float32 or tuple(t["int8_bias"].shape) != (out,),
        "int8_input_scale": t["int8_input_scale"].dtype != torch.float64
        or tuple(t["int8_input_scale"].shape) != (1,)
        or not (math.isfinite(float(t["int8_input_scale"][0])) and t["int8_input_scale"][0] > 0),
        "int8_input_zero_point": t["int8_input_zero_point"].dtype != torch.int64
        or tuple(t["int8_input_zero_point"].shape) != (1,)
        or not 0 <= int(t["int8_input_zero_point"][0]) <= INPUT_QMAX,
    }
    bad = [part for part, wrong in problems.items() if wrong]
    if bad:
        raise ArtifactError(f"{file}: layer {name} has invalid {', '.join(bad)}")


def load_quantized(skeleton: Any, path: Path) -> Any:
    """``skeleton`` (the fp32 architecture, any weights) with its Linear layers outside the
    head made int8 from ``path``'s tensors, and every other tensor from ``path``."""
    from safetensors.torch import load_file

    stored = load_file(str(path))
    targets = _targets(skeleton)
    expected = {f"{name}.{part}" for name in targets for part in _PARTS}
    stored_layers = {key for key in stored if key.rsplit(".", 1)[-1] in _PARTS}
    if stored_layers != expected:
        odd = sorted(stored_layers ^ expected)[:3]
        raise ArtifactError(f"{path.name}: quantised layers differ from the architecture's ({odd})")
    for name, linear in targets.items():
        _check_layer(path.name, name, stored, tuple(linear.weight.shape))
        int8 = stored[f"{name}.int8_weight"]
        weight = torch._make_per_channel_quantized_tensor(
            int8, stored[f"{name}.int8_scale"], stored[f"{name}.int8_zero_point"], 0
        )
        layer = Int8Linear(
            weight,
            stored[f"{name}.int8_bias"],
            float(stored[f"{name}.int8_input_scale"][0]),
            int(stored[f"{name}.int8_input_zero_point"][0]),
        )
        _replace(skeleton, name, layer)
    rest = {key: value for key, value in stored.items() if key not in expected}
    # state_dict's tensors share storage with the parameters and buffers they name
    current = skeleton.state_dict()
    if set(current) != set(rest):
        odd = sorted(set(current) ^ set(rest))[:3]
        raise ArtifactError(f"{path.name}: tensors differ from the architecture's ({odd})")
    with torch.no_grad():
        for key, value in rest.items():
            if current[key].shape != value.shape or current[key].dtype != value.dtype:
                raise ArtifactError(f"{path.name}: {key} is {value.dtype} {tuple(value.shape)}")
            current[key].copy_(value)
    return skeleton.eval()
