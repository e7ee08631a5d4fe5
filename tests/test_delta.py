"""δ arithmetic (θ_t = θ_s + δ) and the ways to learn δ, on tiny random BERTs."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from llm_transfer import delta as dl
from llm_transfer import strategies as st

H, L, FF, V, P = 16, 2, 32, 100, 32  # hidden, layers, FFN width, vocab, positions


def tiny_bert(seed: int = 0, num_labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=2,
                     intermediate_size=FF, max_position_embeddings=P, num_labels=num_labels)
    return BertForSequenceClassification(cfg).eval()


def fake_finetune(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """A θ_t: every weight moved by a small random step (as a few optimizer steps would)."""
    g = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return out


def batch(n: int = 4, seq: int = 7) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"input_ids": torch.randint(0, V, (n, seq), generator=g),
            "attention_mask": torch.ones(n, seq, dtype=torch.long)}


def test_source_plus_delta_rebuilds_target_exactly():
    src = tiny_bert()
    tgt = fake_finetune(src)
    theta_s = dl.state_of(src)
    delta = dl.compute_delta(src, tgt)
    assert set(delta) == {n for n, _ in src.named_parameters()}
    rebuilt = dl.apply_delta(copy.deepcopy(src), theta_s, delta, scale=1.0)
    for (n, a), (_, b) in zip(rebuilt.named_parameters(), tgt.named_parameters(), strict=True):
        assert torch.equal(a, b), n  # bit for bit, not merely close
    x = batch()
    assert torch.equal(rebuilt(**x).logits, tgt(**x).logits)


def test_scale_zero_is_source_and_scale_is_linear():
    src = tiny_bert()
    tgt = fake_finetune(src)
    theta_s, delta = dl.state_of(src), dl.compute_delta(src, tgt)
    m = dl.apply_delta(copy.deepcopy(tgt), theta_s, delta, scale=0.0)
    for (n, a), (_, b) in zip(m.named_parameters(), src.named_parameters(), strict=True):
        assert torch.equal(a, b), n
    m = dl.apply_delta(m, theta_s, delta, scale=0.5)
    w = "bert.encoder.layer.0.attention.self.query.weight"
    mid = dict(m.named_parameters())[w]
    expected = (theta_s[w].double() + 0.5 * delta[w]).float()
    assert torch.equal(mid.detach(), expected)
    assert not torch.equal(mid.detach(), theta_s[w])


def test_delta_on_shared_names_leaves_head_alone():
    src = tiny_bert(seed=0)
    tgt = fake_finetune(tiny_bert(seed=0))
    enc = [n for n, _ in src.named_parameters() if not st.is_head(n)]
    delta = dl.compute_delta(src, tgt, names=enc)
    assert not any(st.is_head(k) for k in delta)
    m = dl.apply_delta(copy.deepcopy(tgt), dl.state_of(src), delta, scale=0.0)
    assert torch.equal(m.classifier.weight, tgt.classifier.weight)  # head kept at θ_t's
    assert torch.equal(m.bert.pooler.dense.weight, src.bert.pooler.dense.weight)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(dl.DeltaError, match="classifier.weight"):
        dl.compute_delta(tiny_bert(num_labels=2), tiny_bert(num_labels=3))


def test_relative_norms_one_row_per_parameter():
    src = tiny_bert()
    tgt = fake_finetune(src)
    theta_s = dl.state_of(src)
    table = dl.relative_norms(dl.compute_delta(src, tgt), theta_s)
    names = [n for n, _ in src.named_parameters()]
    assert list(table["name"]) == names
    assert table["numel"].sum() == sum(p.numel() for p in src.parameters())
    w = "bert.encoder.layer.1.intermediate.dense.weight"
    row = table.set_index("name").loc[w]
    d = dict(tgt.named_parameters())[w].detach().double() - theta_s[w].double()
    assert row["relative"] == pytest.approx(float(d.norm() / theta_s[w].double().norm()))
    assert (row["layer"], row["type"]) == ("layer 1", "FFN")
    grid = dl.norm_grid(table)
    assert list(grid.index) == ["embeddings", "layer 0", "layer 1", "pooler", "head"]
    assert grid.loc["layer 0", "attention Q"] > 0
    by_type = dl.group_norms(table, "type").set_index("type")
    assert by_type.loc["FFN", "numel"] == L * (2 * H * FF + FF + H)


def test_param_types_cover_bert():
    kinds = {dl.param_type(n) for n, _ in tiny_bert().named_parameters()}
    assert kinds == {"embeddings", "attention Q", "attention K", "attention V", "attention output", "FFN",
                     "LayerNorm", "pooler", "head"}


def test_trainable_counts_match_hand_computation():
    head = H * 2 + 2
    assert st.trainable_summary(st.head_only(tiny_bert()))["trainable"] == head
    # biases: embeddings LayerNorm; per layer Q, K, V, attention output, its LayerNorm, FFN in, FFN out,
    # LayerNorm; the pooler; plus the whole head
    biases = H + L * (4 * H + H + FF + H + H) + H
    assert st.trainable_summary(st.bitfit(tiny_bert()))["trainable"] == biases + head
    base_total = sum(p.numel() for p in tiny_bert().parameters())
    s = st.trainable_summary(st.lora(tiny_bert(), r=8), base_total=base_total)
    # per layer, on query and value: A (r × in) and B (out × r)
    assert s["trainable"] == L * 2 * 8 * (H + H) + head
    assert s["percent"] == pytest.approx(100 * s["trainable"] / base_total)
    assert st.trainable_summary(st.full(tiny_bert()))["trainable"] == base_total


def test_lora_base_weights_stay_frozen_and_delta_is_low_rank():
    model = st.lora(tiny_bert(), r=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):  # two steps: B starts at zero, so A moves only from the second step on
        loss = model(**batch(), labels=torch.tensor([0, 1, 0, 1])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = dict(model.named_parameters())
    for n, p in after.items():
        if "lora_" in n or "modules_to_save" in n:
            assert not torch.equal(p, before[n]), f"{n} should have trained"
        else:
            assert torch.equal(p, before[n]), f"{n} is a base weight and must stay frozen"
    deltas = st.lora_deltas(model)
    assert len(deltas) == L * 2
    assert all(int(torch.linalg.matrix_rank(d)) <= 2 for d in deltas.values())  # float32 tolerance


def test_unknown_strategy_and_bad_targets_are_clear_errors():
    with pytest.raises(ValueError, match="unknown strategy"):
        st.prepare(tiny_bert(), "adapters")
    with pytest.raises(ValueError, match="q_proj"):
        st.lora(tiny_bert(), target_modules=("q_proj",))


def test_scale_sweep_plot_names_the_scale_lambda_not_loras_alpha():
    from llm_transfer.plots import plot_scale_sweep

    ax = plot_scale_sweep([0.0, 0.5, 1.0], [0.5, 0.7, 0.9], baseline=0.5).axes[0]
    assert ax.get_xlabel().startswith("λ") and "α" not in ax.get_xlabel() + ax.get_title()
    assert list(ax.lines[0].get_ydata()) == [0.5, 0.7, 0.9]
    assert any("λ = 1" in t.get_text() for t in ax.get_legend().get_texts())
