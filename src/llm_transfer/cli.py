"""The `llm-transfer` command: train, evaluate and predict with SST-2 sentiment checkpoints."""

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
    """The argument parser with its three subcommands."""
    p = argparse.ArgumentParser(prog=PROG, description="Fine-tune, evaluate and use BERT sentiment "
                                "classifiers (GLUE SST-2), as in the notebook series.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict}")

    t = sub.add_parser("train", help="fine-tune on SST-2 (notebook 04's recipe)",
                       description="Fine-tune a pretrained BERT on SST-2 with notebook 04's recipe; options "
                       "override the mode's defaults. Prints the final metrics as one JSON object.")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="quick recipe: 6,000 training rows, 1 epoch, max length 64 (the default unless "
                      "LLM_TRANSFER_MODE=full)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="full recipe: the whole train split, 3 epochs at lr 5e-5, max length 128")
    t.add_argument("--model", help="'bundled' (all-MiniLM-L6-v2), a hub id or a local model folder")
    t.add_argument("--data", help="a GLUE SST-2 folder (train.tsv, dev.tsv, test.tsv) or 'hub'")
    t.add_argument("--epochs", type=_positive_int, help="passes over the training rows")
    t.add_argument("--batch-size", type=_positive_int, help="training rows per optimizer step")
    t.add_argument("--lr", type=_positive_float, help="peak learning rate")
    t.add_argument("--max-length", type=_positive_int, help="truncate sentences to this many tokens")
    t.add_argument("--train-rows", type=_positive_int, help="train on a random subset of this many rows")
    t.add_argument("--eval-rows", type=_positive_int,
                   help="evaluate each epoch on a random subset of the dev split")
    t.add_argument("--seed", type=int, help="seed for the data subset, the new head and the batch order")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--output", type=Path, help="checkpoint folder (best/ and last/ go inside); default: "
                   "artifacts/<mode>/sst2-finetune, the folder notebooks 04 and 05 use, or "
                   "artifacts/<mode>/cli-finetune when a recipe option is changed; rerunning resumes")
    t.add_argument("--checkpoint-steps", type=_positive_int, metavar="N",
                   help="also save a resumable last/ every N optimizer steps (default: only by time, see "
                   "--checkpoint-minutes, and at each epoch's end)")
    t.add_argument("--checkpoint-minutes", type=_positive_float, metavar="M",
                   help="save a resumable last/ every M minutes of training (default 10); Ctrl-C and SIGTERM "
                   "also save it, after the current step, and exit with status 130 and 143")

    e = sub.add_parser("evaluate", help="accuracy, F1 and calibration error on a labelled TSV file",
                       description="Evaluate a checkpoint on a GLUE-style TSV file (header "
                       "'sentence<TAB>label', labels 0/1). Prints one JSON object: accuracy, f1 (positive "
                       "class), ece (15 bins), n.")
    e.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint folder written by training")
    e.add_argument("--data", type=Path, required=True, help="TSV file with a 'sentence<TAB>label' header")
    e.add_argument("--batch-size", type=_positive_int, default=128)
    _add_weights_options(e)

    r = sub.add_parser("predict", help="label new sentences",
                       description="Predict the sentiment of sentences given as arguments or in a file (one "
                       "per line). Prints one line per input: label, probability of that label, text.")
    r.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint folder written by training")
    r.add_argument("texts", nargs="*", metavar="TEXT", help="sentences to classify")
    r.add_argument("--file", type=Path, help="a UTF-8 text file with one sentence per line")
    r.add_argument("--json", action="store_true", help="print JSON lines instead of tab-separated text")
    r.add_argument("--batch-size", type=_positive_int, default=128)
    _add_weights_options(r)
    return p


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


def _load(folder: Path) -> tuple:
    """(model, tokenizer, max_length) of a checkpoint this project wrote, or a CLIError saying why not."""
    from .checkpoints import MARKER, load_checkpoint

    folder = folder.expanduser()
    if folder.is_dir() and not (folder / MARKER).is_file():
        hint = ""
        if (folder / "best" / MARKER).is_file():
            hint = f" (did you mean {folder / 'best'}?)"
        raise CLIError(f"{folder}: not a checkpoint written by {PROG} (no {MARKER}){hint}; pass the best/ or "
                       "last/ folder that `llm-transfer train` or notebook 04 wrote.")
    model, tokenizer = load_checkpoint(folder)  # raises CheckpointError for missing / damaged folders
    if model.config.num_labels != 2:
        raise CLIError(f"{folder}: the model has {model.config.num_labels} output classes; SST-2 needs 2.")
    try:
        max_length = int(json.loads((folder / "train_args.json").read_text())["max_length"])
    except (OSError, ValueError, KeyError):
        max_length = 128
    return model, tokenizer, max_length


def cmd_train(a: argparse.Namespace) -> int:
    """Fine-tune and print the final metrics."""
    from . import hardware
    from .checkpoints import run_lock
    from .data import load_sst2, subsample, tokenize
    from .identity import IdentityError, describe_mismatch
    from .models import load_classifier, load_tokenizer
    from .recipes import finetune_run, sst2_recipe
    from .settings import get_settings, quiet_libraries, seed_everything
    from .training import fine_tune

    quiet_libraries()
    S = get_settings(data=a.data, model=a.model, mode=a.mode, device=a.device, seed=a.seed)
    hardware.set_threads(S.threads)  # LLM_TRANSFER_THREADS, as in the notebooks
    cfg, rows = sst2_recipe(S)
    overrides = {"epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "max_length": a.max_length}
    changed = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(cfg, **changed)
    rows = a.train_rows or rows
    custom = bool(changed) or a.train_rows is not None or a.eval_rows is not None
    # notebooks 04 and 05 reuse the default folder: keep it for the recipe exactly as written
    out = a.output if a.output is not None else S.run_dir("cli-finetune" if custom else finetune_run(S))
    main_process = hardware.launch()[1] == 0  # `accelerate launch`: the main process speaks
    log = lambda *m: print(*m, file=sys.stderr) if main_process else None  # noqa: E731  (stdout: the JSON result)
    log(S.summary())
    dsd = load_sst2(S.data)
    with run_lock(out, log=log):  # first: an unwritable --output fails in one line before the model loads
        tokenizer = load_tokenizer(S.model)
        train = tokenize(subsample(dsd["train"], rows, S.seed), tokenizer, cfg.max_length)
        dev = tokenize(subsample(dsd["validation"], a.eval_rows, S.seed), tokenizer, cfg.max_length)
        seed_everything(S.seed)
        model = load_classifier(S.model)
        every = {"checkpoint_steps": a.checkpoint_steps}
        if a.checkpoint_minutes is not None:
            every["checkpoint_minutes"] = a.checkpoint_minutes
        try:
            res = fine_tune(model, tokenizer, train, dev, cfg, output_dir=out, device=S.device, log=log, **every)
        except IdentityError as e:  # the folder holds another run: say what differs, and the CLI's way out
            raise CLIError(f"{describe_mismatch(e.folder, e.differences)}; pass another --output to start a new run "
                           "there (or delete that folder).") from None
    best = res.best
    if not main_process:
        return 0
    print(json.dumps({"best_checkpoint": str(res.best_dir), "last_checkpoint": str(res.last_dir),
                      "best_epoch": best["epoch"], "eval_accuracy": best["eval_accuracy"],
                      "eval_loss": best["eval_loss"], "eval_rows": len(dev), "train_rows": len(train),
                      "epochs": cfg.epochs, "train_seconds": round(res.train_seconds, 1)}))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Print accuracy, F1, ECE and n for a labelled TSV file as one JSON object."""
    from sklearn.metrics import f1_score

    from .calibration import expected_calibration_error, softmax
    from .data import read_glue_tsv, tokenize
    from .settings import quiet_libraries
    from .training import predict_logits

    quiet_libraries()
    ds = read_glue_tsv(a.data, "validation")  # raises DataError naming the file and line
    model, tokenizer, max_length = _load(a.checkpoint)
    model = _with_weights(model, a.weights)
    logits = predict_logits(model, tokenizer, tokenize(ds, tokenizer, max_length), batch_size=a.batch_size)
    probs, labels = softmax(logits), np.asarray(ds["label"])
    pred = probs.argmax(-1)
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


def cmd_predict(a: argparse.Namespace) -> int:
    """Print label and probability for each input text."""
    from .data import LABEL_NAMES
    from .settings import quiet_libraries
    from .training import predict_proba

    if a.file is not None and a.texts:
        raise CLIError("give sentences either as arguments or with --file, not both.")
    texts = _read_texts(a.file) if a.file is not None else list(a.texts)
    if not texts:
        raise CLIError("no text to classify; pass sentences as arguments or --file FILE (one per line).")
    for i, t in enumerate(texts, start=1):
        if not t.strip():
            raise CLIError(f"text argument {i} is empty; every sentence needs some words.")
    quiet_libraries()
    model, tokenizer, max_length = _load(a.checkpoint)
    model = _with_weights(model, a.weights)
    probs = predict_proba(model, tokenizer, texts, max_length=max_length, batch_size=a.batch_size)
    for text, p in zip(texts, probs, strict=True):
        k = int(p.argmax())
        if a.json:
            print(json.dumps({"text": text, "label": LABEL_NAMES[k], "probability": round(float(p[k]), 4),
                              "p_positive": round(float(p[1]), 4)}))
        else:
            print(f"{LABEL_NAMES[k]}\t{p[k]:.4f}\t{text}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}


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
