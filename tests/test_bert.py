"""The BERT encoder written in view: real all-MiniLM-L6-v2 weights loaded into it give 🤗 BertModel's outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from llm_transfer.bert import BertEncoder, EncoderConfig, from_hf, hf_names
from llm_transfer.models import ModelError, load_encoder

# fp32 on CPU, 6 layers: measured max |difference| 2.9e-6 (hidden states, real positions) and 1.9e-7 (pooler).
ATOL = 1e-4

SENTENCES = ["A gripping, beautifully acted film.", "Dull.",
             "It is not the worst movie of the year, but it comes close, and the ending drags on far too long."]


def tiny_hf(**overrides) -> BertModel:
    """A 2-layer, 32-wide BertModel with random weights, dropout off."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=16, **overrides)
    return BertModel(cfg).eval()


def padded_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Three rows of random ids, right-padded to 10 tokens (lengths 10, 6, 3), random segments."""
    ids = torch.randint(1, 100, (3, 10), generator=generator)
    mask = (torch.arange(10) < torch.tensor([[10], [6], [3]])).long()
    types = torch.randint(0, 2, (3, 10), generator=generator)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def assert_same_outputs(ours, theirs, mask: torch.Tensor) -> None:
    """Hidden states equal on the real positions, pooled [CLS] vectors equal."""
    real = mask.bool()
    assert torch.allclose(ours.last_hidden_state[real], theirs.last_hidden_state[real], atol=ATOL, rtol=0)
    assert torch.allclose(ours.pooler_output, theirs.pooler_output, atol=ATOL, rtol=0)


def test_tiny_random_bert_gives_bertmodels_outputs():
    hf = tiny_hf()
    enc = from_hf(hf)
    batch = padded_batch(torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = enc(**batch), hf(**batch)
        assert_same_outputs(ours, theirs, batch["attention_mask"])
        # and the equality is not trivial: one changed weight shows up in the outputs
        enc.blocks[1].ff[2].bias[0] += 0.1
        assert not torch.allclose(enc(**batch).last_hidden_state, theirs.last_hidden_state, atol=1e-3)


def test_padding_is_masked_out():
    enc = from_hf(tiny_hf())
    batch = padded_batch(torch.Generator().manual_seed(1))
    with torch.no_grad():
        padded = enc(**batch).last_hidden_state[2, :3]
        alone = enc(**{k: v[2:, :3] for k, v in batch.items()}).last_hidden_state[0]
        assert torch.allclose(padded, alone, atol=1e-5)


def test_every_hf_weight_is_used_and_none_is_missing():
    hf = tiny_hf()
    names = hf_names(2)
    assert set(names.values()) == set(hf.state_dict())
    assert set(names) == set(BertEncoder(EncoderConfig(100, 16, 2, 2, 4, 32, 64)).state_dict())
    assert from_hf(hf.train()).training and not from_hf(hf.eval()).training


def test_a_bert_it_cannot_hold_is_refused_in_one_line():
    with pytest.raises(ModelError, match="missing .*pooler") as e:
        from_hf(BertModel(tiny_hf().config, add_pooling_layer=False))
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="hidden_act='relu'"):
        from_hf(tiny_hf(hidden_act="relu"))


@pytest.fixture(scope="module")
def minilm():
    """The bundled all-MiniLM-L6-v2 as 🤗 BertModel (hash-checked) and loaded into BertEncoder."""
    hf = load_encoder("bundled")
    return hf, from_hf(hf)


def test_real_minilm_weights_give_bertmodels_outputs(minilm, tokenizer):
    hf, enc = minilm
    assert type(hf) is BertModel and enc.cfg.n_layer == 6 and enc.cfg.d_model == 384
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).tolist()[1] < batch["input_ids"].shape[1]  # a padded row
    with torch.no_grad():
        assert_same_outputs(enc(**batch), hf(**batch), batch["attention_mask"])


def test_segment_ids_of_a_sentence_pair_are_honoured(minilm, tokenizer):
    hf, enc = minilm
    pair = tokenizer("The film was long.", "I loved every minute of it.", return_tensors="pt")
    assert 0 < int(pair["token_type_ids"].sum()) < pair["input_ids"].shape[1]
    with torch.no_grad():
        ours = enc(**pair)
        assert_same_outputs(ours, hf(**pair), pair["attention_mask"])
        without = enc(pair["input_ids"], pair["attention_mask"])  # every token as sentence A
        assert (ours.last_hidden_state - without.last_hidden_state).abs().max() > 0.05  # measured 0.155
