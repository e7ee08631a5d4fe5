"""Corpora (hash-checked, streamed), the overlap check, splits that hold out whole documents / sentences, TF-IDF."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from llm_transfer import corpora
from llm_transfer.baselines import tfidf_logreg
from llm_transfer.corpora import CORPORA, ENV_CORPORA, iter_documents, labelled_rows
from llm_transfer.data import DataError
from llm_transfer.overlap import (
    LeakError,
    OverlapIndex,
    assert_no_leak,
    ngram_hashes,
    overlap,
    row_hash,
    span_hashes,
    words,
)
from llm_transfer.splits import heldout_key, split_documents, sst2_validation_split


@pytest.fixture(scope="module")
def shared():
    """The real shared data folder, or skip."""
    root = corpora.find_shared_data()
    if root is None:
        pytest.skip("no shared data folder (../shared/data)")
    return root


def _fake_root(tmp_path, text: str, name: str = "wikipedia"):
    """A shared-data folder holding `text` as corpus `name`, its hash registered for the test."""
    c = CORPORA[name]
    path = tmp_path / c.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def test_words_match_sst_tokenization():
    assert words("It doesn't work, can't it? The director's film.") == \
        words("it does n't work , ca n't it ? the director 's film .")
    assert words("'s previous films") == ["s", "previous", "films"]  # a phrase that starts at a clitic


def test_ngram_hashes_equal_runs_hash_equal():
    ids = np.array([1, 2, 3, 1, 2, 3, 4], np.uint64)
    h = ngram_hashes(ids, 3)
    assert len(h) == 5 and h[0] == h[3] and len(set(h.tolist())) == 4
    assert len(ngram_hashes(ids[:2], 3)) == 0


def test_span_and_row_hashes_equal_ngram_hashes_of_every_length():
    """The prefix-hash shortcut gives exactly the n-gram hashes, wrap-around included (large ids, long rows)."""
    rng = np.random.default_rng(0)
    for length in (0, 1, 2, 5, 40, 300):
        ids = rng.integers(1, 2**40, length).astype(np.uint64)
        for proper in (False, True):
            top = length if proper else length + 1
            want = [ngram_hashes(ids, k) for k in range(1, top)]
            want = np.sort(np.concatenate(want)) if want else np.empty(0, np.uint64)
            assert np.array_equal(np.sort(span_hashes(ids, proper)), want), (length, proper)
        if length:
            assert row_hash(ids) == ngram_hashes(ids, length)[0]


def test_overlap_finds_whole_and_partial_matches():
    train = ["the cat sat on the mat and then it slept all day long", "a b c"]
    held = ["cat sat on the mat and then it slept",  # inside a training text: whole
            "yesterday the cat sat on the mat and then it ran",  # shares 8-grams only
            "nothing here is like anything in the training text at all",
            "a b c", "b c"]  # short: equal to a training text / inside one
    r = overlap(train, held)
    assert (r.whole, r.with_shared_ngram) == (2, 3)  # "b c" is inside a text but not equal to one
    assert overlap(train, held, short_spans=True).whole == 3
    with pytest.raises(LeakError, match="found whole"):
        assert_no_leak(r)
    assert_no_leak(overlap(train, held[2:3]))


def test_index_streams_in_chunks_like_at_once():
    texts = [" ".join(f"w{(i * 7 + j) % 50}" for j in range(12)) for i in range(9000)]
    once = OverlapIndex(8).add(texts)
    twice = OverlapIndex(8).add(texts[:4000]).add(texts[4000:])
    assert np.array_equal(once.grams, twice.grams)


def test_corpus_hash_checked_and_streamed(tmp_path, monkeypatch):
    text = "Title one\nfirst paragraph.\n\nTitle two\nsecond.\n   \nstill two.\n"
    _fake_root(tmp_path, text)
    from hashlib import sha256

    monkeypatch.setitem(CORPORA, "wikipedia", corpora.Corpus(**{**CORPORA["wikipedia"].__dict__,
                                                               "sha256": sha256(text.encode()).hexdigest()}))
    docs = list(iter_documents("wikipedia", root=tmp_path))
    assert docs == ["Title one\nfirst paragraph.", "Title two\nsecond.\nstill two."]
    assert list(iter_documents("wikipedia", root=tmp_path, limit=1)) == docs[:1]


def test_altered_truncated_missing_corpus_refused(tmp_path):
    path = _fake_root(tmp_path, "not the real text\n")
    with pytest.raises(DataError, match=r"SHA-256 .* altered or truncated"):
        next(iter_documents("wikipedia", root=tmp_path))
    path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(100000))[:2000])  # a cut gzip stream
    with pytest.raises(DataError, match="damaged or truncated"):
        next(iter_documents("wikipedia", root=tmp_path))
    with pytest.raises(DataError, match=f"file not found.*{ENV_CORPORA}"):
        next(iter_documents("imdb", root=tmp_path))


def test_no_shared_folder_names_the_fix(monkeypatch):
    monkeypatch.setenv(ENV_CORPORA, "hub")
    with pytest.raises(DataError, match="no hub copy"):
        next(iter_documents("product_sentences"))
    with pytest.raises(DataError, match="no shared data folder") as e:
        labelled_rows("pros_cons")
    assert "download them from" in str(e.value) and "=hub reads" not in str(e.value)  # no hub copy to point at
    with pytest.raises(DataError, match="=hub reads the hub copy"):
        corpora.verified_path("corpora/imdb_unlabeled.txt.gz", "0" * 64, root=None)


def test_real_corpora_and_product_files(shared):
    wiki = list(iter_documents("wikipedia", limit=3))
    assert len(wiki) == 3 and wiki[0].startswith("Anarchism")
    assert sum(1 for _ in iter_documents("product_sentences")) == 4388
    reviews = labelled_rows("product_reviews")
    assert len(reviews) == 3786 and sum(r["label"] for r in reviews) == 2415
    assert len({r["product"] for r in reviews}) == 14
    assert len(labelled_rows("pros_cons")) == 45867


def test_split_documents_is_stable_and_whole():
    docs = [f"Title {i}\nbody {i}" for i in range(2000)]
    train, held = split_documents(docs, 0.1, seed=3)
    assert 140 < len(held) < 260 and len(train) + len(held) == 2000
    assert split_documents(docs, 0.1, seed=3) == (train, held)
    assert heldout_key("x", 1.0) and not heldout_key("x", 0.0)


def test_sst2_validation_split_holds_out_whole_sentences():
    rows = ["a fine film about grief and hope", "a fine film", "grief and hope", "about grief",
            "a dull film about nothing at all", "a dull film", "nothing at all",
            "the best film of the year by far", "the best"]
    sp = sst2_validation_split(rows, 1, seed=0)
    assert sp.roots == 3  # the three sentences: every other row is a span of one
    val = rows[sp.validation[0]]
    assert all(r not in val for r in (rows[i] for i in sp.train))
    assert set(sp.dropped) == {i for i, r in enumerate(rows) if r in val and r != val}
    assert sorted([*sp.train, *sp.validation, *sp.dropped]) == list(range(len(rows)))
    with pytest.raises(ValueError, match="root rows"):
        sst2_validation_split(rows, 4)


def test_sst2_random_split_leaks_sentence_split_does_not(sst2):
    rows = list(sst2["train"]["sentence"])[:8000]
    rng = np.random.default_rng(0).permutation(len(rows))
    leaky = overlap([rows[i] for i in rng[400:]], [rows[i] for i in rng[:400]], short_spans=True)
    # 169 of 400 on these 8,000 rows (3,043 of 3,367 = 90 % on all 67,349): held-out phrases inside training ones
    assert leaky.whole / leaky.heldout > 0.3
    sp = sst2_validation_split(rows, 100, seed=0)
    clean = overlap([rows[i] for i in sp.train], [rows[i] for i in sp.validation], short_spans=True)
    assert clean.whole == 0, clean.line()


def test_tfidf_learns_and_chooses_on_validation():
    rng = np.random.default_rng(0)
    pos, neg = ["great", "superb", "moving"], ["dull", "awful", "flat"]
    filler = ["the", "film", "was", "quite", "and", "plot"]

    def make(n):
        y = rng.integers(0, 2, n)
        return [" ".join(rng.choice(filler, 4).tolist() + [rng.choice(pos if t else neg)]) for t in y], y

    (xt, yt), (xv, yv) = make(200), make(100)
    res = tfidf_logreg(xt, yt, xv, yv, grid={"C": [0.01, 10.0], "ngram_range": [(1, 1)]})
    assert res.validation_accuracy == max(a for _, a in res.grid) and res.validation_accuracy > 0.95
    assert res.params["C"] == 10.0  # the weak setting stays near chance on validation
    with pytest.raises(ValueError, match="one label"):
        tfidf_logreg(xt, np.zeros(len(xt), int), xv, yv)
