"""Faster inference weights: int8 dynamic quantisation of the linear layers, or bf16 weights.

Both return a new model (the one passed in is left as it is) that `training.predict_proba` and
`training.predict_logits` take as they are, with their default `bf16` setting or any other. Measured on the
872 SST-2 dev sentences (benchmarks/bench_inference.py, results in benchmarks/results/inference.md): on a CPU
with native bf16 (AVX512-BF16 or AMX), bf16 weights are the fastest (2.28x `pipeline` at its best; no per-batch
weight casts as under autocast); int8 beats fp32 (2.4x) and bf16 autocast there but not bf16 weights, so it is the
lever for CPUs without native bf16.
"""

from __future__ import annotations

import copy
import warnings

import torch

from .hardware import _cpuinfo, native_bf16

WEIGHTS = ("fp32", "bf16", "int8")  # `inference_weights` choices (CLI: --int8, --bf16-weights)


def _device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        raise ValueError("the model has no parameters to convert.") from None


def _as_float(module: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: feed a quantised linear fp32 input (under bf16 autocast it would get bf16 and fail)."""
    return (args[0].float(), *args[1:])


def int8_engine() -> str:
    """The quantised-kernel engine for this CPU: oneDNN where it has AMX-INT8 (1.4x x86's here), else torch's."""
    if "onednn" in torch.backends.quantized.supported_engines and " amx_int8" in _cpuinfo():
        return "onednn"
    return torch.backends.quantized.engine


def quantize_int8(model: torch.nn.Module, engine: str | None = None) -> torch.nn.Module:
    """A copy of `model` whose nn.Linear layers run in int8 (dynamic activations, per-channel weights; CPU only).

    Sets torch's process-wide quantised engine to `engine` (None: `int8_engine()`): the weights are packed for it.
    """
    device = _device(model)
    if device.type != "cpu":
        raise ValueError(f"int8 dynamic quantisation runs on the CPU only; the model is on {device}. "
                         "Move it with model.to('cpu') first, or use bf16 weights on a GPU.")
    if not any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        raise ValueError("the model has no torch.nn.Linear layer to quantise (is it already quantised?).")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("int8 quantisation needs fp32 weights; this model has "
                         f"{sorted({str(p.dtype) for p in model.parameters()} - {'torch.float32'})}.")
    # torch.ao.quantization is deprecated in favour of torchao, but torchao's CPU replacement
    # (Int8DynamicActivationInt8WeightConfig) ran at 55 % of this path's speed in eager mode (benchmarks/README.md).
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engine = engine or int8_engine()
    if engine not in torch.backends.quantized.supported_engines:
        have = ", ".join(torch.backends.quantized.supported_engines)
        raise ValueError(f"engine={engine!r} is not in this torch build; it has {have}.")
    torch.backends.quantized.engine = engine

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*deprecated")
        q = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=False)
    for m in q.modules():
        if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic"):
            m.register_forward_pre_hook(_as_float)
    return q.eval()


def to_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with bf16 weights, on a device with native bf16 (elsewhere it would be slower than fp32)."""
    device = _device(model)
    if not native_bf16(device):
        raise ValueError(f"{device} has no native bf16 (CPU: AVX512-BF16 or AMX; GPU: Ampere or newer), so bf16 "
                         "weights would run slower than fp32; use int8 on a CPU, or keep fp32.")
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def inference_weights(model: torch.nn.Module, weights: str = "fp32") -> torch.nn.Module:
    """`model` as is ('fp32'), with bf16 weights ('bf16') or int8 linear layers ('int8'), for prediction."""
    if weights == "fp32":
        return model
    if weights == "bf16":
        return to_bf16(model)
    if weights == "int8":
        return quantize_int8(model)
    raise ValueError(f"weights={weights!r}: choose one of {', '.join(WEIGHTS)}.")
