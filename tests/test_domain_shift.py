"""Notebook 07's machinery: the product split, the label pool kept apart, continued MLM, cached few-label runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from llm_transfer import corpora
from llm_transfer.data import tokenize
from llm_transfer.domain_shift import (
    accuracy_of,
    continue_mlm,
    decode,
    draw_rows,
    epochs_for_steps,
    few_label_job,
    folder_weights_sha256,
    load_products,
    mlm_loss,
    norm_text,
    product_split,
    run_few_label,
    shift_ci,
    texts_sha256,
)
from llm_transfer.training import TrainConfig


def test_product_split_keeps_products_whole_and_is_stable():
    products = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 10
    val, test = product_split(products, 0.3)
    assert set(val).isdisjoint(test) and set(val) | set(test) == {"a", "b", "c", "d"}
    assert sum(products.count(p) for p in val) >= 30  # at least the asked share, in whole products
    assert product_split(list(reversed(products)), 0.3) == (val, test)  # the order of the rows does not matter


def test_norm_text_ignores_case_tokenization_and_punctuation():
    assert norm_text("It does n't work!") == norm_text("it does n't work .") == "it does n t work"


@pytest.fixture(scope="module")
def products():
    if corpora.find_shared_data() is None:
        pytest.skip("no ../shared/data")
    return load_products(other_training_text=["enjoy ."])


def test_no_snippet_or_unlabelled_line_equals_an_evaluation_sentence(products):
    held = {norm_text(r["sentence"]) for r in products.val + products.test}
    assert not held & {norm_text(r["sentence"]) for r in products.pool}
    assert not held & {norm_text(t) for t in products.unlabelled}
    keys = [norm_text(r["sentence"]) for r in products.pool]
    assert len(keys) == len(set(keys))  # repeats dropped
    assert not set(products.val_products) & set(products.test_products)
    assert products.dropped["review sentence found whole in the other training text"] >= 1  # "Enjoy." is one
    assert "enjoy" not in held


def test_draw_rows_is_reproducible_and_refuses_too_many():
    pool = [{"sentence": str(i), "label": i % 2} for i in range(20)]
    assert draw_rows(pool, 5, 1) == draw_rows(pool, 5, 1) != draw_rows(pool, 5, 2)
    with pytest.raises(ValueError, match="pool has 20"):
        draw_rows(pool, 21, 0)


def test_epochs_for_steps():
    assert epochs_for_steps(100, 16, 150) == 22  # 7 steps an epoch
    assert epochs_for_steps(1000, 16, 150) == 3
    assert epochs_for_steps(100_000, 16, 150) == 2  # at least lo


def test_shift_ci_brackets_the_shift_and_has_width():
    rng = np.random.default_rng(0)
    a, b = rng.random(800) < 0.85, rng.random(900) < 0.75
    ci = shift_ci(a, b, 500, seed=0)
    assert ci["low"] < ci["shift"] < ci["high"] < 0
    assert ci["high"] - ci["low"] > 0.02


TEXTS = ["the battery lasts all day", "the screen broke after a week", "great sound and easy to use",
         "it stopped working", "the menu is confusing", "worth every penny"] * 6


@pytest.fixture
def tiny_folders(tmp_path, tiny_bert, tokenizer):
    """A tiny random encoder (no MLM head, like all-MiniLM-L6-v2) and a tiny classifier, saved with a tokenizer."""
    from transformers import BertModel

    clf = tiny_bert(0)
    enc = BertModel(clf.config)
    for name, model in (("encoder", enc), ("classifier", clf)):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    return tmp_path / "encoder", tmp_path / "classifier"


BUDGET = dict(head_steps=3, head_lr=1e-2, steps=3, lr=1e-3, batch_size=4, max_length=16)


def test_continue_mlm_caches_by_identity_and_keeps_a_classifier_head(tiny_folders, tmp_path):
    from transformers import AutoModelForSequenceClassification

    enc, clf = tiny_folders
    logs = []
    rec = continue_mlm(clf, TEXTS, TEXTS[:6], tmp_path / "out", BUDGET, log=logs.append)
    assert len(rec["head_losses"]) == 3 and len(rec["losses"]) == 3
    before = AutoModelForSequenceClassification.from_pretrained(clf)
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert torch.equal(before.classifier.weight, after.classifier.weight)  # the head is the classifier's
    assert torch.equal(before.bert.pooler.dense.weight, after.bert.pooler.dense.weight)
    assert not torch.equal(before.bert.encoder.layer[0].attention.self.query.weight,
                           after.bert.encoder.layer[0].attention.self.query.weight)  # the encoder moved
    again = continue_mlm(clf, TEXTS, TEXTS[:6], tmp_path / "out", BUDGET, log=logs.append)
    assert again == json.loads((tmp_path / "out" / "dapt.json").read_text()) and "reusing" in logs[-1]
    continue_mlm(clf, TEXTS, TEXTS[:6], tmp_path / "out", {**BUDGET, "steps": 4}, log=logs.append)
    assert "another continued pretraining" in logs[-1]
    assert len(json.loads((tmp_path / "out" / "dapt.json").read_text())["losses"]) == 4
    continue_mlm(enc, TEXTS, TEXTS[:6], tmp_path / "enc-out", BUDGET, log=logs.append)  # an encoder folder too


def test_mlm_loss_is_the_same_for_the_same_masking(tiny_folders, tokenizer):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM.from_pretrained(tiny_folders[0])
    a, b = mlm_loss(model, tokenizer, TEXTS, seed=3), mlm_loss(model, tokenizer, TEXTS, seed=3)
    assert a == b and a > 0
    assert mlm_loss(model, tokenizer, TEXTS, seed=4) != a


def test_run_few_label_reuses_the_cache_and_retrains_when_an_evaluation_is_missing_or_changed(tiny_folders, tokenizer,
                                                                                            tmp_path):
    from llm_transfer.domain_shift import as_dataset

    _, clf = tiny_folders
    rows = [{"sentence": t, "label": i % 2} for i, t in enumerate(TEXTS[:12])]
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, max_length=16, mixed_precision="no")
    jobs = [few_label_job("clf", clf, rows, cfg), few_label_job("clf", clf, rows[:8], cfg)]
    evals = {"test": as_dataset(rows[:5])}
    logs = []
    first = run_few_label(jobs, evals, tmp_path / "runs.jsonl", tokenizer, log=logs.append)
    assert "training 2" in logs[0] and len(first[0]["test"]) == 5
    assert accuracy_of(first[0], "test", [r["label"] for r in rows[:5]]) == pytest.approx(
        (decode(first[0]["test"]) == np.array([r["label"] for r in rows[:5]])).mean())
    again = run_few_label(jobs, evals, tmp_path / "runs.jsonl", tokenizer, log=logs.append)
    assert "training 0" in logs[-1] and again == first
    more = run_few_label(jobs[:1], {**evals, "val": as_dataset(rows[5:9])}, tmp_path / "runs.jsonl", tokenizer,
                         log=logs.append)
    assert "training 1" in logs[-2] and len(more[0]["val"]) == 4
    # the same name, other sentences: the cached predictions are of other rows, so the job trains again
    other = run_few_label(jobs[:1], {"test": as_dataset(rows[1:6])}, tmp_path / "runs.jsonl", tokenizer,
                          log=logs.append)  # TEXTS repeats every 6 rows: rows[6:11] would be rows[:5] again
    summary = [m for m in logs if "fine-tunes reused" in m][-1]
    assert "training 1" in summary and other[0]["eval_sha"]["test"] != first[0]["eval_sha"]["test"]
    changed = few_label_job("clf", clf, rows, TrainConfig(**{**cfg.__dict__, "lr": 2e-3}))
    assert changed.key() != jobs[0].key()
    side_by_side = run_few_label(jobs, evals, tmp_path / "two.jsonl", tokenizer, log=logs.append, workers=2)
    assert "with 2 worker(s)" in logs[-3] and [r["test"] for r in side_by_side] == [r["test"] for r in first]


def test_continue_mlm_refuses_an_altered_cached_encoder_in_one_line(tiny_folders, tmp_path):
    from llm_transfer.checkpoints import CheckpointError

    enc, _ = tiny_folders
    continue_mlm(enc, TEXTS, TEXTS[:6], tmp_path / "out", BUDGET, log=lambda m: None)
    weights = tmp_path / "out" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: damaged") as e:
        continue_mlm(enc, TEXTS, TEXTS[:6], tmp_path / "out", BUDGET, log=lambda m: None)
    assert "\n" not in str(e.value)


def test_a_random_init_job_has_its_own_key_is_reproducible_and_stays_quiet(tiny_folders, tokenizer,
                                                                                    tmp_path, capfd):
    from llm_transfer.domain_shift import _train_job, as_dataset

    clf, _ = tiny_folders  # the encoder folder: no classification head, so loading reports a fresh one
    rows = [{"sentence": t, "label": i % 2} for i, t in enumerate(TEXTS[:8])]
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, max_length=16, mixed_precision="no")
    pre, rnd = few_label_job("clf", clf, rows, cfg), few_label_job("clf", clf, rows, cfg, random_init=True)
    # the pretrained job's key is the one earlier caches hold: weights, rows and recipe only
    before = {k: v for k, v in asdict(cfg).items() if k != "freeze_word_embeddings"}  # TrainConfig's earlier fields
    blob = json.dumps([folder_weights_sha256(clf), texts_sha256(pre.rows), before], sort_keys=True)
    assert pre.key() == hashlib.sha256(blob.encode()).hexdigest()[:24] != rnd.key()
    toks = {"test": tokenize(as_dataset(rows), tokenizer, 16)}
    a, b = _train_job(pre, toks, tokenizer), _train_job(rnd, toks, tokenizer)
    assert a["steps"] == b["steps"] == 2 and a["key"] != b["key"]
    assert _train_job(rnd, toks, tokenizer)["test"] == b["test"]  # the same seed draws the same random weights
    capfd.readouterr()
    # in worker processes (how notebooks run them) the fresh head's load report must not reach the output
    run_few_label([pre, rnd], {"test": as_dataset(rows)}, tmp_path / "runs.jsonl", tokenizer, log=lambda m: None,
                  workers=2)
    assert "LOAD REPORT" not in "".join(capfd.readouterr())


def test_a_strategy_job_trains_what_the_strategy_names_and_has_its_own_key(tiny_folders, tokenizer):
    from llm_transfer.domain_shift import _train_job, as_dataset

    _, clf = tiny_folders
    rows = [{"sentence": t, "label": i % 2} for i, t in enumerate(TEXTS[:8])]
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, max_length=16, mixed_precision="no")
    full, bitfit = few_label_job("clf", clf, rows, cfg), few_label_job("clf", clf, rows, cfg, strategy="bitfit")
    lora = few_label_job("clf", clf, rows, cfg, strategy="lora", r=2, alpha=4)
    assert len({full.key(), bitfit.key(), lora.key()}) == 3
    assert few_label_job("clf", clf, rows, cfg, strategy="lora", alpha=4, r=2).key() == lora.key()  # order-free
    toks = {"test": tokenize(as_dataset(rows), tokenizer, 16)}
    got = {j.strategy: _train_job(j, toks, tokenizer) for j in (full, bitfit, lora)}
    assert got["bitfit"]["trainable"] < got["full"]["trainable"] and got["lora"]["trainable"] < got["full"]["trainable"]
    assert got["bitfit"]["strategy"] == "bitfit" and got["full"]["steps"] == 2


def test_a_continued_pretraining_started_beside_another_waits_and_reuses_it(tiny_folders, tmp_path, lock_holder):
    enc, _ = tiny_folders
    continue_mlm(enc, TEXTS, TEXTS[:6], tmp_path / "staged", BUDGET, log=lambda m: None)
    lock_holder(tmp_path / "staged", tmp_path / "out")
    logs = []
    continue_mlm(enc, TEXTS, TEXTS[:6], tmp_path / "out", BUDGET, log=logs.append)
    assert len(logs) == 2 and "waiting" in logs[0] and logs[1].startswith("reusing"), logs
