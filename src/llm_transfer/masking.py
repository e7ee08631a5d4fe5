"""BERT-style masking for the masked-LM objective: pick 15 %; 80 % [MASK], 10 % random, 10 % kept."""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100  # label of a position the loss skips (PyTorch's cross_entropy default)


def mask_tokens(input_ids: torch.Tensor, mask_id: int, special_ids: Sequence[int] | torch.Tensor,
                random_ids: Sequence[int] | torch.Tensor, attention_mask: torch.Tensor | None = None,
                prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (corrupted input_ids, labels): labels hold the original id where a token was picked, else -100.

    Special tokens ([CLS], [SEP], [PAD]...) and padding (attention_mask == 0) are never picked. A picked token
    becomes [MASK] with probability `mask_frac`, a token drawn uniformly from `random_ids` with probability
    `random_frac`, and stays unchanged otherwise (the model must still predict it).
    """
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}.")
    if not 0.0 <= prob <= 1.0 or mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1.0:
        raise ValueError(f"need 0 <= prob <= 1 and mask_frac + random_frac <= 1; got prob={prob}, "
                         f"mask_frac={mask_frac}, random_frac={random_frac}.")
    random_ids = torch.as_tensor(random_ids, dtype=input_ids.dtype, device=input_ids.device)
    if random_ids.numel() == 0:
        raise ValueError("random_ids is empty: pass the token ids a random replacement may be drawn from.")
    special = torch.as_tensor(special_ids, dtype=input_ids.dtype, device=input_ids.device)
    maskable = ~torch.isin(input_ids, special)
    if attention_mask is not None:
        maskable &= attention_mask.bool()

    def uniform() -> torch.Tensor:
        return torch.rand(input_ids.shape, generator=generator).to(input_ids.device)

    picked = (uniform() < prob) & maskable
    how = uniform()  # one draw decides what happens to a picked token
    to_mask = picked & (how < mask_frac)
    to_random = picked & (how >= mask_frac) & (how < mask_frac + random_frac)
    draw = torch.randint(len(random_ids), input_ids.shape, generator=generator).to(input_ids.device)
    rand_tok = random_ids[draw]
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    corrupted = torch.where(to_random, rand_tok, corrupted)
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return corrupted, labels


def masking_stats(input_ids: torch.Tensor, corrupted: torch.Tensor, labels: torch.Tensor, mask_id: int,
                  maskable: torch.Tensor) -> dict[str, float]:
    """Measured proportions: picked / maskable tokens; of the picked ones [MASK] / other token / unchanged."""
    picked = labels != IGNORE_INDEX
    n_picked = int(picked.sum())
    if n_picked == 0:
        raise ValueError("no token was picked: use a larger batch or a larger prob.")
    as_mask = picked & (corrupted == mask_id)
    unchanged = picked & (corrupted == input_ids)
    return {"maskable_tokens": int(maskable.sum()), "picked": n_picked,
            "picked_frac": n_picked / max(int(maskable.sum()), 1),
            "mask_frac": int(as_mask.sum()) / n_picked,
            "random_frac": int((picked & ~as_mask & ~unchanged).sum()) / n_picked,
            "unchanged_frac": int(unchanged.sum()) / n_picked,
            "special_or_pad_picked": int((picked & ~maskable).sum())}
