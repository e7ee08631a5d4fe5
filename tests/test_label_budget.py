"""Label budgets (paired subsets, labels to reach a level), WordPiece by hand, the from-scratch baseline, packing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llm_transfer.baselines import train_bag_of_pieces
from llm_transfer.label_budget import curve_table, draw_subsets, labels_to_reach, paired_gain, run_curve
from llm_transfer.packing import pack_blocks, token_stream, train_wordpiece
from llm_transfer.wordpiece import greedy_wordpiece, word_pieces


def test_subsets_are_shared_and_sized():
    subs = draw_subsets(100, [10, 50, 100], draws=3, seed=1)
    assert [len(v) for v in subs.values()] == [3, 3, 1] and all(len(r) == 10 for r in subs[10])
    assert np.array_equal(subs[100][0], np.arange(100))
    assert all(np.array_equal(a, b) for a, b in zip(subs[50], draw_subsets(100, [10, 50], 3, 1)[50], strict=True))
    with pytest.raises(ValueError, match="sizes"):
        draw_subsets(10, [20], 2)


def test_labels_to_reach_interpolates_on_log_scale():
    curve = {100: [0.60, 0.62], 1000: [0.70, 0.72], 10000: [0.80, 0.80]}
    r = labels_to_reach(curve, 0.66)
    assert math.isclose(r["labels"], math.sqrt(100 * 1000), rel_tol=1e-9)  # halfway in log between 100 and 1000
    assert r["low"] <= r["labels"] <= r["high"]
    assert labels_to_reach(curve, 0.9)["labels"] == math.inf
    assert labels_to_reach(curve, 0.5)["below_smallest"]


def test_run_curve_and_tables():
    subs = draw_subsets(20, [4, 20], draws=2)
    a = run_curve(lambda rows: len(rows) / 20, subs)
    b = run_curve(lambda rows: 0.1, subs)
    assert a == {4: [0.2, 0.2], 20: [1.0]}
    gain = paired_gain(a, b)
    assert gain.loc[4, "mean gain"] == pytest.approx(0.1) and gain.loc[4, "a wins"] == 2
    assert curve_table({"a": a}).loc["a", 20] == "1.000"


def test_word_pieces_follow_offsets_not_split(tokenizer):
    s = "it does n't rely on dumb gags , it 's anatomical humor"
    pieces = dict(word_pieces(tokenizer, s))
    assert pieces["gags"] == ["gag", "##s"]
    # BERT splits "n't" into n / ' / t: indexing s.split() with word_ids() mislabelled every later word
    assert [w for w, _ in word_pieces(tokenizer, s)][2:5] == ["n", "'", "t"]
    assert [w for w, _ in word_pieces(tokenizer, s)][-1] == "humor"


def test_greedy_wordpiece_equals_the_tokenizer(tokenizer):
    vocab = tokenizer.get_vocab()
    for word in ["stasis", "turntablists", "unbelievably", "movie", "jugglers", "zzzqqq"]:
        assert greedy_wordpiece(word, vocab) == tokenizer.tokenize(word), word
    assert greedy_wordpiece("é", {"a"}) == ["[UNK]"]


def test_bag_of_pieces_learns_from_scratch():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    ids = [list(rng.integers(3, 50, 6)) + [1 if t else 2] for t in y]
    res = train_bag_of_pieces(ids[:200], y[:200], ids[200:], y[200:], vocab_size=50, steps=200, seed=0)
    assert res.validation_accuracy > 0.95 and res.accuracy(ids[200:], y[200:]) == res.validation_accuracy
    assert res.params["lr"] in (1e-2, 3e-2, 1e-1) and 1 <= res.params["step"] <= res.params["steps"]


def test_learnt_wordpiece_and_packed_blocks():
    texts = ["the film was good and the plot was fine", "a dull film with a dull plot"] * 50
    tok = train_wordpiece(texts, vocab_size=120, min_frequency=1)
    ids = tok("the film")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and tok.unk_token_id not in ids
    stream = token_stream(texts, tok)
    assert stream.dtype == np.uint16 and stream[0] == tok.cls_token_id
    blocks = pack_blocks(stream, 16)
    assert blocks.shape == (len(stream) // 16, 16) and blocks.flatten().tolist() == stream[:blocks.numel()].tolist()
    assert pack_blocks(stream, 16, max_tokens=40).shape == (2, 16)


def test_a_learnt_wordpiece_numbers_its_pieces_in_a_fixed_order(tmp_path):
    """The trainer numbers pieces in hash-map order (huggingface/tokenizers#1794): the same pieces, other ids."""
    from llm_transfer.packing import SPECIALS, load_wordpiece

    texts = ["Turntablists scratch records", "the camera's zoom lens", "un-be-liev-able, thé café"] * 20
    tok = train_wordpiece(texts, vocab_size=90, min_frequency=1)
    by_id = sorted(tok.get_vocab(), key=tok.get_vocab().get)
    assert by_id == SPECIALS + sorted(set(by_id) - set(SPECIALS))  # ids follow the pieces, not the run
    assert tok.tokenize("zoom lens") == ["zoom", "lens"] and tok.unk_token_id not in tok("thé café")["input_ids"]
    tok.save_pretrained(str(tmp_path))
    again = load_wordpiece(tmp_path)
    assert again.get_vocab() == tok.get_vocab() and again("thé zoom")["input_ids"] == tok("thé zoom")["input_ids"]
