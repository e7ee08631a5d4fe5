"""Pretraining the small language models of `tinylm.py`: corpus, objectives, training loop, the cached artefact, use.

Jobs, in file order: the pretraining text and its compact vocabulary; the two objectives (next word, masked word)
and their evaluation; the training loop; the series' pretrained TinyGPT (budget, save / load, `get_pretrained_lm`
writes it once, notebook 03 reuses it); sampling and filling in blanks. The models themselves are in `tinylm.py`
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
from .checkpoints import atomic_dir, event, recover, verify_manifest
from .hardware import bf16_autocast
from .identity import describe_mismatch, differences, rows_fingerprint, run_identity
from .masking import IGNORE_INDEX, mask_tokens
from .resume import HeldInterrupt
from .settings import HUB_DATA, Settings, display_path
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

PRETRAIN_RUN = "tiny-lm"  # artifacts/<mode>/tiny-lm/{model.safetensors, config.json, history.json}
HELDOUT_FRAC = 0.05


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


def train_lm(model: nn.Module, train: Sequence[Sequence[int]], heldout: Sequence[Sequence[int]], steps: int,
             batch_size: int = 64, lr: float = 2e-3, loss_fn: Callable = causal_lm_loss, eval_every: int = 50,
             seed: int = 0, pad_id: int = 0, log: Callable = print, bf16: bool | None = None) -> list[dict]:
    """AdamW, warmup and cosine decay, length-grouped batches; held-out loss every eval_every steps.

    Each history row: step, mean train loss since the last row, held-out loss, predicted targets so far, seconds.

    bf16=None: bf16 autocast for the training steps where the device has native bf16 (held-out losses stay fp32).
    A first Ctrl-C / "interrupt kernel" (SIGINT) or SIGTERM ends the run after the current step, with one line
    saying where, then KeyboardInterrupt (resume.Terminated for SIGTERM); nothing is saved (no checkpoint here).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    history, run_loss, run_n, seen, t0 = [], 0.0, 0, 0, time.perf_counter()
    batches = _length_grouped(train, batch_size, seed)
    model.train()
    with HeldInterrupt() as held:
        for step in range(1, steps + 1):
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


# --- the series' pretrained TinyGPT ----------------------------------------------------------------------

def pretrain_budget(settings: Settings) -> dict:
    """Sizes of the pretraining run for the settings' mode (shown in notebook 02; notebook 03 reuses it)."""
    # lr 2e-3 and separate input/output word tables: with lr 5e-3 and tied tables the pretrained start lost to a
    # random start in notebook 03 (rare words' embeddings collapsed together); see notebook 03, section 1.
    model = dict(n_layer=2, n_head=4, d_model=128, dropout=0.0, tie_embeddings=False)
    if settings.quick:  # ~1 minute on 2 CPU cores with bf16
        return dict(sentences=None, steps=1200, batch_size=32, lr=2e-3, **model, eval_every=100, eval_sentences=500)
    return dict(sentences=None, steps=1200, batch_size=64, lr=2e-3, **model, eval_every=150, eval_sentences=1000)


def pretraining_sentences(settings: Settings, n: int | None = None) -> list[str]:
    """SST-2 train sentences as unlabeled text (the label column is dropped unread); n at random."""
    from .data import load_sst2, subsample

    text_only = load_sst2(settings.data)["train"].select_columns(["sentence"])
    return list(subsample(text_only, n, settings.seed)["sentence"])


def split_corpus(sentences: Sequence[str], tokenizer, heldout_frac: float = HELDOUT_FRAC, seed: int = 0,
                 block_size: int = 128) -> tuple[list[list[int]], list[list[int]]]:
    """Tokenize ([CLS] ... [SEP]) and split off a random held-out share: (train_ids, heldout_ids)."""
    ids = tokenizer(list(sentences), truncation=True, max_length=block_size)["input_ids"]
    order = np.random.default_rng(seed).permutation(len(ids))
    n_held = max(1, int(round(heldout_frac * len(ids))))
    return [ids[i] for i in order[n_held:]], [ids[i] for i in order[:n_held]]


def pretraining_corpus(settings: Settings, tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """(train_ids, heldout_ids): what the series' TinyGPT is pretrained and measured on in this mode."""
    sentences = pretraining_sentences(settings, pretrain_budget(settings)["sentences"])
    return split_corpus(sentences, tokenizer, seed=settings.seed)


def new_lm(train_ids: Sequence[Sequence[int]], tokenizer, arch: str = "gpt", **sizes) -> nn.Module:
    """A fresh TinyGPT ('gpt'), bidirectional TinyGPT ('bidirectional') or LSTMLM ('lstm') on these ids."""
    keep = build_vocab(train_ids, tokenizer.all_special_ids)
    cfg = LMConfig(vocab_size=len(keep), source_vocab_size=len(tokenizer), causal=arch != "bidirectional",
                   **sizes)
    model = LSTMLM(cfg) if arch == "lstm" else TinyGPT(cfg) if arch in ("gpt", "bidirectional") else None
    if model is None:
        raise ValueError(f"arch={arch!r} is not one of 'gpt', 'bidirectional', 'lstm'.")
    model.vocab.fit(keep, tokenizer.unk_token_id)
    init_output_bias(model, train_ids)
    return model


@torch.no_grad()
def init_output_bias(model: nn.Module, train_ids: Sequence[Sequence[int]]) -> None:
    """Start the output bias at log unigram frequencies (add-one), so step 0 already predicts the word prior.

    A. Karpathy's "init well" advice: the model then spends its steps on context, not on word frequencies.
    """
    predicted = torch.as_tensor([i for s in train_ids for i in s[1:]])
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


def pretrained_lm_identity(settings: Settings, budget: dict, train_ids: Sequence[Sequence[int]],
                           heldout_ids: Sequence[Sequence[int]]) -> dict:
    """What the series' TinyGPT is (identity.py): trained from scratch on these token ids with this budget and seed."""
    data = "hub" if settings.data == HUB_DATA else display_path(settings.data)
    return run_identity({"name": f"TinyGPT from scratch, tokenizer {display_path(settings.model)}", "sha256": None},
                        {"source": f"SST-2 train sentences ({data})", "train_rows": len(train_ids),
                         "train_fingerprint": rows_fingerprint(train_ids), "eval_rows": len(heldout_ids),
                         "eval_fingerprint": rows_fingerprint(heldout_ids)}, settings.seed, budget)


def get_pretrained_lm(settings: Settings, log: Callable = print):
    """(TinyGPT, tokenizer) pretrained on SST-2 train sentences: reused from run_dir('tiny-lm') or trained."""
    from .models import load_tokenizer

    tokenizer = load_tokenizer(settings.model)
    budget = pretrain_budget(settings)
    folder = settings.run_dir(PRETRAIN_RUN)
    train_ids, held_ids = pretraining_corpus(settings, tokenizer)
    now = pretrained_lm_identity(settings, budget, train_ids, held_ids)
    if recover(folder, marker="config.json") is not None:
        meta = read_lm_meta(folder)
        current = "targets" in (meta.get("history") or [{}])[-1]  # older versions did not count the targets
        diffs = differences(meta["identity"], now) if isinstance(meta.get("identity"), dict) else []
        if meta.get("identity") and not diffs and current:
            log(f"reusing the pretrained TinyGPT in {display_path(folder)}")
            return load_lm(folder, settings.device), tokenizer
        why = describe_mismatch(folder, diffs, "a TinyGPT") if diffs or not meta.get("identity") else \
            f"{display_path(folder)}: holds a TinyGPT from an older package version"
        log(f"{why}: replacing it")
    torch.manual_seed(settings.seed)
    sizes = {k: budget[k] for k in ("n_layer", "n_head", "d_model", "dropout", "tie_embeddings")}
    model = new_lm(train_ids, tokenizer, "gpt", **sizes).to(settings.device)
    log(f"pretraining TinyGPT ({settings.mode} mode): {len(train_ids):,} sentences, {budget['steps']} steps")
    history = train_lm(model, train_ids, held_ids[: budget["eval_sentences"]], budget["steps"],
                       budget["batch_size"], budget["lr"], eval_every=budget["eval_every"],
                       seed=settings.seed, pad_id=tokenizer.pad_token_id, log=log)
    final = evaluate_lm(model, held_ids, pad_id=tokenizer.pad_token_id)
    save_lm(model, folder, {"identity": now, "budget": budget, "seed": settings.seed, "history": history,
                            "heldout": final,
                            "tokenizer": settings.model, "train_sentences": len(train_ids),
                            "heldout_sentences": len(held_ids)})
    return model.eval(), tokenizer


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
