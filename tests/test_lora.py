"""LoRA by hand (llm_transfer.lora) against peft's LoRA, on tiny random BERTs."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from llm_transfer import lora as lr
from llm_transfer import strategies as st

H, L, FF, V, P = 16, 2, 32, 100, 32  # hidden, layers, FFN width, vocab, positions


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=2,
                     intermediate_size=FF, max_position_embeddings=P, num_labels=2)
    return BertForSequenceClassification(cfg).eval()


def batch(n: int = 4, seq: int = 7) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"input_ids": torch.randint(0, V, (n, seq), generator=g),
            "attention_mask": torch.ones(n, seq, dtype=torch.long)}


def test_lora_linear_is_the_base_layer_plus_scaled_low_rank_path():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    layer = lr.LoRALinear(base, r=2, alpha=4)
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), base(x))  # B = 0 at the start: the model is unchanged
    with torch.no_grad():
        layer.B.normal_()
    expected = x @ (base.weight + 2.0 * layer.B @ layer.A).T + base.bias
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer.delta_weight(), 2.0 * layer.B @ layer.A)
    assert int(torch.linalg.matrix_rank(layer.delta_weight())) == 2
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["A", "B"]


def test_injected_model_matches_peft_forward_with_the_same_a_and_b():
    base = tiny_bert()
    hand = lr.inject_lora(copy.deepcopy(base), r=4, alpha=8)
    peft_model = st.lora(copy.deepcopy(base), r=4, alpha=8).eval()
    prefix = "base_model.model."
    assert sorted(prefix + n for n in lr.lora_layers(hand)) == sorted(st.lora_deltas(peft_model))
    with torch.no_grad():
        for layer in lr.lora_layers(hand).values():
            layer.B.normal_(std=0.5)  # a non-zero update, so the check sees the low-rank path
    assert lr.copy_lora_to_peft(hand, peft_model) == L * 2
    x = batch()
    out_hand, out_peft, out_base = hand(**x).logits, peft_model(**x).logits, base(**x).logits
    assert torch.allclose(out_hand, out_peft, atol=1e-5)
    assert not torch.allclose(out_hand, out_base, atol=1e-3)  # the update does change the output
    for name, layer in lr.lora_layers(hand).items():
        assert torch.allclose(layer.delta_weight(), st.lora_deltas(peft_model)[prefix + name], atol=1e-6)


def test_fresh_injection_leaves_the_output_unchanged_and_trains_only_lora_and_head():
    base = tiny_bert()
    hand = lr.inject_lora(copy.deepcopy(base), r=2, alpha=4).eval()
    x = batch()
    assert torch.equal(hand(**x).logits, base(**x).logits)
    trainable = {n for n, p in hand.named_parameters() if p.requires_grad}
    assert trainable == {*(f"{m}.{ab}" for m in lr.lora_layers(hand) for ab in "AB"),
                         "classifier.weight", "classifier.bias"}
    n_peft = st.trainable_summary(st.lora(tiny_bert(), r=2, alpha=4))["trainable"]
    assert st.trainable_summary(hand)["trainable"] == n_peft


def test_bad_targets_and_missing_layers_are_clear_errors():
    with pytest.raises(ValueError, match="q_proj"):
        lr.inject_lora(tiny_bert(), targets=("q_proj",))
    with pytest.raises(ValueError, match="inject_lora"):
        lr.copy_lora_to_peft(tiny_bert(), st.lora(tiny_bert()))
    with pytest.raises(ValueError, match="scales"):
        lr.copy_lora_to_peft(lr.inject_lora(tiny_bert(), r=2, alpha=4), st.lora(tiny_bert(), r=2, alpha=16))
