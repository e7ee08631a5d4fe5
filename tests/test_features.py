"""Sentence embeddings (mean pooling, order, caching) and the linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from llm_transfer.features import cache_name, embed_sentences, load_or_embed, mean_pool, probe_label_curve, train_probe
from llm_transfer.models import load_tokenizer

SENTENCES = [
    "a gorgeously strange and unflinchingly bleak film about an impossible love",
    "dull",
    "the performances are uniformly excellent",
    "it 's not a bad movie , just a forgettable one that overstays its welcome by twenty minutes",
    "charming",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


@pytest.fixture(scope="module")
def tiny_encoder(tokenizer):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg).eval()


def test_mean_pool_ignores_padding_positions():
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    hidden_changed = hidden.clone()
    hidden_changed[0, 2:] = 1e6  # garbage where row 0 is padding
    out = mean_pool(hidden_changed, mask)
    assert torch.allclose(out[0], hidden[0, :2].mean(0))
    assert torch.allclose(out[1], hidden[1].mean(0))


def test_mean_pool_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="attention_mask"):
        mean_pool(torch.randn(2, 4, 3), torch.ones(2, 5))


def test_sentence_alone_equals_sentence_in_padded_batch(tiny_encoder, tokenizer):
    short = "charming"
    alone = embed_sentences(tiny_encoder, tokenizer, [short], batch_size=8)
    # batch_size=8 puts every sentence in one batch, so "charming" is padded to the longest one
    together = embed_sentences(tiny_encoder, tokenizer, SENTENCES, batch_size=8)
    assert together.shape == (len(SENTENCES), 32)
    np.testing.assert_allclose(together[SENTENCES.index(short)], alone[0], atol=1e-5)


def test_embedding_order_matches_input_order(tiny_encoder, tokenizer):
    one_by_one = np.stack([embed_sentences(tiny_encoder, tokenizer, [s])[0] for s in SENTENCES])
    batched = embed_sentences(tiny_encoder, tokenizer, SENTENCES, batch_size=2)  # sorted by length inside
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    reversed_ = embed_sentences(tiny_encoder, tokenizer, SENTENCES[::-1], batch_size=2)
    np.testing.assert_allclose(reversed_, one_by_one[::-1], atol=1e-5)


def test_embed_leaves_model_mode_unchanged(tiny_encoder, tokenizer):
    tiny_encoder.train()
    embed_sentences(tiny_encoder, tokenizer, SENTENCES[:2])
    assert tiny_encoder.training
    tiny_encoder.eval()


def test_embed_rejects_bad_input(tiny_encoder, tokenizer):
    with pytest.raises(ValueError, match="no sentences"):
        embed_sentences(tiny_encoder, tokenizer, [])
    with pytest.raises(TypeError, match="row 1"):
        embed_sentences(tiny_encoder, tokenizer, ["fine", 3])


def test_cache_is_reused_only_for_the_same_sentences(tiny_encoder, tokenizer, tmp_path):
    path = tmp_path / cache_name("some/model", "pretrained", "train", 3, 0)
    first, reused = load_or_embed(path, tiny_encoder, tokenizer, SENTENCES[:3])
    assert not reused and path.is_file()
    again, reused = load_or_embed(path, None, tokenizer, SENTENCES[:3])
    assert reused
    np.testing.assert_array_equal(first, again)
    with pytest.raises(FileNotFoundError, match="no cached embeddings"):
        load_or_embed(path, None, tokenizer, SENTENCES[1:4])  # other rows: the cache must not be used
    other, reused = load_or_embed(path, tiny_encoder, tokenizer, SENTENCES[1:4])
    assert not reused and other.shape == first.shape


def test_cache_is_reused_only_for_the_same_encoder_weights(tiny_encoder, tokenizer, tmp_path):
    """Another encoder (or other random weights) under the same cache file name must not reuse its embeddings."""
    import copy

    path = tmp_path / "cache.npz"
    first, _ = load_or_embed(path, tiny_encoder, tokenizer, SENTENCES[:3])
    assert load_or_embed(path, tiny_encoder, tokenizer, SENTENCES[:3])[1]
    changed = copy.deepcopy(tiny_encoder)
    with torch.no_grad():
        next(changed.parameters()).add_(0.5)
    other, reused = load_or_embed(path, changed, tokenizer, SENTENCES[:3])
    assert not reused and not np.allclose(first, other)


def test_unreadable_cache_is_recomputed(tiny_encoder, tokenizer, tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    emb, reused = load_or_embed(path, tiny_encoder, tokenizer, SENTENCES[:2])
    assert not reused and emb.shape == (2, 32)
    assert load_or_embed(path, None, tokenizer, SENTENCES[:2])[1]


def test_cache_name_is_a_safe_file_name():
    name = cache_name("/home/me/models/my model", "random", "validation", 872, 0)
    assert "/" not in name and " " not in name and name.endswith("-random-validation-n872-seed0.npz")


def test_probe_beats_chance_on_separable_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 10))
    x[:, 0] += 4 * (2 * y - 1)  # one informative direction
    r = train_probe(x[:300], y[:300], x[300:], y[300:])
    assert 0.0 <= r["accuracy"] <= 1.0
    assert r["accuracy"] > 0.9
    assert (r["n_train"], r["n_eval"]) == (300, 100)


def test_probe_is_near_chance_on_noise():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 5)), rng.integers(0, 2, 600)
    r = train_probe(x[:400], y[:400], x[400:], y[400:])
    assert 0.0 <= r["accuracy"] <= 1.0
    assert abs(r["accuracy"] - 0.5) < 0.15


def test_probe_rejects_mismatched_shapes():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="one label per row"):
        train_probe(x, [0] * 9, x, [0] * 10)
    with pytest.raises(ValueError, match="same encoder"):
        train_probe(x, [0, 1] * 5, np.zeros((10, 3)), [0, 1] * 5)


def test_probe_label_curve_draws_subsets_and_grows_with_labels():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1200)
    x = rng.normal(size=(1200, 20))
    x[:, 0] += 1.0 * (2 * y - 1)  # weak signal: few labels are noisy, many are not
    curve = probe_label_curve(x[:1000], y[:1000], x[1000:], y[1000:], sizes=[20, 1000], draws=4, seed=0)
    assert list(curve) == [20, 1000]
    assert len(curve[20]) == 4 and len(set(curve[20])) > 1  # different random subsets, different probes
    assert curve[1000] == [train_probe(x[:1000], y[:1000], x[1000:], y[1000:])["accuracy"]]  # all rows: one draw
    assert np.mean(curve[20]) < curve[1000][0]
    assert curve == probe_label_curve(x[:1000], y[:1000], x[1000:], y[1000:], sizes=[20, 1000], draws=4, seed=0)


def test_probe_label_curve_rejects_impossible_sizes():
    x, y = np.zeros((10, 2)), [0, 1] * 5
    with pytest.raises(ValueError, match="sizes"):
        probe_label_curve(x, y, x, y, sizes=[11])
    with pytest.raises(ValueError, match="draws"):
        probe_label_curve(x, y, x, y, sizes=[4], draws=0)
