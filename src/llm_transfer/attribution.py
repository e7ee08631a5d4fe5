"""Which word-pieces did a 🤗 sequence classifier rely on? Token attributions and a check of them.

* ``occlusion``: leave one word-piece out (replace it by [MASK]) and measure the drop in the target class's
  *probability*; every word-piece at once, in one batched forward pass.
* ``integrated_gradients``: Integrated Gradients (Sundararajan et al. 2017) written out on the word embeddings only
  (the model still adds position and token-type embeddings), with the midpoint rule, and its completeness gap.
* ``deletion_curve``: the predicted class's probability after masking the top-k word-pieces of a ranking; a faithful
  ranking makes it fall fast. Rankings: ``rank`` (from scores), ``random_ranking``, ``attention_ranking``.

Word-pieces are the tokens between [CLS] and [SEP]; rankings index them in order (0 = the first word-piece).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch


class Encoded(NamedTuple):
    """One tokenised sentence: ids and mask of shape (1, L), word-piece positions and their strings."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    tokens: list[str]


class Occlusion(NamedTuple):
    """Leave-one-out result: the word-pieces, each one's drop in p(target), the target and its unmasked p."""

    tokens: list[str]
    drops: np.ndarray
    target: int
    prob: float


class IGResult(NamedTuple):
    """Integrated Gradients per position (all L), the gap sum(attributions) - (f(x) - f(baseline)), f(x), f(base)."""

    attributions: np.ndarray
    gap: float
    f_x: float
    f_baseline: float


def encode(tokenizer, sentence: str) -> Encoded:
    """Tokenise one sentence; refuse one with no word-pieces."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError(f"need a non-empty sentence, got {sentence!r}.")
    enc = tokenizer(sentence, truncation=True, return_special_tokens_mask=True, return_tensors="pt")
    positions = torch.nonzero(enc["special_tokens_mask"][0] == 0).flatten()
    if len(positions) == 0:
        raise ValueError(f"{sentence!r} tokenises to no word-pieces.")
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0, positions].tolist())
    return Encoded(enc["input_ids"], enc["attention_mask"], positions, tokens)


def _replacement_id(tokenizer, replace: str) -> int:
    """The id of the replacement token: "[MASK]" / "mask", "[PAD]" / "pad", or any token of the vocabulary."""
    token = {"mask": tokenizer.mask_token, "pad": tokenizer.pad_token}.get(replace, replace)
    if token is None or token not in tokenizer.get_vocab():
        raise ValueError(f"replacement token {replace!r} is not in the tokenizer's vocabulary.")
    return tokenizer.convert_tokens_to_ids(token)


def _check_target(model, target: int) -> int:
    """The target class as an int in [0, num_labels)."""
    n = model.config.num_labels
    if not 0 <= int(target) < n:
        raise ValueError(f"target must be a class in [0, {n}), got {target}.")
    return int(target)


@torch.no_grad()
def _probs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Class probabilities (batch, classes) in eval mode, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
    return logits.float().softmax(-1).cpu()


def _masked_batch(enc: Encoded, rows: Sequence[Sequence[int]], replace_id: int) -> torch.Tensor:
    """One copy of the ids per row, the word-pieces that row names replaced by replace_id."""
    ids = enc.input_ids.repeat(len(rows), 1)
    for r, pieces in enumerate(rows):
        ids[r, enc.positions[list(pieces)]] = replace_id
    return ids


def occlusion(model, tokenizer, sentence: str, target: int | None = None, replace: str = "[MASK]") -> Occlusion:
    """Drop in p(target) when each word-piece alone is replaced (target None: the predicted class); one batch."""
    enc = encode(tokenizer, sentence)
    rows = [[]] + [[i] for i in range(len(enc.tokens))]  # row 0: the sentence itself
    ids = _masked_batch(enc, rows, _replacement_id(tokenizer, replace))
    probs = _probs(model, ids, enc.attention_mask.expand_as(ids))
    target = int(probs[0].argmax()) if target is None else _check_target(model, target)
    p = probs[:, target].double().numpy()
    return Occlusion(enc.tokens, p[0] - p[1:], target, float(p[0]))


def integrated_gradients(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: int | None = None,
                         steps: int = 50, baseline: str = "pad", keep: torch.Tensor | None = None,
                         batch_size: int = 64) -> IGResult:
    """IG of the target logit w.r.t. the word embeddings, summed over the embedding dimension per position.

    The baseline's word embeddings are [PAD]'s ("pad") or zero ("zeros") at every position, except where the bool
    mask ``keep`` (shape L, e.g. at [CLS]/[SEP]) leaves the real ones. The path integral uses the midpoint rule,
    alphas (k + 1/2) / steps (captum's ``method="riemann_middle"``).
    """
    if baseline not in ("pad", "zeros"):
        raise ValueError(f'baseline must be "pad" or "zeros", got {baseline!r}.')
    if baseline == "pad" and model.config.pad_token_id is None:
        raise ValueError('the model config has no pad_token_id; use baseline="zeros".')
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if input_ids.numel() == 0 or input_ids.dim() > 2 or (input_ids.dim() == 2 and input_ids.shape[0] != 1):
        raise ValueError(f"need the ids of one non-empty sentence, shape (L,) or (1, L); got {tuple(input_ids.shape)}.")
    model.eval()
    device = next(model.parameters()).device
    ids, mask = input_ids.reshape(1, -1).to(device), attention_mask.reshape(1, -1).to(device)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        x = embed(ids)  # (1, L, d): word embeddings only; the model adds position and token-type embeddings
        base = embed(torch.full_like(ids, model.config.pad_token_id)) if baseline == "pad" else torch.zeros_like(x)
        if keep is not None:
            base = torch.where(keep.reshape(1, -1, 1).to(device), x, base)
        logits = model(inputs_embeds=torch.cat([x, base]), attention_mask=mask.expand(2, -1)).logits
    target = int(logits[0].argmax()) if target is None else _check_target(model, target)
    alphas = (torch.arange(steps, device=device, dtype=x.dtype) + 0.5) / steps
    grad_sum = torch.zeros_like(x[0])
    for chunk in alphas.split(batch_size):
        path = (base + chunk.view(-1, 1, 1) * (x - base)).requires_grad_(True)  # (chunk, L, d)
        out = model(inputs_embeds=path, attention_mask=mask.expand(len(chunk), -1)).logits[:, target]
        grad_sum += torch.autograd.grad(out.sum(), path)[0].sum(0)
    attributions = ((x[0] - base[0]) * grad_sum / steps).sum(-1).detach().double().cpu().numpy()
    f_x, f_base = float(logits[0, target]), float(logits[1, target])
    return IGResult(attributions, float(attributions.sum() - (f_x - f_base)), f_x, f_base)


def rank(scores: Sequence[float]) -> np.ndarray:
    """Word-piece indices from the highest score to the lowest (ties: the earlier piece first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def random_ranking(n: int, seed: int = 0) -> np.ndarray:
    """A random order of n word-pieces, the same for the same seed."""
    return np.random.default_rng(seed).permutation(n)


def attention_ranking(model, tokenizer, sentence: str) -> np.ndarray:
    """Word-pieces by the last layer's attention from [CLS] to them, averaged over heads, highest first.

    SDPA attention returns no weights (transformers 5), so the model runs with eager attention for this call.
    """
    enc = encode(tokenizer, sentence)
    model.eval()
    device = next(model.parameters()).device
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=enc.input_ids.to(device), attention_mask=enc.attention_mask.to(device),
                        output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    last = out.attentions[-1][0].float().mean(0)  # (L, L), heads averaged
    return rank(last[0, enc.positions].cpu().numpy())


def deletion_curve(model, tokenizer, sentence: str, ranking: Sequence[int], ks: Sequence[int],
                   replace: str = "[MASK]") -> np.ndarray:
    """p(originally predicted class) after replacing the top-k word-pieces of ranking by [MASK], per k in ks."""
    enc = encode(tokenizer, sentence)
    n, ranking = len(enc.tokens), [int(i) for i in ranking]
    if sorted(ranking) != list(range(n)):
        raise ValueError(f"ranking must order all {n} word-pieces (each of 0..{n - 1} once), got {ranking}.")
    if any(not 0 <= int(k) <= n for k in ks):
        raise ValueError(f"each k must lie in [0, {n}], got {list(ks)}.")
    rows = [[]] + [ranking[: int(k)] for k in ks]  # row 0: the sentence itself, for the predicted class
    ids = _masked_batch(enc, rows, _replacement_id(tokenizer, replace))
    probs = _probs(model, ids, enc.attention_mask.expand_as(ids))
    return probs[1:, int(probs[0].argmax())].double().numpy()
