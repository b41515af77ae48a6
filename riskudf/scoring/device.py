"""Device and precision: CPU flags, precision choice, int8 quantisation, the task's GPU."""

from __future__ import annotations

import os
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# CPU flags (as /proc/cpuinfo spells them) of bf16 matrix arithmetic faster than fp32: AMX.
# AVX512-BF16 without AMX was slower than fp32 in make bench (docs/measurements.md).
FAST_BF16_FLAGS = frozenset({"amx_bf16"})


def resolve_precision(
    requested: str, *, device: str, cpu_flags: frozenset[str], cuda_bf16: bool = False
) -> str:
    """The precision to score in: ``requested``, or for ``auto`` the fastest one that stays
    within 1e-3 of fp32 on the demo portfolio on this hardware.

    bf16 autocast qualifies where the hardware computes in bf16 faster than in fp32 (AMX CPUs,
    GPUs from Ampere on); fp16 on older GPUs; otherwise fp32. int8 dynamic quantisation is
    never the default: it moved PDs by 5.6e-3 here (docs/measurements.md).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    gpu = device.startswith("cuda")
    if requested == "auto":
        if gpu:
            return "bf16" if cuda_bf16 else "fp16"
        return "bf16" if FAST_BF16_FLAGS & cpu_flags else "fp32"
    if gpu and requested == "int8":
        raise ValueError("int8 dynamic quantisation runs on the CPU only")
    if not gpu and requested == "fp16":
        raise ValueError("fp16 autocast is for GPUs; use bf16 or fp32 on the CPU")
    return requested


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not readable)."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def device_precision(requested: str, device: str) -> str:
    """resolve_precision for this process's hardware."""
    cuda_bf16 = False
    if device.startswith("cuda"):
        import torch

        cuda_bf16 = bool(torch.cuda.is_bf16_supported())
    return resolve_precision(requested, device=device, cpu_flags=cpu_flags(), cuda_bf16=cuda_bf16)


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of the Linear layers (weights int8, activations per batch)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated for torchao from torch 2.10; torch is pinned < 2.10.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def is_quantized(model: Any) -> bool:
    """Whether ``model`` holds int8 layers: an int8 version (riskudf.model.quantized)."""
    from riskudf.model.quantized import is_int8

    return is_int8(model)


def check_int8_device(device: str, flags: frozenset[str] | None = None) -> None:
    """Refuse hardware that cannot run an int8 version: a GPU (its int8 layers are fbgemm CPU
    kernels), or a CPU without AVX2 (fbgemm needs it)."""
    if device.startswith("cuda"):
        raise ValueError(
            "an int8 model version runs on the CPU only, not on "
            f"{device}: score it on CPU executors, or score its fp32 parent (the manifest's "
            "quantization.parent_version)"
        )
    flags = cpu_flags() if flags is None else flags
    if "avx2" not in flags:  # no flags line (not x86, or hidden): not known to run it either
        raise ValueError(
            "an int8 model version needs an x86 CPU with AVX2 (none found in /proc/cpuinfo); "
            "score its fp32 parent (the manifest's quantization.parent_version)"
        )


def cuda_index(address: str, visible: str | None, device_count: int) -> int:
    """The torch device index of the GPU Spark assigned by its physical address.

    Where the cluster manager hides the other GPUs (CUDA_VISIBLE_DEVICES), the assigned one is
    numbered by its position in that list.
    """
    if visible:
        ids = [part.strip() for part in visible.split(",")]
        if address in ids:
            return ids.index(address)
    index = int(address)
    return index if index < device_count else 0


def task_device(local_gpu: bool = False) -> str:
    """The GPU Spark assigned to the running task when there is one, else the CPU.

    ``local_gpu``: Spark in local mode assigns no GPUs; use the first one when there is one.
    """
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses and torch.cuda.is_available():
        index = cuda_index(
            gpus.addresses[0], os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()
        )
        return f"cuda:{index}"
    if local_gpu and torch.cuda.is_available():
        return "cuda:0"
    return "cpu"
