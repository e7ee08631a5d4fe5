"""GLUE / NER fine-tune jobs (task_runs): rows and predictions round-trip, keys, caching, kept weights, transfer."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from llm_transfer.baselines import tfidf_task
from llm_transfer.glue import get_task, load_task_classifier
from llm_transfer.ner import FEATURES
from llm_transfer.splits import grouped_validation_split
from llm_transfer.task_runs import (
    NER_TASK,
    TaskJob,
    decode_predictions,
    encode_predictions,
    rows_dataset,
    run_task_jobs,
    task_rows,
)
from llm_transfer.training import TrainConfig

CFG = TrainConfig(epochs=1, batch_size=8, lr=1e-3, max_length=32, mixed_precision="no")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A 2-layer, 32-wide random BERT saved as a folder (the bundled tokenizer's 30,522-piece vocabulary)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(cfg).save_pretrained(folder)
    return str(folder)


def pairs(n: int, seed: int = 0, score: bool = False) -> Dataset:
    """Pairs whose label says whether the two sentences share their first word (a learnable rule)."""
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "red", "blue", "cat", "dog", "sun", "rain"]
    a = [f"{rng.choice(words)} {rng.choice(words)} day" for _ in range(n)]
    same = rng.integers(0, 2, n)
    other = {w: words[(k + 1) % len(words)] for k, w in enumerate(words)}
    b = [x if s else f"{other[x.split()[0]]} night" for x, s in zip(a, same, strict=True)]
    labels = (same * 5.0).tolist() if score else same.tolist()
    return Dataset.from_dict({"sentence1": a, "sentence2": b, "label": labels})


def ner_rows(n: int) -> Dataset:
    tokens = [["Ann", "met", "Bob", "in", "Paris"]] * n
    tags = [[1, 0, 1, 0, 5]] * n
    return Dataset.from_dict({"tokens": tokens, "ner_tags": tags}, features=FEATURES)


def test_rows_round_trip_for_pairs_scores_and_tags():
    for task, ds in (("rte", pairs(5)), ("stsb", pairs(5, score=True))):
        rows = task_rows(ds, task)
        back = rows_dataset(rows, task)
        assert list(back["sentence1"]) == list(ds["sentence1"]) and list(back["label"]) == list(ds["label"])
        assert hash(rows) == hash(task_rows(back, task))
    rows = task_rows(ner_rows(3), NER_TASK)
    assert rows[0] == (("Ann", "met", "Bob", "in", "Paris"), (1, 0, 1, 0, 5))
    assert list(rows_dataset(rows, NER_TASK)["ner_tags"]) == [[1, 0, 1, 0, 5]] * 3


def test_predictions_round_trip():
    assert decode_predictions("rte", encode_predictions("rte", np.array([0, 1, 1]))).tolist() == [0, 1, 1]
    scores = decode_predictions("stsb", encode_predictions("stsb", np.array([0.123456, 4.9])))
    assert np.allclose(scores, [0.1235, 4.9])
    tags = [[0, 1, 2], [], [5]]
    assert decode_predictions(NER_TASK, encode_predictions(NER_TASK, tags)) == tags


def test_key_depends_on_task_rows_recipe_and_start(tiny_folder):
    rows = task_rows(pairs(8), "rte")
    job = TaskJob("rte", "θ_s", tiny_folder, rows, CFG)
    assert job.key() == TaskJob("rte", "other label", tiny_folder, rows, CFG).key()  # a label is not an input
    others = [TaskJob("wnli", "θ_s", tiny_folder, rows, CFG), TaskJob("rte", "θ_s", tiny_folder, rows[:-1], CFG),
              TaskJob("rte", "θ_s", tiny_folder, rows, TrainConfig(**{**CFG.__dict__, "lr": 1e-4})),
              TaskJob("rte", "θ_s", tiny_folder, rows, CFG, random_init=True)]
    assert len({job.key(), *(o.key() for o in others)}) == 5


def test_jobs_train_cache_keep_weights_and_start_a_transfer(tiny_folder, tokenizer, tmp_path):
    stsb_train, mrpc_train = pairs(32, seed=1, score=True), pairs(32, seed=2)
    evals = {"stsb": {"dev": pairs(10, seed=3, score=True)}, "mrpc": {"dev": pairs(12, seed=4)}}
    keep = tmp_path / "models" / "stsb"
    src = TaskJob("stsb", "θ_s", tiny_folder, task_rows(stsb_train, "stsb"), CFG, save=str(keep))
    cache, lines = tmp_path / "runs.jsonl", []
    (rec,) = run_task_jobs([src], evals, cache, tokenizer, log=lines.append)
    assert len(decode_predictions("stsb", rec["dev"])) == 10 and rec["saved"] == str(keep)
    assert any(keep.glob("*.safetensors")) and rec["steps"] == 4
    (again,) = run_task_jobs([src], evals, cache, tokenizer, log=lines.append)
    assert again == rec and lines[-1].startswith("1 of 1 fine-tunes reused")
    # the regression checkpoint starts a 2-class task: a fresh head of the task's size, the encoder kept
    model = load_task_classifier("mrpc", keep)
    assert model.classifier.out_features == 2 and model.config.problem_type == "single_label_classification"
    (tr,) = run_task_jobs([TaskJob("mrpc", "STS-B → MRPC", str(keep), task_rows(mrpc_train, "mrpc"), CFG)],
                          evals, cache, tokenizer, log=lines.append)
    assert set(decode_predictions("mrpc", tr["dev"]).tolist()) <= {0, 1} and len(tr["dev"]) == 12
    # kept weights gone: the record no longer counts as done, so the source trains again
    for f in keep.iterdir():
        f.unlink()
    run_task_jobs([src], evals, cache, tokenizer, log=lines.append)
    assert lines[-2].startswith("0 of 1 fine-tunes reused") and any(keep.glob("*.safetensors"))


def test_a_record_scored_on_other_evaluation_rows_is_not_reused(tiny_folder, tokenizer, tmp_path):
    """Same job, another dev set of the same size: the cached predictions belong to other rows, so it retrains."""
    job = TaskJob("rte", "θ_s", tiny_folder, task_rows(pairs(16, seed=1), "rte"), CFG)
    cache, lines = tmp_path / "runs.jsonl", []
    first, second = {"rte": {"dev": pairs(10, seed=3)}}, {"rte": {"dev": pairs(10, seed=4)}}
    (rec,) = run_task_jobs([job], first, cache, tokenizer, log=lines.append)
    (same,) = run_task_jobs([job], first, cache, tokenizer, log=lines.append)
    assert same == rec and lines[-1].startswith("1 of 1 fine-tunes reused")
    (other,) = run_task_jobs([job], second, cache, tokenizer, log=lines.append)
    assert lines[-2].startswith("0 of 1 fine-tunes reused") and other["eval_sha"] != rec["eval_sha"]
    (back,) = run_task_jobs([job], first, cache, tokenizer, log=lines.append)  # the first rows' record is still there
    assert lines[-1].startswith("1 of 1 fine-tunes reused") and back == rec


def test_ner_job_predicts_one_tag_per_word(tiny_folder, tokenizer, tmp_path):
    dev = Dataset.from_dict({"tokens": [["Bob", "is", "here"], ["Paris"], ["a"] * 40],
                             "ner_tags": [[1, 0, 0], [5], [0] * 40]}, features=FEATURES)
    job = TaskJob(NER_TASK, "θ_s", tiny_folder, task_rows(ner_rows(16), NER_TASK), CFG)
    (rec,) = run_task_jobs([job], {NER_TASK: {"dev": dev}}, tmp_path / "ner.jsonl", tokenizer, log=lambda *a: None)
    pred = decode_predictions(NER_TASK, rec["dev"])
    assert [len(p) for p in pred] == [3, 1, 40]  # words past max_length=32 pieces get "O", still one per word
    assert all(0 <= t < 7 for p in pred for t in p) and rec["steps"] == 2


def test_tfidf_task_learns_pairs_and_scores():
    train, val = pairs(200, seed=5), pairs(100, seed=6)
    base = tfidf_task("mrpc", train, val)
    assert base.features(val).shape[1] == 2 * len(base.vectorizer.vocabulary_) + 1  # a, b, cosine(a, b)
    assert base.validation_score > 0.9 and base.params["C"] in (0.25, 1.0, 4.0, 16.0)
    reg = tfidf_task("stsb", pairs(200, seed=7, score=True), pairs(100, seed=8, score=True))
    assert reg.validation_score > 0.8 and get_task("stsb").is_regression


def test_grouped_validation_split_keeps_a_key_on_one_side():
    keys = [f"premise {i % 50}" for i in range(1000)]
    train, val = grouped_validation_split(keys, 0.2, seed=0)
    assert len(train) + len(val) == 1000 and not set(train) & set(val)
    assert not {keys[i] for i in train} & {keys[i] for i in val}
    assert 0.05 < len(val) / 1000 < 0.4
    assert grouped_validation_split(["The Cat ."] * 3 + ["the cat"], 0.5, seed=1)[1].size in (0, 4)  # normalised


def test_two_workers_keep_weights_without_progress_bars(tiny_folder, tokenizer, tmp_path, capfd):
    """Spawned workers start with the libraries' progress bars on; saving a kept job must not print them."""
    evals = {"stsb": {"dev": pairs(6, seed=3, score=True)}}
    jobs = [TaskJob("stsb", "θ_s", tiny_folder, task_rows(pairs(16, seed=s, score=True), "stsb"), CFG,
                    save=str(tmp_path / f"kept-{s}")) for s in (1, 2)]
    recs = run_task_jobs(jobs, evals, tmp_path / "runs.jsonl", tokenizer, log=lambda *a: None, workers=2)
    assert [r["saved"] for r in recs] == [j.save for j in jobs]
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "it/s]" not in err
