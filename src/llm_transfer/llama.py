"""The Llama-style decoder SmolLM2 uses, written in view: notebook 02's TinyGPT (tinylm.py) grown up.

What changes from TinyGPT, block by block:
- RMSNorm instead of LayerNorm: x / sqrt(mean(x^2) + eps) * weight, no mean subtracted, no bias;
- rotary position embeddings (RoPE) instead of a learned position table: each head's query and key are rotated by
  angles position * theta^(-2i/head_dim), so their dot product depends on how far apart the two tokens are;
- grouped-query attention: n_kv_head key/value heads, each shared by n_head / n_kv_head query heads;
- a SwiGLU MLP: down(silu(gate(x)) * up(x)) instead of Linear-GELU-Linear;
- no biases and no dropout (this model is loaded, not trained from scratch).
`from_hf` copies the weights of 🤗 transformers' `LlamaForCausalLM` into it: the same maths under other names.
Token ids in, logits over the tokenizer's whole vocabulary out (no compact vocabulary: `vocab` is the identity).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DecoderConfig:
    """Sizes of a Llama-style decoder (the defaults are SmolLM2-135M's)."""

    vocab_size: int = 49152
    d_model: int = 576
    n_layer: int = 30
    n_head: int = 9  # query heads
    n_kv_head: int = 3  # key/value heads, each shared by n_head // n_kv_head query heads
    head_dim: int = 64
    d_ff: int = 1536  # the MLP's inner width
    rope_theta: float = 100000.0  # RoPE's base: the slowest rotating pair turns by position / theta^(1 - 2/head_dim)
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # the output layer reuses the input embedding matrix

    @classmethod
    def from_hf(cls, config) -> DecoderConfig:
        """The sizes of a transformers LlamaConfig; refuses the variants this decoder does not implement."""
        rope = getattr(config, "rope_parameters", None) or {}
        unsupported = {"model_type": config.model_type != "llama", "hidden_act": config.hidden_act != "silu",
                       "attention_bias": config.attention_bias, "mlp_bias": config.mlp_bias,
                       "rope_type": rope.get("rope_type", "default") != "default"}
        if any(unsupported.values()):
            bad = ", ".join(f"{k}={getattr(config, k, rope.get(k))!r}" for k, v in unsupported.items() if v)
            raise ValueError(f"LlamaDecoder implements the plain Llama decoder (silu, no biases, default RoPE); "
                             f"this config has {bad}.")
        return cls(vocab_size=config.vocab_size, d_model=config.hidden_size, n_layer=config.num_hidden_layers,
                   n_head=config.num_attention_heads, n_kv_head=config.num_key_value_heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
                   d_ff=config.intermediate_size, rope_theta=float(rope["rope_theta"]),
                   norm_eps=config.rms_norm_eps, tie_embeddings=bool(config.tie_word_embeddings))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis: pair i is (x[i], x[i + head_dim/2]), as in HF."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """Cosines and sines of RoPE's angles position * theta^(-2i/head_dim), one frequency per pair of dimensions."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # computed, not learned: not in state_dict

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions -> cos, sin of shape (B, 1, T, head_dim), broadcast over heads."""
        angles = positions[..., None].float() * self.inv_freq  # (B, T, head_dim / 2)
        angles = torch.cat((angles, angles), dim=-1)  # both members of a pair turn by the same angle
        return angles.cos()[:, None], angles.sin()[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + head_dim/2]) of every head by its angle."""
    return x * cos + rotate_half(x) * sin


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with n_head query heads sharing n_kv_head key/value heads, RoPE on queries and keys."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        if cfg.n_head % cfg.n_kv_head:
            raise ValueError(f"n_head={cfg.n_head} must be a multiple of n_kv_head={cfg.n_kv_head}.")
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=False)
        self.k = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.o = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)
        k = self.k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        group = self.n_head // self.n_kv_head  # query heads 0..group-1 read key/value head 0, and so on
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # softmax(q k^T / sqrt(head_dim)) v
        return self.o(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


class SwiGLU(nn.Module):
    """The MLP: down(silu(gate(x)) * up(x)); the gate decides, per inner unit, how much of up(x) passes."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class DecoderBlock(nn.Module):
    """Pre-norm block, as TinyGPT's: x + attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps), nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = GroupedQueryAttention(cfg)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, allowed)
        return x + self.mlp(self.norm2(x))


class LlamaDecoder(nn.Module):
    """A Llama-style causal LM: token embeddings, n_layer blocks (RoPE inside), final RMSNorm, output layer."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = nn.Identity()  # TinyGPT's compact-vocabulary map; here ids are used as they are (lm.py needs it)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states (B, T, d_model); padding on either side is skipped, positions count real tokens."""
        B, T = input_ids.shape
        allowed = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()  # query i sees keys j <= i
        if attention_mask is None:
            positions = torch.arange(T, device=input_ids.device).expand(B, T)
        else:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: first word at 0
            allowed = allowed & attention_mask.bool()[:, None, None, :]  # never look at padding
            allowed = allowed | torch.eye(T, dtype=torch.bool, device=input_ids.device)  # a pad sees itself: no NaN
        cos, sin = self.rotary(positions)
        x = self.tok_emb(input_ids)
        for block in self.blocks:
            x = block(x, cos, sin, allowed)
        return self.norm_f(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size): at position t, scores for the token at t + 1."""
        return self.head(self.hidden(input_ids, attention_mask))


def token_log_probs(logits: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log P(x_t | x_<t) for t = 1..T-1, shape (B, T-1): the chain rule's terms (first token given; 0 at pads)."""
    lp = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return lp if attention_mask is None else lp.masked_fill(~attention_mask[:, 1:].bool(), 0.0)


# transformers' parameter names -> ours, as regular-expression substitutions (the whole mapping of from_hf)
HF_NAMES = [
    (r"^model\.embed_tokens\.", "tok_emb."),
    (r"^model\.layers\.(\d+)\.input_layernorm\.", r"blocks.\1.norm1."),
    (r"^model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.", r"blocks.\1.attn.\2."),
    (r"^model\.layers\.(\d+)\.post_attention_layernorm\.", r"blocks.\1.norm2."),
    (r"^model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.", r"blocks.\1.mlp.\2."),
    (r"^model\.norm\.", "norm_f."),
    (r"^lm_head\.", "head."),
]


def our_name(hf_name: str) -> str:
    """The LlamaDecoder name of a transformers LlamaForCausalLM parameter (unchanged when no rule matches)."""
    for pattern, repl in HF_NAMES:
        hf_name, n = re.subn(pattern, repl, hf_name)
        if n:
            break
    return hf_name


def from_hf(hf_model: nn.Module) -> LlamaDecoder:
    """A LlamaDecoder holding a copy of a transformers LlamaForCausalLM's weights (same dtype, device), in eval mode."""
    cfg = DecoderConfig.from_hf(hf_model.config)
    weight = hf_model.get_input_embeddings().weight
    with torch.device(weight.device):
        model = LlamaDecoder(cfg).to(weight.dtype)
    state = {our_name(k): v for k, v in hf_model.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (cfg.tie_embeddings and m == "head.weight")]  # tied: tok_emb's copy is it
    if missing or unexpected:
        raise ValueError(f"from_hf: weights without a place {unexpected[:3]}, places without a weight {missing[:3]}; "
                         "is this a LlamaForCausalLM?")
    return model.eval()
