"""Ways to learn δ: head only, BitFit, LoRA (peft), full fine-tuning; each ready for `training.fine_tune`."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

STRATEGIES = ("head-only", "bitfit", "lora", "full")
HEAD_NAMES = ("classifier", "score")  # the task head of Hugging Face sequence classifiers
# Learning rates that suit each strategy on SST-2 (few trainable parameters tolerate, and need, larger steps).
DEFAULT_LR = {"head-only": 1e-1, "bitfit": 5e-3, "lora": 5e-3, "full": 1e-4}
LORA_TARGETS = ("query", "value")


def is_head(name: str) -> bool:
    """True for a parameter of the classification head (new in θ_t, absent from the pretrained θ_s)."""
    return any(name == h or name.startswith(h + ".") or f".{h}." in name for h in HEAD_NAMES)


def train_only(model: torch.nn.Module, keep: Callable[[str], bool]) -> torch.nn.Module:
    """Freeze every parameter except those whose name `keep` accepts (in place); never freeze all."""
    n_kept = 0
    for name, p in model.named_parameters():
        p.requires_grad_(bool(keep(name)))
        n_kept += p.requires_grad
    if n_kept == 0:
        raise ValueError("no parameter left trainable: the name filter matched nothing. Check the model's "
                         "parameter names with [n for n, _ in model.named_parameters()].")
    return model


def head_only(model: torch.nn.Module) -> torch.nn.Module:
    """Freeze the encoder; train only the classification head (a linear probe on frozen features)."""
    return train_only(model, is_head)


def bitfit(model: torch.nn.Module) -> torch.nn.Module:
    """BitFit (Ben Zaken et al., 2022): train every bias term plus the head; freeze all weight matrices."""
    return train_only(model, lambda n: is_head(n) or n.endswith(".bias"))


def full(model: torch.nn.Module) -> torch.nn.Module:
    """Full fine-tuning: every parameter trainable."""
    return train_only(model, lambda n: True)


def lora(model: torch.nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
         target_modules: tuple[str, ...] = LORA_TARGETS):
    """LoRA via peft: frozen W plus a trainable low-rank δW = (alpha/r)·B·A on the targets, and the head."""
    from peft import LoraConfig, TaskType, get_peft_model

    if r < 1:
        raise ValueError(f"LoRA rank r={r} must be a positive integer (typical: 4, 8, 16).")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in names]
    if missing:
        raise ValueError(f"LoRA target modules {missing} are not in this model; BERT's attention projections "
                         "are called query / key / value (other models name them differently, e.g. q_proj).")
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(target_modules))
    with warnings.catch_warnings():  # transformers 5 deprecation notices raised inside peft
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)  # SEQ_CLS also makes the head ("classifier") trainable


def prepare(model: torch.nn.Module, strategy: str, **kwargs) -> torch.nn.Module:
    """Apply a strategy by name ('head-only', 'bitfit', 'lora', 'full'); returns the model to fine-tune."""
    fns = {"head-only": head_only, "bitfit": bitfit, "lora": lora, "full": full}
    if strategy not in fns:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    return fns[strategy](model, **kwargs)


def trainable_summary(model: torch.nn.Module, base_total: int | None = None) -> dict:
    """Trainable and total parameters, and the trainable share of `base_total` (default: the total)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    base = base_total or total
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / base}


@torch.no_grad()
def lora_deltas(peft_model) -> dict[str, torch.Tensor]:
    """The weight update each LoRA layer adds, δW = (alpha/r)·B·A, keyed by the wrapped module's name."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "get_delta_weight"):
            for adapter in module.lora_A:
                out[name] = module.get_delta_weight(adapter).detach().cpu()
    if not out:
        raise ValueError("no LoRA layers found: pass the model that strategies.lora() returned.")
    return out
