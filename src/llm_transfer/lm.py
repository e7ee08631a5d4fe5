"""Pretraining the small language models of `tinylm.py`: corpus, objectives, training loop, the cached artefact, use.

Jobs, in file order: the compact vocabulary; the two objectives (next word, masked word) and their evaluation; the
training loop (sentences or packed blocks); building, saving and loading the models (the series' Wikipedia-pretrained
TinyGPT itself is `source_lm.py`'s); sampling and filling in blanks. The models themselves are in `tinylm.py`
and are re-exported here, so `from llm_transfer.lm import TinyGPT, LMClassifier` keeps working.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from .batching import LengthGroupedBatchSampler
from .checkpoints import atomic_dir, event, verify_manifest
from .hardware import bf16_autocast
from .masking import IGNORE_INDEX, mask_tokens
from .resume import HeldInterrupt
from .settings import Settings
from .tinylm import (  # noqa: F401  (re-exported: the models' historical home)
    LSTMLM,
    Block,
    LMClassifier,
    LMConfig,
    SelfAttention,
    TinyGPT,
    Vocab,
    count_body_parameters,
)

PRETRAIN_RUN = "tiny-lm-wiki"  # source_lm.PRETRAIN_RUN: artifacts/<mode>/tiny-lm-wiki/


def build_vocab(sequences: Sequence[Sequence[int]], special_ids: Sequence[int]) -> list[int]:
    """The special ids, then every id seen in the sequences, most frequent first (ties by id)."""
    counts = Counter(i for s in sequences for i in s)
    rest = sorted((i for i in counts if i not in set(special_ids)), key=lambda i: (-counts[i], i))
    return sorted(set(special_ids)) + rest


# --- objectives -----------------------------------------------------------------------------------------

def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to (input_ids, attention_mask) tensors."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def causal_lm_loss(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Next-word prediction: mean -log P(x_t | x_<t) over every real token but the first; and their count."""
    hidden = model.hidden(input_ids, attention_mask)[:, :-1]  # position t predicts token t+1
    targets = model.vocab(input_ids)[:, 1:]
    real = attention_mask[:, 1:].bool()  # the output layer runs on real positions only: padding costs nothing
    return F.cross_entropy(model.head(hidden[real]), targets[real]), int(real.sum())


def masked_lm_loss(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   generator: torch.Generator | None = None, *, mask_id: int, special_ids: Sequence[int],
                   random_ids: Sequence[int] | torch.Tensor, prob: float = 0.15) -> tuple[torch.Tensor, int]:
    """Fill in the missing word: mean -log P(original | corrupted) over the picked `prob` share; and their count."""
    corrupted, labels = mask_tokens(input_ids, mask_id, special_ids, random_ids, attention_mask, prob=prob,
                                    generator=generator)
    picked = labels != IGNORE_INDEX
    hidden = model.hidden(corrupted, attention_mask)
    return F.cross_entropy(model.head(hidden[picked]), model.vocab(labels[picked])), int(picked.sum())


def masked_lm_objective(model: nn.Module, tokenizer, prob: float = 0.15) -> Callable:
    """masked_lm_loss bound to the tokenizer's [MASK] / special ids, the model's vocabulary and a masking rate."""
    special = list(tokenizer.all_special_ids)
    vocab_ids = model.vocab.to_source
    return partial(masked_lm_loss, mask_id=tokenizer.mask_token_id, special_ids=special,
                   random_ids=vocab_ids[~torch.isin(vocab_ids, torch.tensor(special))], prob=prob)


@torch.no_grad()
def evaluate_lm(model: nn.Module, seqs: Sequence[Sequence[int]], loss_fn: Callable = causal_lm_loss,
                batch_size: int = 256, pad_id: int = 0, seed: int = 0) -> dict[str, float]:
    """Token-weighted mean loss (nats per predicted token) and perplexity exp(loss) over sequences."""
    if len(seqs) == 0:
        raise ValueError("evaluate_lm: no held-out sequences to score.")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)  # the same masks at every evaluation
    device = next(model.parameters()).device
    order = np.argsort([len(s) for s in seqs], kind="stable")
    total, n = 0.0, 0
    for i in range(0, len(order), batch_size):
        ids, mask = pad_batch([seqs[j] for j in order[i:i + batch_size]], pad_id)
        loss, k = loss_fn(model, ids.to(device), mask.to(device), gen)
        total, n = total + loss.item() * k, n + k
    model.train(was_training)
    return {"loss": total / n, "perplexity": math.exp(total / n), "tokens": n}


def _length_grouped(seqs: Sequence[Sequence[int]], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of sentences of similar length (little padding), a new shuffled order each epoch."""
    sampler = LengthGroupedBatchSampler([len(s) for s in seqs], batch_size, seed=seed, drop_last=True)
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        yield from sampler


def block_batches(n_blocks: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of block indices: a new random order (torch.randperm) every pass over the blocks."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n_blocks, generator=gen)
        for i in range(0, n_blocks - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def lr_schedule(steps: int) -> Callable[[int], float]:
    """The learning-rate factor at each step: linear warm-up over 10 % of the steps, then cosine decay to 10 %."""
    warmup = max(1, steps // 10)
    return lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def train_lm(model: nn.Module, train: Sequence[Sequence[int]] | torch.Tensor, heldout: Sequence[Sequence[int]],
             steps: int, batch_size: int = 64, lr: float = 2e-3, loss_fn: Callable = causal_lm_loss,
             eval_every: int = 50, seed: int = 0, pad_id: int = 0, log: Callable = print, bf16: bool | None = None,
             step_losses: list[float] | None = None) -> list[dict]:
    """AdamW, warmup and cosine decay; held-out loss every eval_every steps.

    `train` is either sentences (lists of ids: length-grouped, padded batches) or a 2-D tensor of packed blocks
    (batches of whole blocks in a random order per pass, no padding). Each history row: step, mean train loss since
    the last row, held-out loss, predicted targets so far, seconds. `step_losses`, if given, receives every step's loss.

    bf16=None: bf16 autocast for the training steps where the device has native bf16 (held-out losses stay fp32).
    A first Ctrl-C / "interrupt kernel" (SIGINT) or SIGTERM ends the run after the current step, with one line
    saying where, then KeyboardInterrupt (resume.Terminated for SIGTERM); nothing is saved (no checkpoint here).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(steps))
    history, run_loss, run_n, seen, t0 = [], 0.0, 0, 0, time.perf_counter()
    packed = isinstance(train, torch.Tensor)
    batches = block_batches(len(train), batch_size, seed) if packed else _length_grouped(train, batch_size, seed)
    model.train()
    with HeldInterrupt() as held:
        for step in range(1, steps + 1):
            if packed:
                ids = train[next(batches)]
                mask = torch.ones_like(ids)
            else:
                ids, mask = pad_batch([train[i] for i in next(batches)], pad_id)
            with bf16_autocast(device, bf16):
                loss, k = loss_fn(model, ids.to(device), mask.to(device), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            event(f"lm backward {step}")
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            run_loss, run_n, seen = run_loss + loss.item() * k, run_n + k, seen + k
            if step_losses is not None:
                step_losses.append(loss.item())
            if step % eval_every == 0 or step == steps:
                ev = evaluate_lm(model, heldout, loss_fn, pad_id=pad_id, seed=seed)
                history.append({"step": step, "train_loss": run_loss / run_n, "heldout_loss": ev["loss"],
                                "targets": seen, "seconds": time.perf_counter() - t0})
                log(f"step {step}/{steps}: train loss {run_loss / run_n:.3f} | held-out loss {ev['loss']:.3f} "
                    f"(perplexity {ev['perplexity']:.1f}) | {time.perf_counter() - t0:.0f} s")
                run_loss, run_n = 0.0, 0
            if held.requested:
                model.eval()
                log(f"{held.what} after step {step}/{steps}: the language model keeps no checkpoint, so nothing "
                    "was saved; run it again to train from the start")
                raise held.exception()
    model.eval()
    return history


# --- building, saving and loading the series' small LMs ----------------------------------------------------

def new_lm(train_ids: Sequence[Sequence[int]] | torch.Tensor, tokenizer, arch: str = "gpt", compact: bool = True,
           **sizes) -> nn.Module:
    """A fresh TinyGPT ('gpt'), bidirectional TinyGPT ('bidirectional') or LSTMLM ('lstm') on these ids.

    compact=True keeps only the ids seen in train_ids (a big tokenizer's vocabulary, e.g. BERT's 30,522 pieces);
    compact=False uses the tokenizer's whole vocabulary as it is (a small vocabulary learnt on the corpus).
    """
    keep = build_vocab(train_ids, tokenizer.all_special_ids) if compact else None
    cfg = LMConfig(vocab_size=len(keep) if compact else len(tokenizer),
                   source_vocab_size=len(tokenizer) if compact else 0, causal=arch != "bidirectional", **sizes)
    model = LSTMLM(cfg) if arch == "lstm" else TinyGPT(cfg) if arch in ("gpt", "bidirectional") else None
    if model is None:
        raise ValueError(f"arch={arch!r} is not one of 'gpt', 'bidirectional', 'lstm'.")
    if compact:
        model.vocab.fit(keep, tokenizer.unk_token_id)
    init_output_bias(model, train_ids)
    return model


@torch.no_grad()
def init_output_bias(model: nn.Module, train_ids: Sequence[Sequence[int]]) -> None:
    """Start the output bias at log unigram frequencies (add-one), so step 0 already predicts the word prior.

    A. Karpathy's "init well" advice: the model then spends its steps on context, not on word frequencies.
    """
    predicted = train_ids[:, 1:].reshape(-1) if isinstance(train_ids, torch.Tensor) else \
        torch.as_tensor([i for s in train_ids for i in s[1:]])
    counts = torch.bincount(model.vocab(predicted), minlength=model.cfg.vocab_size).float()
    model.head.bias.copy_(torch.log((counts + 1) / (counts.sum() + len(counts))))


def save_lm(model: nn.Module, folder: str | Path, extra: dict | None = None) -> Path:
    """Write weights (safetensors, tied weights once) and config.json atomically."""

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        meta = {"arch": type(model).__name__, "config": asdict(model.cfg), **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=1))

    return atomic_dir(folder, write, manifest=True)  # manifest.json: SHA-256 of both files, checked by load_lm


def load_lm(folder: str | Path, device: str = "cpu") -> nn.Module:
    """The TinyGPT / LSTMLM that save_lm wrote to `folder`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: no saved language model (needs config.json and "
                                "model.safetensors); run get_pretrained_lm(S) or notebook 02 to write one.")
    verify_manifest(folder)  # a damaged file: CheckpointError naming it
    meta = json.loads((folder / "config.json").read_text())
    model = {"TinyGPT": TinyGPT, "LSTMLM": LSTMLM}[meta["arch"]](LMConfig(**meta["config"]))
    load_model(model, str(folder / "model.safetensors"), device="cpu")
    return model.to(device).eval()


def read_lm_meta(folder: str | Path) -> dict:
    """config.json of a saved LM (architecture, sizes, budget, training history, held-out metrics)."""
    return json.loads((Path(folder) / "config.json").read_text())


def get_pretrained_lm(settings: Settings, log: Callable = print):
    """(TinyGPT, tokenizer) pretrained on Wikipedia (source_lm.get_pretrained_lm): reused when present, else trained."""
    from .source_lm import get_pretrained_lm as pretrained

    return pretrained(settings, log)


# --- using a trained LM ----------------------------------------------------------------------------------

@torch.no_grad()
def generate(model: nn.Module, tokenizer, prompt: str = "", max_new_tokens: int = 20,
             temperature: float = 1.0, top_k: int | None = 50,
             generator: torch.Generator | None = None) -> str:
    """Sample token by token from softmax(logits / temperature) over the top_k, stopping at [SEP]."""
    model.eval()
    device = next(model.parameters()).device
    ids = [tokenizer.cls_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for _ in range(max_new_tokens):
        x = torch.tensor([ids[-model.cfg.block_size:]], device=device)
        logits = model(x)[0, -1] / max(temperature, 1e-6)
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        pick = torch.multinomial(F.softmax(logits, -1).cpu(), 1, generator=generator)
        nxt = int(model.vocab.to_source[pick])
        if nxt == tokenizer.sep_token_id:
            break
        ids.append(nxt)
    return tokenizer.decode(ids[1:])


@torch.no_grad()
def fill_mask(model: nn.Module, tokenizer, text: str | Sequence[int], k: int = 5
              ) -> list[list[tuple[str, float]]]:
    """Top-k (token, probability) for each [MASK] in `text` (a string or token ids), from a masked LM."""
    model.eval()
    ids = tokenizer(text)["input_ids"] if isinstance(text, str) else list(text)
    ids = torch.tensor([ids], device=next(model.parameters()).device)
    where = (ids[0] == tokenizer.mask_token_id).nonzero().flatten()
    if len(where) == 0:
        raise ValueError(f"{text!r} has no {tokenizer.mask_token} token to fill in.")
    probs = F.softmax(model(ids)[0, where], -1)
    probs[:, torch.isin(model.vocab.to_source, torch.tensor(tokenizer.all_special_ids, device=ids.device))] = 0
    out = []  # candidates are words: [SEP], [MASK], [UNK]... are left out
    for row in probs:
        p, i = row.topk(k)
        out.append([(tokenizer.convert_ids_to_tokens(int(model.vocab.to_source[j])), float(q))
                    for q, j in zip(p, i, strict=True)])
    return out


def load_lm_classifier(folder: str | Path, device: str = "cpu") -> LMClassifier:
    """The LMClassifier that save_pretrained wrote to `folder`."""
    meta = json.loads((Path(folder) / "config.json").read_text())
    body = {"TinyGPT": TinyGPT, "LSTMLM": LSTMLM}[meta["body"]](LMConfig(**meta["config"]))
    model = LMClassifier(body, meta["num_labels"], pooling=meta.get("pooling", "last"))
    load_model(model, str(Path(folder) / "model.safetensors"), device="cpu")
    return model.to(device).eval()
