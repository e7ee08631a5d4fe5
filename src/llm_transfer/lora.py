"""LoRA written out (Hu et al., 2021): a frozen linear layer plus a trainable low-rank update (α/r)·B·A.

Notebook 03 builds the same layer in view and checks it against `peft`; `strategies.lora` is the peft version.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .strategies import LORA_TARGETS, is_head


class LoRALinear(nn.Module):
    """y = W x + b + (α/r)·B·A·dropout(x), with W and b frozen, A (r × in) random and B (out × r) zero at first."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r={r} must be a positive integer (typical: 4, 8, 16).")
        self.base = base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # the initialisation of the LoRA paper's code and peft
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer's output plus the low-rank path."""
        return self.base(x) + (self.dropout(x) @ self.A.T @ self.B.T) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The update this layer adds to W: δW = (α/r)·B·A (out × in, rank ≤ r)."""
        return (self.B @ self.A * self.scaling).detach()


def inject_lora(model: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                targets: tuple[str, ...] = LORA_TARGETS) -> nn.Module:
    """Freeze `model`, wrap every nn.Linear whose name ends in one of `targets` in a LoRALinear (in place);
    the classification head stays trainable, as with peft's SEQ_CLS task."""
    for p in model.parameters():
        p.requires_grad_(False)
    found = [(name, m) for name, m in model.named_modules()
             if name.rsplit(".", 1)[-1] in targets and isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"no nn.Linear named {targets} in this model; BERT's attention projections are called "
                         "query / key / value (other models name them differently, e.g. q_proj).")
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child,
                LoRALinear(module, r=r, alpha=alpha, dropout=dropout))
    for name, p in model.named_parameters():
        if is_head(name):
            p.requires_grad_(True)
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear in `model`, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def copy_lora_to_peft(model: nn.Module, peft_model: nn.Module, adapter: str = "default") -> int:
    """Copy each LoRALinear's A and B into the matching peft LoRA layer; returns how many layers were copied."""
    peft_modules = dict(peft_model.named_modules())
    n = 0
    for name, layer in lora_layers(model).items():
        target = peft_modules.get(f"base_model.model.{name}") or peft_modules.get(name)
        if target is None or not hasattr(target, "lora_A"):
            raise ValueError(f"{name}: no peft LoRA layer of that name; build the peft model from the same "
                             "architecture with the same target modules.")
        target.lora_A[adapter].weight.copy_(layer.A)
        target.lora_B[adapter].weight.copy_(layer.B)
        if not math.isclose(target.scaling[adapter], layer.scaling):
            raise ValueError(f"{name}: peft scales by {target.scaling[adapter]}, this layer by {layer.scaling}; "
                             "use the same r and alpha on both sides.")
        n += 1
    if n == 0:
        raise ValueError("the model has no LoRALinear layers: call inject_lora first.")
    return n
