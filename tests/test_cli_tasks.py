"""llm-transfer on every GLUE task we have: train, evaluate, predict pairs, GLUE submission files, and bad input.

Each task trains a tiny random BERT (the model loader is patched; the tokenizer is the bundled one) on 32 rows of the
real task files for one epoch, max length 32, so the whole file runs in seconds.
"""

import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from llm_transfer import glue
from llm_transfer.batching import make_loader
from llm_transfer.cli import main, submission_lines
from llm_transfer.data import load_sst2, tokenize
from llm_transfer.glue import encode_task, get_task, head_config, load_task
from llm_transfer.metrics import task_metrics
from llm_transfer.settings import get_settings
from llm_transfer.training import TrainConfig, evaluate, fine_tune, predict_logits

TASKS = ["cola", "mrpc", "stsb", "rte", "wnli"]  # every task with a local training split, besides SST-2 (test_cli)
TINY = ["--quick", "--train-rows", "32", "--eval-rows", "32", "--epochs", "1", "--max-length", "32",
        "--batch-size", "16"]


def tiny_task_model(task, name=None, random_init=False):
    """A 2-layer, 32-wide random BERT with the task's head (head_config), in place of the pretrained one."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, **head_config(task))
    return BertForSequenceClassification(cfg)


def run(argv, capsys) -> tuple[int, str, str]:
    """main(argv) in-process: (exit status, stdout, stderr); argparse's usage errors count as status 2."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The last stderr line, checked to be the CLI's one-line error (progress lines may come before it)."""
    last = err.strip().splitlines()[-1]
    assert last.startswith("llm-transfer: error: ") and "Traceback" not in err, err
    return last


@pytest.fixture(scope="module")
def data_dir():
    """The local GLUE folder holding the task folders (../shared/data/glue)."""
    data = get_settings().data
    if data == "hub":
        pytest.skip("no local GLUE folder (../shared/data/glue)")
    from pathlib import Path

    return Path(data).parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """task -> (run folder, the JSON that `train --task` printed), for every task in TASKS."""
    root, out = tmp_path_factory.mktemp("tasks"), {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(glue, "load_task_classifier", tiny_task_model)
        for task in TASKS:
            code = main(["train", "--task", task, *TINY, "--output", str(root / task)])
            assert code == 0, task
            out[task] = root / task
    return out


@pytest.mark.parametrize("task", TASKS)
def test_train_records_the_task_and_its_metrics(runs, task):
    t = get_task(task)
    best = runs[task] / "best"
    args = json.loads((best / "train_args.json").read_text())
    assert (args["task"], args["train_rows"], args["eval_rows"], args["max_length"]) == (task, 32, 32, 32)
    rec = json.loads((best / "metrics.json").read_text())["best"]
    assert rec["task"] == task and {f"eval_{m}" for m in t.metrics} <= set(rec)
    assert rec["eval_score"] == pytest.approx(np.mean([rec[f"eval_{m}"] for m in t.metrics]))
    assert ("eval_accuracy" in rec) == (not t.is_regression)  # no accuracy on a regression
    config = json.loads((best / "config.json").read_text())
    assert len(config["id2label"]) == t.num_labels  # STS-B: 1 unit
    assert (config.get("problem_type") == "regression") == t.is_regression


def test_train_prints_the_tasks_metrics_and_resumes_only_the_same_task(runs, capsys, monkeypatch):
    monkeypatch.setattr(glue, "load_task_classifier", tiny_task_model)
    code, out, _ = run(["train", "--task", "STS-B", *TINY, "--output", runs["stsb"]], capsys)  # finished: resumes
    res = json.loads(out)
    assert code == 0 and res["task"] == "stsb" and "eval_accuracy" not in res
    assert {"eval_pearson", "eval_spearman", "eval_score", "eval_loss"} <= set(res) and res["eval_rows"] == 32
    # the CoLA run's folder never takes another task's run: the task is part of the run's identity
    code, out, err = run(["train", "--task", "mrpc", *TINY, "--output", runs["cola"]], capsys)
    last = error_line(err)
    assert code == 1 and out == "" and "task: 'cola' there, 'mrpc' now" in last and "--output" in last


def test_default_run_folder_per_task(tmp_path, monkeypatch, capsys):
    """train --task X writes artifacts/<mode>/glue-X (cli-glue-X with a recipe option changed), not SST-2's folder."""
    seen = []

    class Stop(Exception):
        """Ends the run once the folder is chosen."""

    def lock(folder, log=None):
        seen.append(folder)
        raise Stop

    from llm_transfer import checkpoints

    monkeypatch.setenv("LLM_TRANSFER_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(checkpoints, "run_lock", lock)
    for argv in (["train", "--task", "rte", "--quick"], ["train", "--task", "rte", "--quick", "--epochs", "2"]):
        with pytest.raises(Stop):
            main(argv)
    assert seen == [tmp_path / "quick" / "glue-rte", tmp_path / "quick" / "cli-glue-rte"]


def test_evaluate_prints_each_tasks_metrics_on_its_dev_split(runs, capsys):
    for task in TASKS:
        t = get_task(task)
        code, out, err = run(["evaluate", "--checkpoint", runs[task] / "best"], capsys)
        assert code == 0, err
        res = json.loads(out)
        expected = {"task", *t.metrics, "score", "n"} | (set() if t.is_regression else {"ece"})
        assert set(res) == expected and res["task"] == task
        assert res["n"] == len(load_task(task)["validation"])  # the whole dev split


def test_evaluate_equals_task_metrics_of_the_checkpoints_predictions(runs, data_dir, tmp_path, capsys):
    """On a 20-row MRPC dev file (byte-order mark and all), the JSON is task_metrics of the model's own predictions."""
    from llm_transfer.checkpoints import load_checkpoint

    lines = (data_dir / "MRPC" / "dev.tsv").read_bytes().splitlines(keepends=True)
    small = tmp_path / "dev20.tsv"
    small.write_bytes(b"".join(lines[:21]))
    code, out, err = run(["evaluate", "--checkpoint", runs["mrpc"] / "best", "--data", small], capsys)
    assert code == 0, err
    res = json.loads(out)
    model, tokenizer = load_checkpoint(runs["mrpc"] / "best")
    ds = glue.read_task_tsv("mrpc", "validation", small)
    logits = predict_logits(model, tokenizer, encode_task(ds, tokenizer, "mrpc", 32))
    want = task_metrics("mrpc", logits, ds["label"])
    assert res["n"] == 20 and {k: res[k] for k in want} == pytest.approx(want)


def test_predict_pairs_args_file_and_json(runs, tmp_path, capsys):
    ckpt = runs["mrpc"] / "best"
    code, out, err = run(["predict", "--checkpoint", ckpt, "--pair", "He left.", "He went away.",
                          "--pair", "It rains.", "The cat sleeps."], capsys)
    assert code == 0, err
    lines = [x.split("\t") for x in out.splitlines()]
    assert [x[2:] for x in lines] == [["He left.", "He went away."], ["It rains.", "The cat sleeps."]]
    assert all(x[0] in ("not_equivalent", "equivalent") and 0.5 <= float(x[1]) <= 1 for x in lines)
    f = tmp_path / "pairs.tsv"
    f.write_text("\ufeffHe left.\tHe went away.\nIt rains.\tThe cat sleeps.\n", encoding="utf-8")
    code, out, _ = run(["predict", "--checkpoint", ckpt, "--file", f, "--json"], capsys)
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [(r["sentence1"], r["sentence2"], r["label"]) for r in rows] == [
        (x[2], x[3], x[0]) for x in lines]
    code, out, _ = run(["predict", "--checkpoint", runs["stsb"] / "best", "--json", "--pair", "A dog runs.",
                        "A dog is running."], capsys)
    score = json.loads(out)["score"]
    assert code == 0 and 0 <= score <= 5
    code, out, _ = run(["predict", "--checkpoint", runs["cola"] / "best", "The book was read."], capsys)
    label, p, text = out.strip().split("\t")
    assert code == 0 and label in ("unacceptable", "acceptable") and text == "The book was read."


@pytest.mark.parametrize("task,title,test_rows", [("rte", "RTE", 3000), ("cola", "CoLA", 1063),
                                                  ("stsb", "STS-B", 1379)])
def test_submission_file_layout(runs, task, title, test_rows, tmp_path, capsys):
    out = tmp_path / "glue"
    code, stdout, err = run(["submit", "--checkpoint", runs[task] / "best", "--out", out], capsys)
    assert code == 0, err
    assert json.loads(stdout) == {"task": task, "file": str(out / f"{title}.tsv"), "rows": test_rows}
    assert [p.name for p in out.iterdir()] == [f"{title}.tsv"]  # nothing half-written left beside it
    lines = (out / f"{title}.tsv").read_text().split("\n")
    assert lines[0] == "index\tprediction" and lines[-1] == ""  # GLUE's header, a final newline
    rows = [x.split("\t") for x in lines[1:-1]]
    assert [int(i) for i, _ in rows] == list(range(test_rows))
    preds = [p for _, p in rows]
    if task == "stsb":
        assert all(0 <= float(p) <= 5 and len(p.split(".")[1]) == 3 for p in preds)
    else:
        allowed = {"rte": {"entailment", "not_entailment"}, "cola": {"0", "1"}}[task]
        assert set(preds) <= allowed


def test_submission_lines_as_glue_writes_labels():
    """Labels as the task's files write them (RTE words, WNLI and MRPC 0/1), STS-B clipped to 0-5, index order."""
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 1.0]], dtype=np.float32)
    assert submission_lines(get_task("rte"), logits, [2, 0, 1]) == [
        "index\tprediction", "0\tentailment", "1\tnot_entailment", "2\tnot_entailment"]
    assert submission_lines(get_task("wnli"), logits, [0, 1, 2])[1:] == ["0\t1", "1\t0", "2\t1"]
    scores = np.array([[-0.4], [2.3456], [7.0]], dtype=np.float32)
    assert submission_lines(get_task("stsb"), scores, [0, 1, 2])[1:] == ["0\t0.000", "1\t2.346", "2\t5.000"]


def test_pairs_are_batched_with_segments_and_single_sentences_as_before(tokenizer, sst2_dir):
    """The loader passes token_type_ids for pairs (segment 1 after the first [SEP]); for SST-2 it never does."""
    pairs = encode_task(load_task("rte")["validation"].select(range(8)), tokenizer, "rte", 32)
    batch = next(iter(make_loader(pairs, tokenizer, 8, shuffle=False)))
    assert {"input_ids", "token_type_ids", "attention_mask", "labels"} == set(batch)
    row = batch["input_ids"][0].tolist()
    first_sep = row.index(tokenizer.sep_token_id)
    segments = batch["token_type_ids"][0].tolist()
    assert set(segments[:first_sep + 1]) == {0} and segments[first_sep + 1] == 1
    single = tokenize(load_sst2(sst2_dir)["validation"].select(range(8)), tokenizer, 32)
    assert set(next(iter(make_loader(single, tokenizer, 8, shuffle=False)))) == {"input_ids", "attention_mask",
                                                                                 "labels"}


def test_regression_loss_is_mse_and_sst2_history_keys_are_unchanged(tokenizer, sst2_dir):
    stsb = encode_task(load_task("stsb")["validation"].select(range(24)), tokenizer, "stsb", 32)
    model = tiny_task_model("stsb")
    ev = evaluate(model, stsb, tokenizer, task="stsb")
    scores = predict_logits(model, tokenizer, stsb)[:, 0].astype(np.float64)
    labels = np.asarray(stsb["label"], dtype=np.float64)
    assert "accuracy" not in ev and ev["loss"] == pytest.approx(((scores - labels) ** 2).mean())
    assert {k: ev[k] for k in ("pearson", "spearman", "score")} == pytest.approx(task_metrics("stsb", scores, labels))
    batch = next(iter(make_loader(stsb, tokenizer, 24, shuffle=False)))
    assert batch["labels"].dtype == torch.float32  # a float label reaches the 1-unit head's MSE
    sst2 = tokenize(load_sst2(sst2_dir)["validation"].select(range(16)), tokenizer, 32)
    cfg = TrainConfig(epochs=1, batch_size=8, max_length=32)
    res = fine_tune(tiny_task_model("sst2"), tokenizer, sst2, sst2, cfg, log=lambda *a: None, progress=False)
    assert list(res.history[0])[:4] == ["epoch", "train_loss", "eval_accuracy", "eval_loss"]
    assert "task" not in res.history[0] and "eval_score" not in res.history[0]


def test_bad_task_inputs_are_one_line(runs, capsys):
    cases = [
        (["train", "--task", "mnli"], "--task: unknown GLUE task 'mnli'; the tasks here are cola, sst2"),
        (["train", "--task", "qnli", "--quick"], "QNLI has no training split here (only validation, test)"),
        (["evaluate", "--checkpoint", runs["cola"] / "best", "--task", "sst2"],
         "trained for CoLA, not SST-2; pass --task cola"),
        (["predict", "--checkpoint", runs["mrpc"] / "best", "two sentences"],
         "MRPC takes sentence pairs, not single sentences: pass --pair"),
        (["predict", "--checkpoint", runs["mrpc"] / "best"], "no sentence pair to classify"),
        (["predict", "--checkpoint", runs["cola"] / "best", "--pair", "a", "b"],
         "CoLA classifies single sentences"),
        (["predict", "--checkpoint", runs["mrpc"] / "best", "--pair", "a", " "], "--pair 1 has an empty sentence"),
        (["submit", "--checkpoint", runs["rte"] / "best", "--task", "wnli", "--out", runs["rte"] / "sub"],
         "trained for RTE, not WNLI"),
    ]
    for argv, msg in cases:
        code, out, err = run(argv, capsys)
        assert code == 1 and out == "", (argv, err)
        assert msg in error_line(err), (msg, err)
    assert not (runs["rte"] / "sub").exists()


def test_bad_pair_file_is_one_line(runs, tmp_path, capsys):
    f = tmp_path / "pairs.tsv"
    f.write_text("one\ttwo\nonly one sentence\n")
    code, out, err = run(["predict", "--checkpoint", runs["rte"] / "best", "--file", f], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "pairs.tsv, line 2: 1 tab-separated columns; RTE takes sentence pairs" in error_line(err)


@pytest.mark.parametrize("sub", ["train", "submit"])
def test_help_names_the_tasks(sub, capsys):
    code, out, _ = run([sub, "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "--task" in text
    assert "cola, sst2, mrpc, stsb, qnli, rte, wnli" in text if sub == "train" else "STS-B.tsv" in text
