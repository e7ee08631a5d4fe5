"""The machine a result was measured on: CPU model, threads, native bf16, and the precision to train in."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

PRECISIONS = ("auto", "no", "bf16", "fp16")


class PrecisionError(ValueError):
    """A precision was asked for that the series does not know."""


def _cpuinfo() -> str:
    """The text of /proc/cpuinfo ('' where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX)."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cuda_index(device: torch.device) -> int:
    """The CUDA device index `device` names (cuda alone = the current device)."""
    return device.index if device.index is not None else torch.cuda.current_device()


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` does bf16 natively (CPU: AVX512-BF16 or AMX; CUDA: Ampere or newer).

    Elsewhere bf16 autocast is emulated and slower than fp32, so "auto" precision avoids it there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        return torch.cuda.get_device_capability(_cuda_index(device))[0] >= 8
    if device.type != "cpu":
        return False
    return cpu_has_native_bf16()


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> str:
    """'auto' -> bf16 where native, fp16 on a CUDA GPU without bf16 (e.g. a T4), else 'no' (fp32)."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"mixed_precision={requested!r} is not one of {', '.join(PRECISIONS)}.")
    if requested != "auto":
        return requested
    if native_bf16(device):
        return "bf16"
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return "fp16"
    return "no"


def autocast(device: str | torch.device, precision: str = "no"):
    """An autocast context for a resolved precision ('bf16', 'fp16' or 'no'); weights stay fp32."""
    device = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    cpu_fp16 = device.type == "cpu" and dtype == torch.float16  # no fp16 autocast on CPUs
    enabled = dtype is not None and device.type in ("cpu", "cuda") and not cpu_fp16
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=enabled)


def bf16_autocast(device: str | torch.device, bf16: bool | None = None):
    """bf16 autocast on `device` (bf16=None: where it has native bf16), else a no-op context; weights stay fp32.

    Measured on this project's CPU (AVX512-BF16): prediction ~2.9x and training ~2x the fp32 throughput, the same
    dev labels and accuracy (benchmarks/README.md). Pass bf16=False for exact fp32.
    """
    on = native_bf16(device) if bf16 is None else bf16
    return autocast(device, "bf16" if on else "no")


def launch() -> tuple[int, int]:
    """(processes, this rank) of a torchrun / `accelerate launch` start, read from its environment; (1, 0) alone."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def set_threads(threads: int | None) -> int:
    """Use `threads` PyTorch threads (None: leave PyTorch's default); returns the number in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be at least 1.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def describe(device: str | None = None) -> str:
    """A one-line description of the machine a result was measured on."""
    n = torch.get_num_threads()
    desc = (f"{cpu_model()}, {os.cpu_count()} cores visible, "
            f"torch {torch.__version__} with {n} thread{'s' if n != 1 else ''}")
    if (device or "").startswith("cuda") and torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(_cuda_index(torch.device(device)))}"
    return desc
