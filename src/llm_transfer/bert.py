"""A BERT encoder written in view (the architecture of all-MiniLM-L6-v2), and `from_hf` to load real weights into it.

Devlin et al. 2019: word + position + segment embeddings, LayerNorm; n_layer post-LN blocks, each
x = LN(x + attention(x)), then x = LN(x + MLP(x)), where every token attends to every real token (padding is
masked out as a key); the pooler is tanh(W h_[CLS] + b). `from_hf` copies a 🤗 `BertModel`'s weights by name,
strictly: every one of its weights is used and every one of ours is filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .models import ModelError


@dataclass
class EncoderConfig:
    """Sizes of a BERT encoder."""

    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2  # segments: sentence A = 0, sentence B = 1
    n_layer: int = 6
    n_head: int = 12
    d_model: int = 384
    d_ff: int = 1536
    eps: float = 1e-12  # LayerNorm epsilon
    dropout: float = 0.1


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention; `allowed` (B, 1, 1, T) says which keys are real tokens."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model={cfg.d_model} must be a multiple of n_head={cfg.n_head}.")
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.d_model, cfg.d_model) for _ in range(4))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Post-LayerNorm Transformer block: LN(x + attention(x)), then LN(x + MLP(x)) with a GELU MLP."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, allowed)))
        return self.ln2(x + self.drop(self.ff(x)))


class BertEncoder(nn.Module):
    """Embeddings, n_layer post-LN blocks, pooler; returns what 🤗 BertModel does (last_hidden_state, pooler_output)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.segment = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.ln_emb = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.pool = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> BaseModelOutputWithPooling:
        """Hidden states (B, T, d_model) and the pooled [CLS] vector (B, d_model)."""
        B, T = input_ids.shape
        if T > self.cfg.max_positions:
            raise ValueError(f"sequence of {T} tokens is longer than max_positions={self.cfg.max_positions}; "
                             f"tokenize with truncation=True, max_length={self.cfg.max_positions}.")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = torch.arange(T, device=input_ids.device)
        x = self.drop(self.ln_emb(self.word(input_ids) + self.pos(pos) + self.segment(token_type_ids)))
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        allowed = mask.bool()[:, None, None, :]  # every query may look at every real token, never at padding
        for block in self.blocks:
            x = block(x, allowed)
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=torch.tanh(self.pool(x[:, 0])))


def hf_names(n_layer: int) -> dict[str, str]:
    """Our parameter names -> 🤗 BertModel's, one to one."""
    names = {"word.weight": "embeddings.word_embeddings.weight", "pos.weight": "embeddings.position_embeddings.weight",
             "segment.weight": "embeddings.token_type_embeddings.weight",
             "ln_emb.weight": "embeddings.LayerNorm.weight", "ln_emb.bias": "embeddings.LayerNorm.bias",
             "pool.weight": "pooler.dense.weight", "pool.bias": "pooler.dense.bias"}
    per_block = {"attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
                 "attn.o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                 "ff.0": "intermediate.dense", "ff.2": "output.dense", "ln2": "output.LayerNorm"}
    for i in range(n_layer):
        for ours, theirs in per_block.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return names


def from_hf(bert_model: nn.Module) -> BertEncoder:
    """A BertEncoder holding a 🤗 BertModel's weights (every key used, none missing), in the same train/eval mode."""
    c = bert_model.config
    if c.hidden_act != "gelu" or getattr(c, "position_embedding_type", "absolute") != "absolute":
        raise ModelError(f"from_hf needs a BERT with GELU and absolute positions; got hidden_act={c.hidden_act!r}, "
                         f"position_embedding_type={getattr(c, 'position_embedding_type', None)!r}.")
    cfg = EncoderConfig(c.vocab_size, c.max_position_embeddings, c.type_vocab_size, c.num_hidden_layers,
                        c.num_attention_heads, c.hidden_size, c.intermediate_size, c.layer_norm_eps,
                        c.hidden_dropout_prob)
    theirs, names = bert_model.state_dict(), hf_names(cfg.n_layer)
    missing, unused = sorted(set(names.values()) - set(theirs)), sorted(set(theirs) - set(names.values()))
    if missing or unused:
        raise ModelError(f"{type(bert_model).__name__} does not match a BERT encoder with pooler: "
                         f"missing {missing[:3]}, unused {unused[:3]} (pass a BertModel with add_pooling_layer=True).")
    enc = BertEncoder(cfg)
    enc.load_state_dict({ours: theirs[hf] for ours, hf in names.items()}, strict=True)
    return enc.train(bert_model.training)
