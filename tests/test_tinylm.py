"""The model file split out of lm.py: re-exports, artefact keys, attention written out by hand, masking rate."""

from __future__ import annotations

import math

import pytest
import torch

from llm_transfer import lm, tinylm

V = 60


def small(causal: bool = True, n_layer: int = 2) -> tinylm.TinyGPT:
    """A 2-layer, 32-wide TinyGPT on a 60-token vocabulary, dropout off, untied word tables."""
    torch.manual_seed(0)
    cfg = tinylm.LMConfig(vocab_size=V, block_size=16, n_layer=n_layer, n_head=4, d_model=32, dropout=0.0,
                          causal=causal, tie_embeddings=False)
    return tinylm.TinyGPT(cfg).eval()


def test_lm_still_exports_every_model_name():
    for name in ("LMConfig", "Vocab", "SelfAttention", "Block", "TinyGPT", "LSTMLM", "LMClassifier",
                 "count_body_parameters"):
        assert getattr(lm, name) is getattr(tinylm, name), name


def test_state_dict_keys_of_the_saved_artefact_are_unchanged():
    keys = set(small(n_layer=1).state_dict())
    block = {f"blocks.0.{k}" for k in ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn.qkv.weight",
                                       "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "mlp.0.weight",
                                       "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")}
    assert keys == block | {"vocab.to_compact", "vocab.to_source", "tok_emb.weight", "pos_emb.weight",
                            "ln_f.weight", "ln_f.bias", "head.weight", "head.bias"}


def attention_by_hand(attn: tinylm.SelfAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Multi-head attention written out: scores q·k/sqrt(d), causal mask, softmax, weighted values, projection."""
    B, T, C = x.shape
    H = attn.n_head
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in attn.qkv(x).split(C, -1))
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
    if causal:
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.proj(y.transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize("causal", [True, False])
def test_package_attention_equals_attention_written_by_hand(causal):
    attn = small().blocks[0].attn
    x = torch.randn(3, 9, 32, generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(9, 9, dtype=torch.bool)
    allowed = allowed.tril() if causal else allowed
    with torch.no_grad():
        assert torch.allclose(attn(x, allowed), attention_by_hand(attn, x, causal), atol=1e-5)
        if causal:  # and a wrong mask would be caught: the bidirectional result differs
            assert not torch.allclose(attn(x, allowed), attention_by_hand(attn, x, False), atol=1e-3)


def test_attention_mask_of_the_causal_model_is_lower_triangular():
    allowed = small().attention_allowed(5, None, "cpu")
    assert torch.equal(allowed, torch.ones(5, 5, dtype=torch.bool).tril())
    assert small(causal=False).attention_allowed(5, None, "cpu").all()


def test_trained_weights_keep_the_future_blocked():
    """After a few optimiser steps (weights no longer at their init), later tokens still cannot reach earlier logits."""
    model = small().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(5, V, (4, 12), generator=torch.Generator().manual_seed(3))
    for _ in range(5):
        loss, _ = lm.causal_lm_loss(model, x, torch.ones_like(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    y = x.clone()
    y[:, 8:] = (x[:, 8:] + 7) % V
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :8], b[:, :8]) and not torch.allclose(a[:, 8:], b[:, 8:])


def test_masked_objective_takes_the_masking_rate(tokenizer):
    ids = tokenizer(["a gripping , funny and beautifully acted film about nothing much"] * 64,
                    return_tensors="pt")
    model = lm.new_lm(ids["input_ids"].tolist(), tokenizer, "bidirectional", n_layer=1, n_head=2, d_model=32)
    maskable = int((~torch.isin(ids["input_ids"], torch.tensor(tokenizer.all_special_ids))).sum())
    g = torch.Generator().manual_seed(0)
    for prob in (0.15, 0.4):
        _, n = lm.masked_lm_objective(model, tokenizer, prob=prob)(model, ids["input_ids"], ids["attention_mask"], g)
        assert abs(n / maskable - prob) < 0.05, (prob, n / maskable)


def test_train_lm_history_counts_the_predicted_targets():
    model = small(n_layer=1)
    seqs = [list(range(5, 5 + n)) for n in (6, 8, 10, 12) * 4]
    hist = lm.train_lm(model, seqs, seqs[:4], steps=4, batch_size=4, eval_every=2, log=lambda *a: None)
    # every sequence of length n gives n - 1 targets; 4 steps x 4 sentences = the 16 sentences, each once
    assert [h["targets"] for h in hist][-1] == sum(len(s) - 1 for s in seqs)
    assert hist[0]["targets"] < hist[1]["targets"]
    assert math.isfinite(hist[-1]["heldout_loss"])


def test_plot_attention_draws_one_labelled_panel_per_matrix():
    import matplotlib

    matplotlib.use("Agg")
    from llm_transfer.plots import plot_attention

    w = small().attention_allowed(4, None, "cpu").float()
    fig = plot_attention({"mask": w, "weights": w / w.sum(-1, keepdim=True)}, ["[CLS]", "a", "film", "[SEP]"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["mask", "weights"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["[CLS]", "a", "film", "[SEP]"]
