"""Small language models (nanoGPT-style Transformer, bidirectional twin, LSTM), pretraining, classifier.

Token format: the sentence as the bundled BERT WordPiece tokenizer encodes it, `[CLS] w1 ... wn [SEP]`.
For the causal LM, [CLS] is the beginning-of-sentence token (given, never predicted) and [SEP] the
end-of-sentence token (predicted like any word), so log P(x) = sum_t log P(x_t | x_<t) over w1..wn and [SEP].
The classifier in notebook 03 then sees exactly what the LM saw in pretraining.

Compact vocabulary: BERT's 30,522 WordPiece rows would make the output layer the slowest part on a CPU, so
each model carries a `Vocab` map from tokenizer ids to the ~11k ids seen in its pretraining text (plus the
special tokens); ids never seen map to [UNK]. Models take tokenizer ids in, give logits over the compact ids.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .batching import LengthGroupedBatchSampler
from .checkpoints import atomic_dir
from .features import mean_pool
from .hardware import bf16_autocast
from .masking import IGNORE_INDEX, mask_tokens
from .settings import Settings

warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
PRETRAIN_RUN = "tiny-lm"  # artifacts/<mode>/tiny-lm/{model.safetensors, config.json, history.json}
HELDOUT_FRAC = 0.05


@dataclass
class LMConfig:
    """Sizes of a small language model."""

    vocab_size: int  # rows of the embedding / output layer (the compact vocabulary)
    block_size: int = 128  # longest sequence (positions)
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.1
    causal: bool = True  # False: every token sees every other one (the masked-LM variant)
    source_vocab_size: int = 0  # the tokenizer's vocabulary; 0 = ids come in already compact
    lstm_hidden: int = 0  # LSTMLM only: cells per layer, projected back to d_model (0 = d_model, no projection)
    tie_embeddings: bool = True  # the output layer reuses the input embedding matrix (fewer parameters)


class Vocab(nn.Module):
    """Map tokenizer ids to compact ids (unseen -> [UNK]) and back; identity when source_vocab_size is 0."""

    def __init__(self, vocab_size: int, source_vocab_size: int = 0):
        super().__init__()
        self.identity = source_vocab_size == 0
        n = vocab_size if self.identity else source_vocab_size
        to_compact = torch.arange(n) if self.identity else torch.zeros(n, dtype=torch.long)
        self.register_buffer("to_compact", to_compact)
        self.register_buffer("to_source", torch.arange(vocab_size))

    def fit(self, keep_ids: Sequence[int], unk_id: int) -> Vocab:
        """Keep these tokenizer ids (in this order); every other id maps to unk_id's row."""
        keep = torch.as_tensor(list(keep_ids), dtype=torch.long)
        if len(keep) != len(self.to_source) or unk_id not in keep.tolist():
            raise ValueError(f"need exactly {len(self.to_source)} ids including unk_id={unk_id}; "
                             f"got {len(keep)}.")
        self.to_source.copy_(keep)
        self.to_compact.fill_(int((keep == unk_id).nonzero()))
        self.to_compact[keep] = torch.arange(len(keep))
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if int(input_ids.max()) >= len(self.to_compact) or int(input_ids.min()) < 0:
            raise ValueError(f"token id {int(input_ids.max())} is outside this model's vocabulary of "
                             f"{len(self.to_compact)}; use the tokenizer the model was trained with.")
        return self.to_compact[input_ids]


def build_vocab(sequences: Sequence[Sequence[int]], special_ids: Sequence[int]) -> list[int]:
    """The special ids, then every id seen in the sequences, most frequent first (ties by id)."""
    counts = Counter(i for s in sequences for i in s)
    rest = sorted((i for i in counts if i not in set(special_ids)), key=lambda i: (-counts[i], i))
    return sorted(set(special_ids)) + rest


# --- the Transformer (nanoGPT's model.py, trimmed) ---------------------------------------------------------

class SelfAttention(nn.Module):
    """Multi-head self-attention; the mask says which positions each token may look at."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model={cfg.d_model} must be a multiple of n_head={cfg.n_head}.")
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.qkv(x).split(C, -1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), allowed)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A GPT: token + position embeddings, n_layer blocks, final LayerNorm, output layer tied to the input."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = Vocab(cfg.vocab_size, cfg.source_vocab_size)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes words
        self.apply(_init_weights)

    def attention_allowed(self, T: int, attention_mask: torch.Tensor | None, device) -> torch.Tensor:
        """(B or 1, 1, T, T) booleans: query i may look at key j (causal: j <= i; never at padding)."""
        allowed = torch.ones(T, T, dtype=torch.bool, device=device)
        if self.cfg.causal:
            allowed = allowed.tril()
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
        return allowed | torch.eye(T, dtype=torch.bool, device=device)  # a padded row sees itself: no NaN

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states (B, T, d_model)."""
        B, T = input_ids.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.cfg.block_size}; "
                             f"tokenize with truncation=True, max_length={self.cfg.block_size}.")
        pos = torch.arange(T, device=input_ids.device)
        x = self.drop(self.tok_emb(self.vocab(input_ids)) + self.pos_emb(pos))
        allowed = self.attention_allowed(T, attention_mask, input_ids.device)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size): at position t, scores for the token at t+1 (causal) or at t (masked)."""
        return self.head(self.hidden(input_ids, attention_mask))


class LSTMLM(nn.Module):
    """An LSTM language model with the same interface: embedding, n_layer LSTM layers, tied output layer.

    With lstm_hidden > d_model each layer has that many cells and projects its output back to d_model (LSTMP).
    """

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = Vocab(cfg.vocab_size, cfg.source_vocab_size)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        hidden = cfg.lstm_hidden or cfg.d_model
        self.lstm = nn.LSTM(cfg.d_model, hidden, cfg.n_layer, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0,
                            proj_size=cfg.d_model if hidden != cfg.d_model else 0)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states (B, T, d_model); right padding comes after the words, so it changes nothing."""
        out, _ = self.lstm(self.drop(self.tok_emb(self.vocab(input_ids))))
        return self.ln_f(self.drop(out))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for the next token."""
        return self.head(self.hidden(input_ids, attention_mask))


def _init_weights(m: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)


def count_body_parameters(model: nn.Module) -> int:
    """Parameters outside the word tables (token embedding, output weights): what differs between architectures."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("tok_emb") and n != "head.weight")


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
                   random_ids: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, int]:
    """Fill in the missing word: mean -log P(original | corrupted) over the picked 15 %; and their count."""
    corrupted, labels = mask_tokens(input_ids, mask_id, special_ids, random_ids, attention_mask,
                                    generator=generator)
    picked = labels != IGNORE_INDEX
    hidden = model.hidden(corrupted, attention_mask)
    return F.cross_entropy(model.head(hidden[picked]), model.vocab(labels[picked])), int(picked.sum())


def masked_lm_objective(model: nn.Module, tokenizer) -> Callable:
    """masked_lm_loss bound to the tokenizer's [MASK] / special ids and the model's vocabulary."""
    special = list(tokenizer.all_special_ids)
    vocab_ids = model.vocab.to_source
    return partial(masked_lm_loss, mask_id=tokenizer.mask_token_id, special_ids=special,
                   random_ids=vocab_ids[~torch.isin(vocab_ids, torch.tensor(special))])


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

    bf16=None: bf16 autocast for the training steps where the device has native bf16 (held-out losses stay fp32).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    history, run_loss, run_n, t0 = [], 0.0, 0, time.perf_counter()
    batches = _length_grouped(train, batch_size, seed)
    model.train()
    for step in range(1, steps + 1):
        ids, mask = pad_batch([train[i] for i in next(batches)], pad_id)
        with bf16_autocast(device, bf16):
            loss, k = loss_fn(model, ids.to(device), mask.to(device), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run_loss, run_n = run_loss + loss.item() * k, run_n + k
        if step % eval_every == 0 or step == steps:
            ev = evaluate_lm(model, heldout, loss_fn, pad_id=pad_id, seed=seed)
            history.append({"step": step, "train_loss": run_loss / run_n, "heldout_loss": ev["loss"],
                            "seconds": time.perf_counter() - t0})
            log(f"step {step}/{steps}: train loss {run_loss / run_n:.3f} | held-out loss {ev['loss']:.3f} "
                f"(perplexity {ev['perplexity']:.1f}) | {time.perf_counter() - t0:.0f} s")
            run_loss, run_n = 0.0, 0
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

    return atomic_dir(folder, write)


def load_lm(folder: str | Path, device: str = "cpu") -> nn.Module:
    """The TinyGPT / LSTMLM that save_lm wrote to `folder`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: no saved language model (needs config.json and "
                                "model.safetensors); run get_pretrained_lm(S) or notebook 02 to write one.")
    meta = json.loads((folder / "config.json").read_text())
    model = {"TinyGPT": TinyGPT, "LSTMLM": LSTMLM}[meta["arch"]](LMConfig(**meta["config"]))
    load_model(model, str(folder / "model.safetensors"), device="cpu")
    return model.to(device).eval()


def read_lm_meta(folder: str | Path) -> dict:
    """config.json of a saved LM (architecture, sizes, budget, training history, held-out metrics)."""
    return json.loads((Path(folder) / "config.json").read_text())


def get_pretrained_lm(settings: Settings, log: Callable = print):
    """(TinyGPT, tokenizer) pretrained on SST-2 train sentences: reused from run_dir('tiny-lm') or trained."""
    from .models import load_tokenizer

    tokenizer = load_tokenizer(settings.model)
    budget = pretrain_budget(settings)
    folder = settings.run_dir(PRETRAIN_RUN)
    if (folder / "config.json").is_file():
        meta = read_lm_meta(folder)
        if meta.get("budget") == budget and meta.get("seed") == settings.seed:
            log(f"reusing the pretrained TinyGPT in {folder}")
            return load_lm(folder, settings.device), tokenizer
        log(f"{folder} holds a model trained with another budget or seed: training a new one")
    train_ids, held_ids = pretraining_corpus(settings, tokenizer)
    torch.manual_seed(settings.seed)
    sizes = {k: budget[k] for k in ("n_layer", "n_head", "d_model", "dropout", "tie_embeddings")}
    model = new_lm(train_ids, tokenizer, "gpt", **sizes).to(settings.device)
    log(f"pretraining TinyGPT ({settings.mode} mode): {len(train_ids):,} sentences, {budget['steps']} steps")
    history = train_lm(model, train_ids, held_ids[: budget["eval_sentences"]], budget["steps"],
                       budget["batch_size"], budget["lr"], eval_every=budget["eval_every"],
                       seed=settings.seed, pad_id=tokenizer.pad_token_id, log=log)
    final = evaluate_lm(model, held_ids, pad_id=tokenizer.pad_token_id)
    save_lm(model, folder, {"budget": budget, "seed": settings.seed, "history": history, "heldout": final,
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


class LMClassifier(nn.Module):
    """A sentence classifier on a TinyGPT / LSTM body: pooled hidden states -> linear head.

    pooling="last": the last real token ([SEP]), the only one a causal body lets see the whole sentence;
    pooling="mean": the average over real tokens (each one has seen its prefix).
    """

    def __init__(self, body: nn.Module, num_labels: int = 2, dropout: float = 0.1, pooling: str = "last"):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling={pooling!r} is not one of 'last', 'mean'.")
        self.body, self.num_labels, self.pooling = body, num_labels, pooling
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(body.cfg.d_model, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
                ) -> SequenceClassifierOutput:
        """Logits (B, num_labels) and, with labels, the cross-entropy loss (token_type_ids is ignored)."""
        h = self.body.hidden(input_ids, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.pooling == "mean":
            pooled = mean_pool(h, attention_mask)
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            last = (attention_mask.bool() * positions).argmax(1)  # last real token, whichever side is padded
            pooled = h[torch.arange(len(h), device=h.device), last]
        logits = self.classifier(self.drop(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        """Weights and config, so `training.fine_tune(..., output_dir=...)` can checkpoint this model."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / "model.safetensors"))
        meta = {"arch": "LMClassifier", "body": type(self.body).__name__, "config": asdict(self.body.cfg),
                "num_labels": self.num_labels, "pooling": self.pooling}
        (folder / "config.json").write_text(json.dumps(meta, indent=1))


def load_lm_classifier(folder: str | Path, device: str = "cpu") -> LMClassifier:
    """The LMClassifier that save_pretrained wrote to `folder`."""
    meta = json.loads((Path(folder) / "config.json").read_text())
    body = {"TinyGPT": TinyGPT, "LSTMLM": LSTMLM}[meta["body"]](LMConfig(**meta["config"]))
    model = LMClassifier(body, meta["num_labels"], pooling=meta.get("pooling", "last"))
    load_model(model, str(Path(folder) / "model.safetensors"), device="cpu")
    return model.to(device).eval()
