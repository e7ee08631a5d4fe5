"""The series' small language models in one file: TinyGPT (nanoGPT's model.py, trimmed), its LSTM twin, a classifier.

Token format: the sentence as the bundled BERT WordPiece tokenizer encodes it, `[CLS] w1 ... wn [SEP]`.
For the causal LM, [CLS] is the beginning-of-sentence token (given, never predicted) and [SEP] the
end-of-sentence token (predicted like any word), so log P(x) = sum_t log P(x_t | x_<t) over w1..wn and [SEP].

Compact vocabulary: BERT's 30,522 WordPiece rows would make the output layer the slowest part on a CPU, so
each model carries a `Vocab` map from tokenizer ids to the ~11k ids seen in its pretraining text (plus the
special tokens); ids never seen map to [UNK]. Models take tokenizer ids in, give logits over the compact ids.
Pretraining, saving and using these models lives in `lm.py`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_model
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .features import mean_pool

warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


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


# --- a classifier on a pretrained body (notebook 03) -----------------------------------------------------

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
