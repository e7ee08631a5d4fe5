"""The transfer update θ_t = θ_s + δ as arithmetic on parameter tensors: compute δ, measure it, apply λ·δ."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pandas as pd
import torch

State = Mapping[str, torch.Tensor]

# Order in which parameter types and layers are shown in tables and charts.
PARAM_TYPES = ["embeddings", "attention Q", "attention K", "attention V", "attention output", "FFN",
               "LayerNorm", "pooler", "head", "other"]
_TYPE_RULES = [  # first match wins; names are BERT's (with or without a "bert." / peft prefix)
    (r"LayerNorm|layer_?norm|\bln_", "LayerNorm"),
    (r"embeddings\.", "embeddings"),
    (r"attention\.self\.query", "attention Q"),
    (r"attention\.self\.key", "attention K"),
    (r"attention\.self\.value", "attention V"),
    (r"attention\.output\.dense", "attention output"),
    (r"intermediate\.dense|\.output\.dense", "FFN"),
    (r"pooler\.", "pooler"),
    (r"(^|\.)(classifier|score)\.", "head"),
]


class DeltaError(ValueError):
    """Two parameter sets that cannot be subtracted or combined; the message says which names and why."""


def state_of(model_or_state: torch.nn.Module | State) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a model's named parameters (no buffers), or of a name → tensor map."""
    if isinstance(model_or_state, torch.nn.Module):
        items = model_or_state.named_parameters()
    elif isinstance(model_or_state, Mapping):
        items = model_or_state.items()
    else:
        raise TypeError(f"expected a torch.nn.Module or a name -> tensor mapping, got {type(model_or_state)}")
    return {k: v.detach().to("cpu", copy=True) for k, v in items}


def param_type(name: str) -> str:
    """A BERT parameter's role: embeddings, attention Q/K/V/output, FFN, LayerNorm, pooler, head, other."""
    for pattern, kind in _TYPE_RULES:
        if re.search(pattern, name):
            return kind
    return "other"


def layer_of(name: str) -> str:
    """Where a BERT parameter sits: 'embeddings', 'layer 3', 'pooler', 'head' or 'other'."""
    if m := re.search(r"layer\.(\d+)\.", name):
        return f"layer {int(m.group(1))}"
    kind = param_type(name)
    if kind == "LayerNorm" and "embeddings." in name:
        return "embeddings"
    return kind if kind in ("embeddings", "pooler", "head") else "other"


def split_names(theta_s: State, theta_t: State) -> tuple[list[str], list[str], list[str]]:
    """(shared, target-only, source-only) parameter names; shared ones must have equal shapes."""
    shared = [k for k in theta_t if k in theta_s]
    bad = [f"{k}: {tuple(theta_s[k].shape)} vs {tuple(theta_t[k].shape)}" for k in shared
           if theta_s[k].shape != theta_t[k].shape]
    if bad:
        raise DeltaError("source and target parameters with the same name differ in shape, so "
                         f"δ = θ_t − θ_s is undefined for them: {'; '.join(bad[:5])}. Were the two models "
                         "built with different configs (e.g. num_labels)? Pass names= to compare only the "
                         "matching ones.")
    return shared, [k for k in theta_t if k not in theta_s], [k for k in theta_s if k not in theta_t]


def compute_delta(theta_s: torch.nn.Module | State, theta_t: torch.nn.Module | State,
                  names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """δ = θ_t − θ_s for the named (default: all shared) parameters, in float64 so θ_s + δ gives θ_t back."""
    s, t = state_of(theta_s), state_of(theta_t)
    shared, _, _ = split_names(s, t)
    if names is None:
        names = shared
    names = list(names)
    missing = [k for k in names if k not in s or k not in t]
    if missing:
        raise DeltaError(f"{len(missing)} requested names are not in both models, e.g. {missing[:3]}; "
                         f"the shared names start {shared[:3]}.")
    if not names:
        raise DeltaError("the two models share no parameter names; δ needs one architecture on both sides.")
    return {k: t[k].double() - s[k].double() for k in names}


def apply_delta(model: torch.nn.Module, theta_s: State, delta: State, scale: float = 1.0) -> torch.nn.Module:
    """Set each parameter named in δ to θ_s + λ·δ (λ = `scale`), in place; the others (e.g. the head) stay."""
    params = dict(model.named_parameters())
    missing = [k for k in delta if k not in params or k not in theta_s]
    if missing:
        raise DeltaError(f"{len(missing)} names of δ are missing from the model or from θ_s, e.g. "
                         f"{missing[:3]}; apply δ to a model of the architecture it was computed on.")
    with torch.no_grad():
        for k, d in delta.items():
            p = params[k]
            p.copy_((theta_s[k].double() + scale * d).to(device=p.device, dtype=p.dtype))
    return model


def relative_norms(delta: State, theta_s: State) -> pd.DataFrame:
    """One row per parameter: layer, type, size, ‖δ‖, ‖θ_s‖ and the relative change ‖δ‖ / ‖θ_s‖."""
    rows = []
    for k, d in delta.items():
        if k not in theta_s:
            raise DeltaError(f"{k}: in δ but not in θ_s; pass the θ_s that δ was computed from.")
        ns, nd = float(theta_s[k].double().norm()), float(d.double().norm())
        rows.append({"name": k, "layer": layer_of(k), "type": param_type(k), "numel": d.numel(),
                     "norm_delta": nd, "norm_source": ns, "relative": nd / ns if ns > 0 else float("inf")})
    return pd.DataFrame(rows)


def _layer_key(layer: str) -> tuple[int, int]:
    """Sort key: embeddings, layer 0..n, pooler, head, other."""
    if layer.startswith("layer "):
        return (1, int(layer.split()[1]))
    return ({"embeddings": 0, "pooler": 2, "head": 3}.get(layer, 4), 0)


def group_norms(table: pd.DataFrame, by: str | list[str] = "type") -> pd.DataFrame:
    """Relative change per group: sqrt(Σ‖δ‖²) / sqrt(Σ‖θ_s‖²), i.e. over the group's stacked tensors."""
    g = table.assign(d2=table.norm_delta ** 2, s2=table.norm_source ** 2).groupby(by, sort=False)
    out = g.agg(numel=("numel", "sum"), d2=("d2", "sum"), s2=("s2", "sum")).reset_index()
    out["relative"] = (out.d2 / out.s2) ** 0.5
    return out.drop(columns=["d2", "s2"])


def norm_grid(table: pd.DataFrame) -> pd.DataFrame:
    """Relative change as a layer × type grid (rows in network order, columns in PARAM_TYPES order)."""
    grid = group_norms(table, ["layer", "type"]).pivot(index="layer", columns="type", values="relative")
    rows = sorted(grid.index, key=_layer_key)
    cols = [c for c in PARAM_TYPES if c in grid.columns]
    return grid.loc[rows, cols]
