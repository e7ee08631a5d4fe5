"""Notebook 03 §1's machinery: the IMDb-adapted start, fine-tune jobs (cached, paired, validation-chosen epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llm_transfer import lm
from llm_transfer.label_budget import paired_gain_ci
from llm_transfer.transfer_curve import (
    CurveData,
    Job,
    Labelled,
    Start,
    epochs_for,
    eval_epochs,
    predict,
    read_cache,
    run_jobs,
    start_body,
    train_one,
)

V = 40


@pytest.fixture
def saved_lm(tmp_path):
    """A 1-layer TinyGPT on a 40-token vocabulary, saved as lm.save_lm writes it."""
    torch.manual_seed(0)
    model = lm.TinyGPT(lm.LMConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, d_model=16, dropout=0.0))
    lm.save_lm(model, tmp_path / "lm")
    return str(tmp_path / "lm")


def toy_data(n: int = 64) -> CurveData:
    """Label 1 iff token 7 occurs: learnable from a few dozen rows."""
    rng = np.random.default_rng(0)

    def make(k, seed):
        r = np.random.default_rng(seed)
        y = r.integers(0, 2, k)
        ids = [[1] + [int(t) for t in r.integers(8, V, r.integers(3, 9))] + [2] for _ in range(k)]
        for row, label in zip(ids, y, strict=True):
            if label:
                row.insert(1 + int(rng.integers(0, len(row) - 1)), 7)
        return Labelled(ids, y)

    return CurveData(make(n, 1), make(40, 2), make(40, 3), pad_id=0)


def test_epochs_and_eval_schedule():
    assert epochs_for(100) == 40 and epochs_for(1000) == 5 and epochs_for(10_000) == 2
    assert eval_epochs(40, 8) == {5, 10, 15, 20, 25, 30, 35, 40} and eval_epochs(2, 8) == {1, 2}
    assert eval_epochs(5, 8) == {1, 2, 3, 4, 5}


def test_random_start_has_the_architecture_and_the_seed(saved_lm):
    saved = start_body(Start("s", saved_lm), 0)
    a, b = (start_body(Start("r", saved_lm, random=True), seed) for seed in (1, 1))
    c = start_body(Start("r", saved_lm, random=True), 2)
    assert a.cfg == saved.cfg
    assert torch.equal(a.tok_emb.weight, b.tok_emb.weight) and not torch.equal(a.tok_emb.weight, c.tok_emb.weight)
    assert not torch.equal(a.tok_emb.weight, saved.tok_emb.weight)
    saved.tok_emb.weight.data.zero_()  # a copy each time: the cached body is not changed by its user
    assert start_body(Start("s", saved_lm), 0).tok_emb.weight.abs().sum() > 0
    torch.manual_seed(5)  # new weights saved under the same folder: the next body has them, not the cached ones
    other = lm.TinyGPT(lm.LMConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, d_model=16, dropout=0.0))
    lm.save_lm(other, saved_lm)
    assert torch.equal(start_body(Start("s", saved_lm), 0).tok_emb.weight, other.tok_emb.weight)


def test_train_one_learns_and_keeps_the_validation_best_epoch(saved_lm):
    data = toy_data(128)
    job = Job(Start("s", saved_lm), tuple(range(128)), lr=1e-2, epochs=12, seed=0, batch_size=8, evals=4)
    r = train_one(job, data)
    assert r["val"] >= 0.8 and r["dev"] >= 0.8  # token 7 decides the label (chance: about 0.5)
    assert [e for e, _ in r["val_curve"]] == [3, 6, 9, 12]
    assert r["val"] == max(a for _, a in r["val_curve"]) and r["best_epoch"] in (3, 6, 9, 12)
    assert len(r["dev_pred"]) == 40 and r["dev"] == np.mean(np.array(list(r["dev_pred"]), int) == data.dev.y)
    again, model = train_one(job, data, return_model=True)
    assert again["dev_pred"] == r["dev_pred"]  # seeded: the same run twice gives the same predictions
    assert "".join(map(str, predict(model, data.dev, data.pad_id).tolist())) == r["dev_pred"]  # the kept epoch


def test_run_jobs_caches_resumes_and_keeps_job_order(saved_lm, tmp_path):
    data = toy_data()
    starts = [Start("s", saved_lm), Start("r", saved_lm, random=True)]
    jobs = [Job(s, tuple(range(k)), 3e-3, 2, 0, batch_size=8) for s in starts for k in (16, 32)]
    cache = tmp_path / "runs.jsonl"
    logs = []
    first = run_jobs(jobs[:3], data, cache, workers=1, log=logs.append)
    cache.write_text(cache.read_text() + '{"key": "cut sho')  # an interrupted write: ignored
    both = run_jobs(jobs, data, cache, workers=1, log=logs.append)
    assert logs[-1].startswith("3 of 4 fine-tunes reused") and len(read_cache(cache)) == 4
    assert [r["key"] for r in both] == [j.key() for j in jobs] and both[:3] == first
    assert [(r["start"], r["n"]) for r in both] == [("s", 16), ("s", 32), ("r", 16), ("r", 32)]


def test_a_result_trained_on_other_data_is_not_reused(saved_lm, tmp_path):
    data = toy_data()
    jobs = [Job(Start("s", saved_lm), tuple(range(16)), 3e-3, 2, 0, batch_size=8)]
    cache = tmp_path / "runs.jsonl"
    logs = []
    run_jobs(jobs, data, cache, workers=1, log=logs.append)
    for changed in (CurveData(Labelled(data.train.ids[::-1], data.train.y[::-1]), data.val, data.dev, data.pad_id),
                    CurveData(data.train, data.val, Labelled(data.dev.ids, 1 - data.dev.y), data.pad_id)):
        run_jobs(jobs, changed, cache, workers=1, log=logs.append)
        assert logs[-1].startswith("0 of 1 fine-tunes reused")  # the same row indices, other rows or other labels
    run_jobs(jobs, data, cache, workers=1, log=logs.append)
    assert logs[-1].startswith("1 of 1 fine-tunes reused")


def test_job_key_changes_with_what_decides_the_result(saved_lm, tmp_path):
    s = Start("s", saved_lm)
    base = Job(s, (1, 2, 3), 1e-3, 2, 0)
    before = base.key()
    assert before == Job(s, (1, 2, 3), 1e-3, 2, 0, tag="other").key()
    for other in (Job(s, (1, 2, 4), 1e-3, 2, 0), Job(s, (1, 2, 3), 3e-3, 2, 0), Job(s, (1, 2, 3), 1e-3, 3, 0),
                  Job(s, (1, 2, 3), 1e-3, 2, 1), Job(s, (1, 2, 3), 1e-3, 2, 0, pooling="last"),
                  Job(Start("s", saved_lm, random=True), (1, 2, 3), 1e-3, 2, 0)):
        assert other.key() != base.key()
    torch.manual_seed(1)  # other saved weights under the same folder: another key
    model = lm.TinyGPT(lm.LMConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, d_model=16, dropout=0.0))
    lm.save_lm(model, saved_lm)
    assert base.key() != before  # the key reads the weights' hash each time


def test_two_workers_give_the_single_process_results(saved_lm, tmp_path):
    data = toy_data()
    start = Start("s", saved_lm)
    jobs = [Job(start, tuple(range(k)), 3e-3, 2, seed, batch_size=8) for k in (24, 48) for seed in (0, 1)]
    one = run_jobs(jobs, data, tmp_path / "a.jsonl", workers=1, log=lambda *a: None)
    two = run_jobs(jobs, data, tmp_path / "b.jsonl", workers=2, log=lambda *a: None)
    def strip(rs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]

    assert strip(one) == strip(two)


def test_paired_gain_ci_resamples_sentences_with_their_draws():
    y = np.array([0, 1] * 50)
    a = np.stack([y, y])  # always right
    b = np.stack([1 - y, y])  # wrong on every sentence in the first draw
    g = paired_gain_ci(y, a, b, seed=0)
    assert g["gain"] == pytest.approx(0.5) and g["low"] == g["high"] == pytest.approx(0.5)  # no spread over sentences
    assert g["draws"] == 2 and g["a wins"] == 1 and g["sd"] == pytest.approx(np.std([1.0, 0.0], ddof=1))
    same = paired_gain_ci(y, a, a)
    assert same["gain"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="prediction arrays"):
        paired_gain_ci(y, a, b[:, :10])


@pytest.fixture
def tiny_lms(monkeypatch):
    """source_lm and adapted_lm with budgets of a few articles, reviews and steps (skipped without shared data)."""
    from llm_transfer import adapted_lm, corpora, source_lm

    if corpora.find_shared_data() is None:
        pytest.skip("no shared data folder (../shared/data)")
    budget = dict(articles=30, vocab_size=300, train_tokens=2048, block_size=32, batch_size=8, lr=1e-3, n_layer=1,
                  n_head=2, d_model=32, dropout=0.0, tie_embeddings=True, eval_every=4, heldout_blocks=4)
    monkeypatch.setattr(source_lm, "pretrain_budget", lambda settings: dict(budget))
    monkeypatch.setattr(adapted_lm, "adapt_budget", lambda settings: dict(
        reviews=200, train_tokens=8192, batch_size=8, lr=3e-3, eval_every=16, heldout_blocks=8))
    return source_lm, adapted_lm


def test_adapted_lm_is_trained_once_then_reused_and_lowers_imdb_loss(tmp_path, tiny_lms):
    from llm_transfer.settings import get_settings

    source_lm, adapted_lm = tiny_lms
    S = get_settings(mode="quick", artifacts=tmp_path, device="cpu")
    base, tok = source_lm.get_pretrained_lm(S, log=lambda *a: None)
    corpus = adapted_lm.target_corpus(S, tok, 32)
    assert corpus.reviews_read == 200 and len(corpus.heldout_reviews) >= 1
    assert corpus.train_blocks.shape == (8192 // 32, 32)
    assert not set(corpus.heldout_reviews) & set(corpus.train_texts)
    logs = []
    model, record = adapted_lm.get_adapted_lm(S, base, tok, corpus, log=logs.append)
    assert record["heldout_after"]["loss"] < record["heldout_before"]["loss"]
    assert not torch.equal(model.tok_emb.weight, base.tok_emb.weight)  # base itself is not trained in place
    again, rec2 = adapted_lm.get_adapted_lm(S, base, tok, corpus, log=logs.append)
    assert logs[-1].startswith("reusing") and rec2 == json.loads(json.dumps(record))
    assert torch.equal(again.tok_emb.weight, model.tok_emb.weight)


def test_an_imdb_adaptation_started_beside_another_waits_and_reuses_it(tmp_path, tiny_lms, lock_holder):
    """Notebooks 03 and 07 side by side both need θ_s + IMDb: the second waits for the first's run."""
    import shutil

    from llm_transfer.settings import get_settings

    source_lm, adapted_lm = tiny_lms
    staged = get_settings(mode="quick", artifacts=tmp_path / "staged", device="cpu")
    base, tok = source_lm.get_pretrained_lm(staged, log=lambda *a: None)
    corpus = adapted_lm.target_corpus(staged, tok, 32)
    adapted_lm.get_adapted_lm(staged, base, tok, corpus, log=lambda *a: None)
    S = get_settings(mode="quick", artifacts=tmp_path / "main", device="cpu")
    shutil.copytree(staged.run_dir(source_lm.PRETRAIN_RUN), S.run_dir(source_lm.PRETRAIN_RUN))
    lock_holder(staged.run_dir(adapted_lm.ADAPT_RUN), S.run_dir(adapted_lm.ADAPT_RUN))
    logs: list[str] = []
    adapted_lm.get_adapted_lm(S, base, tok, corpus, log=logs.append)
    assert len(logs) == 2 and "waiting" in logs[0] and logs[1].startswith("reusing"), logs
