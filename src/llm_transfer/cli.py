"""The `llm-transfer` command: train, evaluate, predict and submit with GLUE checkpoints (SST-2 by default)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

PROG = "llm-transfer"


class CLIError(Exception):
    """Bad input the user can fix; reported as one line on stderr."""


def _positive_int(s: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not >= 1")
    return v


def _positive_float(s: str) -> float:
    """argparse type: a number > 0."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v} is not > 0")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its four subcommands."""
    p = argparse.ArgumentParser(prog=PROG, description="Fine-tune, evaluate and use BERT classifiers on the GLUE "
                                "tasks (SST-2 sentiment by default), as in the notebook series.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,submit}")

    t = sub.add_parser("train", help="fine-tune on SST-2 (notebook 04's recipe) or another GLUE task",
                       description="Fine-tune a pretrained BERT on SST-2 (or another GLUE task, --task) with "
                       "notebook 04's recipe; options override the mode's defaults. Prints the final metrics as one "
                       "JSON object.")
    t.add_argument("--task", default="sst2", help=f"the GLUE task: {_task_list()} (default sst2; QNLI's training "
                   "split is online only: --data hub). Pair tasks are encoded [CLS] a [SEP] b [SEP]; STS-B gets a "
                   "1-unit regression head (MSE) and is scored by Pearson and Spearman")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="quick recipe: 6,000 training rows, 1 epoch, max length 64 (the default unless "
                      "LLM_TRANSFER_MODE=full)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="full recipe: the whole train split, 3 epochs at lr 5e-5, max length 128")
    t.add_argument("--model", help="'bundled' (all-MiniLM-L6-v2), a hub id or a local model folder")
    t.add_argument("--data", help="a GLUE SST-2 folder (train.tsv, dev.tsv, test.tsv) or 'hub'; with --task, the "
                   "task's folder (e.g. ../shared/data/glue/CoLA) or the GLUE folder holding it (default: next to "
                   "the SST-2 folder)")
    t.add_argument("--epochs", type=_positive_int, help="passes over the training rows")
    t.add_argument("--batch-size", type=_positive_int, help="training rows per optimizer step")
    t.add_argument("--lr", type=_positive_float, help="peak learning rate")
    t.add_argument("--max-length", type=_positive_int, help="truncate sentences to this many tokens")
    t.add_argument("--freeze-word-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help="leave the token-embedding table as pretrained (no gradient, no update): ~1.2x the "
                   "examples per CPU-second; default: the mode's recipe (benchmarks/results/frozen_table.md)")
    t.add_argument("--train-rows", type=_positive_int, help="train on a random subset of this many rows")
    t.add_argument("--eval-rows", type=_positive_int,
                   help="evaluate each epoch on a random subset of the dev split")
    t.add_argument("--seed", type=int, help="seed for the data subset, the new head and the batch order")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--output", type=Path, help="checkpoint folder (best/ and last/ go inside); default: "
                   "artifacts/<mode>/sst2-finetune, the folder notebooks 04 and 05 use, or "
                   "artifacts/<mode>/cli-finetune when a recipe option is changed; for another task "
                   "artifacts/<mode>/glue-<task> (cli-glue-<task>); rerunning resumes the same run, never another "
                   "task's")
    t.add_argument("--checkpoint-steps", type=_positive_int, metavar="N",
                   help="also save a resumable last/ every N optimizer steps (default: only by time, see "
                   "--checkpoint-minutes, and at each epoch's end)")
    t.add_argument("--checkpoint-minutes", type=_positive_float, metavar="M",
                   help="save a resumable last/ every M minutes of training (default 10); Ctrl-C and SIGTERM "
                   "also save it, after the current step, and exit with status 130 and 143")

    e = sub.add_parser("evaluate", help="the task's metrics on its dev split or a labelled TSV file",
                       description="Evaluate a checkpoint on a GLUE-style TSV file (SST-2: header "
                       "'sentence<TAB>label', labels 0/1). Prints one JSON object: for SST-2 accuracy, f1 "
                       "(positive class), ece (15 bins), n; for another task its GLUE metrics (CoLA: "
                       "matthews_correlation; MRPC: f1, accuracy; STS-B: pearson, spearman), score (their mean), "
                       "ece (classification) and n.")
    e.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint folder written by training")
    e.add_argument("--task", help="the GLUE task (default: the one the checkpoint was trained for; another one is "
                   "an error)")
    e.add_argument("--data", type=Path, help="a TSV file laid out as the task's dev.tsv (SST-2: a "
                   "'sentence<TAB>label' header); default: the task's dev split")
    e.add_argument("--batch-size", type=_positive_int, default=128)
    _add_weights_options(e)

    r = sub.add_parser("predict", help="label new sentences or sentence pairs",
                       description="Predict the label of sentences given as arguments or in a file (one "
                       "per line), or of sentence pairs for a pair task (--pair A B, or a file with two "
                       "tab-separated columns). Prints one line per input: label, probability of that label, "
                       "text(s); for STS-B the similarity score (0-5) and the two sentences.")
    r.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint folder written by training")
    r.add_argument("texts", nargs="*", metavar="TEXT", help="sentences to classify")
    r.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"),
                   help="a sentence pair, for the pair tasks (MRPC, STS-B, QNLI, RTE, WNLI); repeat for more")
    r.add_argument("--task", help="the GLUE task (default: the one the checkpoint was trained for)")
    r.add_argument("--file", type=Path, help="a UTF-8 text file with one sentence per line (pair tasks: two "
                   "tab-separated sentences per line)")
    r.add_argument("--json", action="store_true", help="print JSON lines instead of tab-separated text")
    r.add_argument("--batch-size", type=_positive_int, default=128)
    _add_weights_options(r)

    m = sub.add_parser("submit", help="a GLUE submission file for a task's test split",
                       description="Predict a task's test split and write the file GLUE's server expects: "
                       "<OUT>/CoLA.tsv, SST-2.tsv, MRPC.tsv, STS-B.tsv, QNLI.tsv, RTE.tsv or WNLI.tsv, with the "
                       "header 'index<TAB>prediction' and labels as GLUE writes them (0/1; entailment / "
                       "not_entailment for QNLI and RTE; STS-B scores clipped to 0-5). Zip the folder's files "
                       "(every task's, as the server asks for them all) and upload it at gluebenchmark.com. Prints "
                       "one JSON object: task, file, rows.")
    m.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint folder written by training")
    m.add_argument("--out", type=Path, required=True, help="the submission folder (created if missing)")
    m.add_argument("--task", help="the GLUE task (default: the one the checkpoint was trained for)")
    m.add_argument("--data", type=Path, help="a TSV file laid out as the task's test.tsv; default: the task's "
                   "test split")
    m.add_argument("--batch-size", type=_positive_int, default=128)
    _add_weights_options(m)
    return p


def _task_list() -> str:
    """The GLUE task names the CLI takes, as --help lists them."""
    from .glue import TASKS

    return ", ".join(TASKS)


def _add_weights_options(p: argparse.ArgumentParser) -> None:
    """--int8 / --bf16-weights (one at most): the faster inference weights of quantize.py."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--int8", dest="weights", action="store_const", const="int8", default="fp32",
                   help="run the linear layers in int8 (dynamic quantisation, CPU only): faster than fp32, "
                   "for CPUs without native bf16 (benchmarks/results/inference.md)")
    g.add_argument("--bf16-weights", dest="weights", action="store_const", const="bf16",
                   help="cast the weights to bf16 (CPUs with AVX512-BF16 or AMX, Ampere or newer GPUs): the "
                   "fastest path measured there (benchmarks/results/inference.md)")


def _with_weights(model, weights: str):
    """The model with the weights --int8 / --bf16-weights asked for; a CLIError where they cannot run."""
    from .quantize import inference_weights

    try:
        return inference_weights(model, weights)
    except ValueError as e:
        raise CLIError(f"--{'int8' if weights == 'int8' else 'bf16-weights'}: {e}") from None


def _task(name: str | None):
    """The glue.TASKS entry of a --task value (None: None); a CLIError naming the tasks for an unknown one."""
    from .glue import get_task

    if name is None:
        return None
    try:
        return get_task(name)
    except ValueError as e:
        raise CLIError(f"--task: {e}") from None


def _train_args(folder: Path) -> dict:
    """A checkpoint's train_args.json ({} when it has none or it cannot be read)."""
    try:
        args = json.loads((folder.expanduser() / "train_args.json").read_text())
    except (OSError, ValueError):
        return {}
    return args if isinstance(args, dict) else {}


def _checkpoint_task(folder: Path, asked: str | None):
    """The task to run: --task if given, else the one the checkpoint was trained for (no record: SST-2)."""
    return _task(asked) or _task(_train_args(folder).get("task", "sst2"))


def _load(folder: Path, task=None) -> tuple:
    """(model, tokenizer, max_length) of a checkpoint this project wrote, or a CLIError saying why not.

    task (a glue.TASKS entry; None: SST-2): the checkpoint must have been trained for it.
    """
    from .checkpoints import MARKER, load_checkpoint
    from .glue import get_task

    folder = folder.expanduser()
    if folder.is_dir() and not (folder / MARKER).is_file():
        hint = ""
        if (folder / "best" / MARKER).is_file():
            hint = f" (did you mean {folder / 'best'}?)"
        raise CLIError(f"{folder}: not a checkpoint written by {PROG} (no {MARKER}){hint}; pass the best/ or "
                       "last/ folder that `llm-transfer train` or notebook 04 wrote.")
    model, tokenizer = load_checkpoint(folder)  # raises CheckpointError for missing / damaged folders
    args, want = _train_args(folder), task or get_task("sst2")
    trained = _task(args.get("task", "sst2"))  # checkpoints from before --task: SST-2's
    if trained.name != want.name:
        raise CLIError(f"{folder}: trained for {trained.title}, not {want.title}; pass --task {trained.name}, or a "
                       f"checkpoint trained with `llm-transfer train --task {want.name}`.")
    if model.config.num_labels != want.num_labels:
        units = "output classes" if want.name == "sst2" else "output units"
        raise CLIError(f"{folder}: the model has {model.config.num_labels} {units}; {want.title} needs "
                       f"{want.num_labels}.")
    try:
        max_length = int(args["max_length"])
    except (KeyError, TypeError, ValueError):
        max_length = 128
    return model, tokenizer, max_length


def cmd_train(a: argparse.Namespace) -> int:
    """Fine-tune and print the final metrics."""
    from . import hardware
    from .checkpoints import run_lock
    from .data import load_sst2, subsample, tokenize
    from .glue import encode_task, load_task, load_task_classifier
    from .identity import IdentityError, describe_mismatch
    from .models import load_classifier, load_tokenizer
    from .recipes import finetune_run, task_recipe, task_run
    from .settings import HUB_DATA, get_settings, quiet_libraries, seed_everything
    from .training import fine_tune

    quiet_libraries()
    task = _task(a.task)
    sst2 = task.name == "sst2"  # SST-2 runs as it always did: its loader, its head, its history and folders
    S = get_settings(data=a.data, model=a.model, mode=a.mode, device=a.device, seed=a.seed)
    hardware.set_threads(S.threads)  # LLM_TRANSFER_THREADS, as in the notebooks
    cfg, rows = task_recipe(S, task.name)
    overrides = {"epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "max_length": a.max_length,
                 "freeze_word_embeddings": a.freeze_word_embeddings}
    changed = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(cfg, **changed)
    rows = a.train_rows or rows
    custom = bool(changed) or a.train_rows is not None or a.eval_rows is not None
    # notebooks 04 and 05 reuse the default folder: keep it for the recipe exactly as written
    if sst2:
        run = "cli-finetune" if custom else finetune_run(S)
    else:
        run = f"cli-{task_run(S, task.name)}" if custom else task_run(S, task.name)
    out = a.output if a.output is not None else S.run_dir(run)
    main_process = hardware.launch()[1] == 0  # `accelerate launch`: the main process speaks
    log = lambda *m: print(*m, file=sys.stderr) if main_process else None  # noqa: E731  (stdout: the JSON result)
    log(S.summary())
    if sst2:
        dsd = load_sst2(S.data)
    else:  # the task's folder: --data (itself or the GLUE folder holding it), else next to the SST-2 folder
        dsd = load_task(task, S.data if S.data == HUB_DATA or a.data is not None else Path(S.data).parent)
        if "train" not in dsd:
            raise CLIError(f"{task.title} has no training split here (only {', '.join(dsd)}): its training split is "
                           "online only; pass --data hub (needs internet).")
    with run_lock(out, log=log):  # first: an unwritable --output fails in one line before the model loads
        tokenizer = load_tokenizer(S.model)
        if sst2:
            train = tokenize(subsample(dsd["train"], rows, S.seed), tokenizer, cfg.max_length)
            dev = tokenize(subsample(dsd["validation"], a.eval_rows, S.seed), tokenizer, cfg.max_length)
        else:
            train = encode_task(subsample(dsd["train"], rows, S.seed), tokenizer, task, cfg.max_length)
            dev = encode_task(subsample(dsd["validation"], a.eval_rows, S.seed), tokenizer, task, cfg.max_length)
        seed_everything(S.seed)
        model = load_classifier(S.model) if sst2 else load_task_classifier(task, S.model)
        every = {"checkpoint_steps": a.checkpoint_steps}
        if a.checkpoint_minutes is not None:
            every["checkpoint_minutes"] = a.checkpoint_minutes
        if not sst2:
            every["task"] = task.name  # the task's metrics each epoch, and recorded in the run's identity
        try:
            res = fine_tune(model, tokenizer, train, dev, cfg, output_dir=out, device=S.device, log=log, **every)
        except IdentityError as e:  # the folder holds another run: say what differs, and the CLI's way out
            raise CLIError(f"{describe_mismatch(e.folder, e.differences)}; pass another --output to start a new run "
                           "there (or delete that folder).") from None
    best = res.best
    if not main_process:
        return 0
    if sst2:
        dev_metrics = {"eval_accuracy": best["eval_accuracy"]}
    else:  # the task's GLUE metrics and score (STS-B: no accuracy)
        dev_metrics = {"task": task.name, **{k: v for k, v in best.items() if k.startswith("eval_")}}
        del dev_metrics["eval_loss"]  # printed after the metrics, as for SST-2
    print(json.dumps({"best_checkpoint": str(res.best_dir), "last_checkpoint": str(res.last_dir),
                      "best_epoch": best["epoch"], **dev_metrics,
                      "eval_loss": best["eval_loss"], "eval_rows": len(dev), "train_rows": len(train),
                      "epochs": cfg.epochs, "train_seconds": round(res.train_seconds, 1)}))
    return 0


def _split(task, split: str, data: Path | None):
    """A task's split: from the --data file (laid out as that split's GLUE file), else where the data setting says."""
    from .glue import load_task, read_task_tsv, task_folder
    from .settings import HUB_DATA, get_settings

    if data is not None:
        return read_task_tsv(task, split, data.expanduser())  # raises DataError naming the file and line
    source = get_settings().data
    if source == HUB_DATA:
        return load_task(task, HUB_DATA)[split]
    folder = Path(source) if task.name == "sst2" else task_folder(task, Path(source).parent)
    return read_task_tsv(task, split, folder / task.files[split].file)


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Print the task's metrics (SST-2: accuracy, F1, ECE) and n on its dev split or a labelled file, as JSON."""
    from sklearn.metrics import f1_score

    from .calibration import expected_calibration_error, softmax
    from .glue import encode_task
    from .metrics import task_metrics
    from .settings import quiet_libraries
    from .training import predict_logits

    quiet_libraries()
    task = _checkpoint_task(a.checkpoint, a.task)
    ds = _split(task, "validation", a.data)  # raises DataError naming the file and line
    model, tokenizer, max_length = _load(a.checkpoint, task)
    model = _with_weights(model, a.weights)
    logits = predict_logits(model, tokenizer, encode_task(ds, tokenizer, task, max_length), batch_size=a.batch_size)
    labels = np.asarray(ds["label"])
    if task.is_regression:
        print(json.dumps({"task": task.name, **task_metrics(task.name, logits[:, 0], labels), "n": len(labels)}))
        return 0
    probs = softmax(logits)
    pred = probs.argmax(-1)
    if task.name != "sst2":
        print(json.dumps({"task": task.name, **task_metrics(task.name, pred, labels),
                          "ece": expected_calibration_error(probs, labels), "n": len(labels)}))
        return 0
    print(json.dumps({"accuracy": float((pred == labels).mean()),
                      "f1": float(f1_score(labels, pred, zero_division=0)),
                      "ece": expected_calibration_error(probs, labels), "n": len(labels)}))
    return 0


def _read_texts(path: Path) -> list[str]:
    """One text per line of a UTF-8 file; a blank line is an error naming its line number."""
    try:
        raw = path.expanduser().read_bytes()
    except OSError as e:
        raise CLIError(f"{path}: cannot read the file ({e.strerror}).") from None
    try:
        content = raw.decode("utf-8-sig")  # a byte-order mark (spreadsheets, Notepad) is not part of the text
    except UnicodeDecodeError as e:
        raise CLIError(f"{path}: bytes that are not UTF-8 (at byte {e.start}); save it as UTF-8.") from None
    lines = content.splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            raise CLIError(f"{path}, line {i}: blank line; put one sentence on each line, no blank lines.")
    return lines


def _read_pairs(path: Path, task) -> list[tuple[str, str]]:
    """Sentence pairs from a UTF-8 file, two tab-separated sentences a line; a CLIError naming a bad line."""
    pairs = []
    for i, line in enumerate(_read_texts(path), start=1):
        cols = line.split("\t")
        if len(cols) != 2:
            raise CLIError(f"{path}, line {i}: {len(cols)} tab-separated columns; {task.title} takes sentence pairs: "
                           "put the two sentences of a pair on one line, separated by one tab.")
        if not all(c.strip() for c in cols):
            raise CLIError(f"{path}, line {i}: an empty sentence; both sentences of a pair need some words.")
        pairs.append((cols[0], cols[1]))
    return pairs


def _pair_inputs(a: argparse.Namespace, task) -> list[tuple[str, str]]:
    """The pairs of `predict --pair A B` or `--file` for a pair task; CLIError for single sentences or none."""
    if a.texts:
        raise CLIError(f"{task.title} takes sentence pairs, not single sentences: pass --pair \"A\" \"B\" (repeat it "
                       "for more pairs) or --file FILE with two tab-separated sentences a line.")
    if a.file is not None and a.pair:
        raise CLIError("give pairs either with --pair or with --file, not both.")
    pairs = _read_pairs(a.file, task) if a.file is not None else [(x, y) for x, y in a.pair or []]
    if not pairs:
        raise CLIError(f"no sentence pair to classify; {task.title} takes pairs: pass --pair \"A\" \"B\" or --file "
                       "FILE (two tab-separated sentences a line).")
    for i, pair in enumerate(pairs, start=1):
        if not all(x.strip() for x in pair):
            raise CLIError(f"--pair {i} has an empty sentence; both sentences of a pair need some words.")
    return pairs


def _predict_pairs(a: argparse.Namespace, task, pairs: list[tuple[str, str]]) -> int:
    """Print label and probability (STS-B: the score, clipped to 0-5) and the two sentences for each pair."""
    from datasets import Dataset

    from .calibration import softmax
    from .glue import SCORE_RANGE, encode_task
    from .training import predict_logits

    model, tokenizer, max_length = _load(a.checkpoint, task)
    model = _with_weights(model, a.weights)
    first, second = task.text_columns
    rows = Dataset.from_dict({first: [x for x, _ in pairs], second: [y for _, y in pairs]})
    logits = predict_logits(model, tokenizer, encode_task(rows, tokenizer, task, max_length), batch_size=a.batch_size)
    if task.is_regression:
        for (x, y), score in zip(pairs, np.clip(logits[:, 0], *SCORE_RANGE), strict=True):
            print(json.dumps({first: x, second: y, "score": round(float(score), 3)}) if a.json else
                  f"{score:.3f}\t{x}\t{y}")
        return 0
    for (x, y), p in zip(pairs, softmax(logits), strict=True):
        k = int(p.argmax())
        print(json.dumps({first: x, second: y, "label": task.label_names[k], "probability": round(float(p[k]), 4)})
              if a.json else f"{task.label_names[k]}\t{p[k]:.4f}\t{x}\t{y}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    """Print label and probability for each input text (pair tasks: each pair; STS-B: the score)."""
    from .data import LABEL_NAMES
    from .settings import quiet_libraries
    from .training import predict_proba

    task = _checkpoint_task(a.checkpoint, a.task)
    if task.is_pair:
        pairs = _pair_inputs(a, task)
        quiet_libraries()
        return _predict_pairs(a, task, pairs)
    if a.pair:
        raise CLIError(f"{task.title} classifies single sentences: pass them as arguments or with --file, not --pair.")
    if a.file is not None and a.texts:
        raise CLIError("give sentences either as arguments or with --file, not both.")
    texts = _read_texts(a.file) if a.file is not None else list(a.texts)
    if not texts:
        raise CLIError("no text to classify; pass sentences as arguments or --file FILE (one per line).")
    for i, t in enumerate(texts, start=1):
        if not t.strip():
            raise CLIError(f"text argument {i} is empty; every sentence needs some words.")
    quiet_libraries()
    model, tokenizer, max_length = _load(a.checkpoint, task)
    model = _with_weights(model, a.weights)
    probs = predict_proba(model, tokenizer, texts, max_length=max_length, batch_size=a.batch_size)
    for text, p in zip(texts, probs, strict=True):
        k = int(p.argmax())
        if task.name != "sst2":
            print(json.dumps({"text": text, "label": task.label_names[k], "probability": round(float(p[k]), 4)})
                  if a.json else f"{task.label_names[k]}\t{p[k]:.4f}\t{text}")
        elif a.json:
            print(json.dumps({"text": text, "label": LABEL_NAMES[k], "probability": round(float(p[k]), 4),
                              "p_positive": round(float(p[1]), 4)}))
        else:
            print(f"{LABEL_NAMES[k]}\t{p[k]:.4f}\t{text}")
    return 0


def submission_lines(task, logits: np.ndarray, index) -> list[str]:
    """A GLUE submission file's lines: 'index<TAB>prediction', then each row's label as GLUE's files write it.

    Classes as the task's files write them (CoLA, SST-2, MRPC, WNLI: 0 / 1; QNLI, RTE: entailment / not_entailment),
    STS-B scores clipped to 0-5 with 3 decimals; rows in index order.
    """
    from .glue import SCORE_RANGE

    if task.is_regression:
        preds = [f"{x:.3f}" for x in np.clip(logits[:, 0], *SCORE_RANGE)]
    else:
        written = {k: raw for raw, k in task.raw_labels.items()}
        preds = [written[int(k)] for k in logits.argmax(-1)]
    rows = sorted(zip((int(i) for i in index), preds, strict=True))
    return ["index\tprediction", *(f"{i}\t{p}" for i, p in rows)]


def cmd_submit(a: argparse.Namespace) -> int:
    """Write <out>/<Task>.tsv, the task's test-split predictions as GLUE's server takes them; print task, file, rows."""
    import os
    import tempfile

    from .glue import encode_task
    from .settings import quiet_libraries
    from .training import predict_logits

    quiet_libraries()
    task = _checkpoint_task(a.checkpoint, a.task)
    ds = _split(task, "test", a.data)
    model, tokenizer, max_length = _load(a.checkpoint, task)
    model = _with_weights(model, a.weights)
    logits = predict_logits(model, tokenizer, encode_task(ds, tokenizer, task, max_length), batch_size=a.batch_size)
    lines = submission_lines(task, logits, ds["idx"])
    out, tmp = a.out.expanduser(), None
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{task.title}.tsv.", dir=out)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, out / f"{task.title}.tsv")  # a half-written file never takes the final name
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise CLIError(f"{out}: cannot write the submission file ({e.strerror or e}).") from None
    print(json.dumps({"task": task.name, "file": str(out / f"{task.title}.tsv"), "rows": len(lines) - 1}))
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "submit": cmd_submit}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llm-transfer` console script; returns the exit status."""
    args = build_parser().parse_args(argv)  # usage errors exit with status 2, as argparse does
    from .checkpoints import CheckpointError
    from .data import DataError
    from .models import ModelError
    from .resume import Terminated
    from .settings import SettingsError

    try:
        return COMMANDS[args.command](args)
    except (CLIError, DataError, CheckpointError, ModelError, SettingsError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)  # always one line
        return 1
    except Terminated:  # SIGTERM (kill, timeout, a scheduler): training saved last/ first
        print(f"{PROG}: stopped by SIGTERM", file=sys.stderr)
        return Terminated.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
