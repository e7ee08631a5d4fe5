"""GLUE-task and WikiANN fine-tunes as cached jobs (notebook 08): a start, training rows, a recipe; predictions.

A job's record (one JSON line, keyed by what its result depends on: the task, the start's weights, the rows, the
recipe) holds its predictions on its task's evaluation sets and their hashes, so a re-run reuses finished
fine-tunes and a changed input (training rows or an evaluation set) retrains only its own jobs. A job can keep
its fine-tuned weights (`save`) as the start of a later job: the task-to-task transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from .checkpoints import atomic_dir
from .domain_shift import folder_weights_sha256, texts_sha256
from .glue import encode_task, get_task, load_task_classifier
from .hardware import bf16_autocast, resolve_precision
from .jobs import quiet_job, run_cached
from .ner import FEATURES as NER_FEATURES
from .ner import TAG_IDS, TAG_NAMES, tokenize_ner, word_predictions
from .training import TrainConfig, fine_tune, predict_logits, recipe_fields

NER_TASK = "wikiann"  # WikiANN English: token classification, IOB2 tags (ner.TAG_NAMES)


@dataclass(frozen=True)
class TaskJob:
    """One fine-tune of a GLUE task (glue.TASKS) or of WikiANN NER (NER_TASK) from a folder of weights."""

    task: str
    start: str  # a label for tables ("θ_s", "STS-B → MRPC", ...)
    folder: str
    rows: tuple  # task_rows(...): (text, [text,] label) per row; NER: (tokens, tags)
    cfg: TrainConfig
    tag: str = ""
    random_init: bool = False  # the folder's architecture with fresh random weights (seeded by cfg.seed)
    save: str = ""  # a folder to keep the fine-tuned weights in (a later job's start); "" keeps none

    def key(self) -> str:
        """What the result depends on: task, the start's weights (or random_init), rows, recipe, whether kept."""
        parts = [self.task, folder_weights_sha256(self.folder), texts_sha256(self.rows), recipe_fields(self.cfg),
                 self.random_init, bool(self.save)]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def task_rows(ds: Dataset, task: str) -> tuple:
    """A split's rows as a hashable tuple: the task's text columns then the label; NER: (tokens, tags)."""
    if task == NER_TASK:
        return tuple((tuple(t), tuple(int(x) for x in g)) for t, g in zip(ds["tokens"], ds["ner_tags"], strict=True))
    t = get_task(task)
    cols = [ds[c] for c in t.text_columns] + [ds["label"]]
    return tuple(zip(*cols, strict=True))


def rows_dataset(rows: Sequence[tuple], task: str) -> Dataset:
    """task_rows(...) back into a Dataset with the task's columns (the hub's names)."""
    if task == NER_TASK:
        return Dataset.from_dict({"tokens": [list(r[0]) for r in rows], "ner_tags": [list(r[1]) for r in rows]},
                                 features=NER_FEATURES)
    t = get_task(task)
    cols = {c: [r[i] for r in rows] for i, c in enumerate(t.text_columns)}
    labels = [float(r[-1]) if t.is_regression else int(r[-1]) for r in rows]
    return Dataset.from_dict({**cols, "label": labels})


def load_tagger(folder: str | Path, random_init: bool = False):
    """A token classifier with a fresh 7-tag head (ner.TAG_NAMES) on a pretrained or random encoder."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    from .models import _from_pretrained, resolve_model

    head = {"num_labels": len(TAG_NAMES), "id2label": dict(enumerate(TAG_NAMES)), "label2id": TAG_IDS}
    source = resolve_model(str(folder))
    if random_init:
        return AutoModelForTokenClassification.from_config(_from_pretrained(AutoConfig, source, **head))
    return _from_pretrained(AutoModelForTokenClassification, source, use_safetensors=True, **head)


def train_tagger(model, tokenizer, train: Dataset, cfg: TrainConfig) -> tuple[float, int]:
    """Fine-tune a token classifier with 🤗 Trainer (length-grouped batches, linear warm-up and decay, the cfg's
    lr, weight decay and clipping; bf16 where native): (seconds, optimizer steps)."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as work:
        args = TrainingArguments(
            output_dir=work, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr,
            num_train_epochs=cfg.epochs, lr_scheduler_type="linear", warmup_steps=cfg.warmup_ratio,
            weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, data_seed=cfg.seed,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            bf16=resolve_precision(cfg.mixed_precision, device) == "bf16", use_cpu=device == "cpu",
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0, int(trainer.state.global_step)


@torch.no_grad()
def predict_tags(model, tokenizer, ds: Dataset, max_length: int = 128, batch_size: int = 128) -> list[list[int]]:
    """One tag id per word of every sentence (read from the word's first piece; "O" for words cut off)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in range(len(ds))]
    order = np.argsort([len(t) for t in ds["tokens"]], kind="stable")
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size].tolist()
        tokens = [ds[i]["tokens"] for i in rows]
        enc = tokenizer(tokens, is_split_into_words=True, truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        with bf16_autocast(device):
            pred = model(**{k: v.to(device) for k, v in enc.items()}).logits.argmax(-1).cpu().tolist()
        for j, i in enumerate(rows):
            out[i] = word_predictions(enc.word_ids(j), pred[j], len(tokens[j]))
    return out


def encode_predictions(task: str, pred) -> str | list:
    """Predictions in a cache record: class ids as a digit string; STS-B scores as floats (4 decimals); NER: one
    digit string per sentence, joined by ','."""
    if task == NER_TASK:
        return ",".join("".join(map(str, s)) for s in pred)
    if get_task(task).is_regression:
        return [round(float(x), 4) for x in pred]
    return "".join(map(str, np.asarray(pred).tolist()))


def decode_predictions(task: str, stored) -> np.ndarray | list[list[int]]:
    """encode_predictions(...) back: class ids, scores, or tag ids per sentence."""
    if task == NER_TASK:
        return [[int(c) for c in s] for s in stored.split(",")] if stored else []
    if get_task(task).is_regression:
        return np.asarray(stored, dtype=np.float64)
    return np.frombuffer(stored.encode(), dtype=np.uint8).astype(np.int64) - ord("0")


def _predict(job: TaskJob, model, tokenizer, ds: Dataset):
    if job.task == NER_TASK:
        return predict_tags(model, tokenizer, ds, job.cfg.max_length)
    logits = predict_logits(model, tokenizer, ds)
    return logits[:, 0] if get_task(job.task).is_regression else logits.argmax(1)


def _train_task_job(job: TaskJob, evals: dict, tokenizer, eval_sha: dict | None = None) -> dict:
    """One fine-tune, scored on its task's evaluation sets: the record run_task_jobs caches."""
    with quiet_job(job.cfg.seed):
        rows = rows_dataset(job.rows, job.task)
        if job.task == NER_TASK:
            model = load_tagger(job.folder, job.random_init)
            seconds, steps = train_tagger(model, tokenizer, tokenize_ner(rows, tokenizer, job.cfg.max_length),
                                          job.cfg)
        else:
            model = load_task_classifier(job.task, job.folder, random_init=job.random_init)
            train = encode_task(rows, tokenizer, job.task, job.cfg.max_length)
            res = fine_tune(model, tokenizer, train, train.select(range(min(16, len(train)))), job.cfg,
                            progress=False, log=lambda *a: None, task=job.task)
            seconds, steps = res.train_seconds, len(res.step_losses)
    rec = {"key": job.key(), "task": job.task, "start": job.start, "n": len(job.rows), "lr": job.cfg.lr,
           "epochs": job.cfg.epochs, "seed": job.cfg.seed, "tag": job.tag, "random_init": job.random_init,
           "train_seconds": round(seconds, 1), "steps": steps,
           "examples_per_second": round(len(job.rows) * job.cfg.epochs / max(seconds, 1e-9), 1)}
    for name, ds in evals.get(job.task, {}).items():
        rec[name] = encode_predictions(job.task, _predict(job, model, tokenizer, ds))
    rec["eval_sha"] = (eval_sha or {}).get(job.task, {})
    if job.save:
        def write(tmp: Path) -> None:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

        with contextlib.redirect_stderr(io.StringIO()):  # save_pretrained's "Writing model shards" bar
            atomic_dir(job.save, write)
        rec["saved"] = job.save
    return rec


def run_task_jobs(jobs: Sequence[TaskJob], evals: dict[str, dict[str, Dataset]], cache: str | Path, tokenizer,
                  log: Callable = print, workers: int = 1) -> list[dict]:
    """Each job's record with its predictions on `evals[job.task]` (name -> split), reused from `cache` or trained.

    GLUE evaluation splits are encoded here once (glue.encode_task at length 128); NER splits stay as words. A
    record is reused only if it was scored on these very evaluation rows (their hashes match); one whose kept
    weights (`save`) are gone is trained again, so a later job can start from them.
    """
    enc = {task: {name: ds if task == NER_TASK else encode_task(ds, tokenizer, task, 128)
                  for name, ds in sets.items()} for task, sets in evals.items()}
    sha = {task: {name: texts_sha256(task_rows(ds, task)) for name, ds in sets.items()}
           for task, sets in evals.items()}

    def is_done(rec: dict) -> bool:
        want = sha.get(rec.get("task"), {})
        scored = set(want) <= set(rec) and all(rec.get("eval_sha", {}).get(k) == v for k, v in want.items())
        return scored and (not rec.get("saved") or any(Path(rec["saved"]).glob("*.safetensors")))

    return run_cached(jobs, cache, _train_task_job, (enc, tokenizer, sha), log=log, workers=workers,
                      is_done=is_done)
