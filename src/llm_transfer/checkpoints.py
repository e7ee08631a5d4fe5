"""Checkpoint folders: safetensors weights, tokenizer, config, metrics and arguments, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .models import ModelError
from .settings import display_path

MARKER = "checkpoint.json"  # written last: a folder without it is not a complete checkpoint
STATE_TENSORS, STATE_JSON = "optimizer.safetensors", "training_state.json"


class CheckpointError(ModelError):
    """A checkpoint folder that is missing, foreign or damaged."""


def atomic_dir(final: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary sibling folder, then swap it in with renames: never a half-written `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o755)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def recover(final: str | os.PathLike) -> Path | None:
    """The complete checkpoint at `final`, or the one a kill between two renames left aside; None if neither."""
    final = Path(final)
    if (final / MARKER).is_file():
        return final
    olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        if (old / MARKER).is_file():
            if not final.exists():
                os.rename(old, final)
                return final
            return old
    return None


def _optimizer_to_files(optimizer, scheduler, folder: Path, extra: dict) -> None:
    """Optimizer tensors as safetensors, everything else (step counts, groups, schedule) as JSON: no pickle."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(folder / STATE_TENSORS))
    state = {"param_groups": sd["param_groups"], "scalars": scalars,
             "scheduler": scheduler.state_dict() if scheduler is not None else None, **extra}
    (folder / STATE_JSON).write_text(json.dumps(state, indent=1))


def load_training_state(folder: str | os.PathLike, optimizer, scheduler) -> dict:
    """Restore optimizer and scheduler from a checkpoint; return the JSON extras (epoch, history...)."""
    folder = Path(folder)
    state = json.loads((folder / STATE_JSON).read_text())
    tensors = load_file(str(folder / STATE_TENSORS))
    per_param: dict[int, dict] = {}
    for key, v in list(tensors.items()) + list(state.pop("scalars").items()):
        pid, name = key.split(".", 1)
        per_param.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    sched = state.pop("scheduler")
    if scheduler is not None and sched is not None:
        scheduler.load_state_dict(sched)
    return state


def save_checkpoint(folder: str | os.PathLike, model, tokenizer, metrics: dict, args: dict,
                    optimizer=None, scheduler=None, extra: dict | None = None) -> Path:
    """Write a complete checkpoint folder atomically (weights as safetensors; optional resume state)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "train_args.json").write_text(json.dumps(args, indent=1, default=str))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        if optimizer is not None:
            _optimizer_to_files(optimizer, scheduler, tmp, extra or {})
        (tmp / MARKER).write_text(json.dumps({"format": "llm-transfer/1", "metrics": metrics}, indent=1))

    return atomic_dir(folder, write)


def load_checkpoint(folder: str | os.PathLike, device: str = "cpu"):
    """Load (model, tokenizer) from a checkpoint folder, with a clear error for missing or damaged ones."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found; train one first (notebook 04 or "
                              "`llm-transfer train`) or check the path.")
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder}: not a model checkpoint (needs config.json and model.safetensors); "
                              "point to a folder written by this project's training.")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:
        raise CheckpointError(f"{folder}: checkpoint is damaged or incomplete ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]}); re-run the training that wrote it.") from e
    return model.to(device).eval(), tokenizer


def read_metrics(folder: str | os.PathLike) -> dict:
    """The metrics.json of a checkpoint folder."""
    return json.loads((Path(folder) / "metrics.json").read_text())


_HELD: set[str] = set()  # run folders this process holds the lock of (the lock is re-entrant per process)


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold an exclusive lock on a run folder while training into or checking it.

    Two notebooks started side by side (03 and 05 both need notebook 04's checkpoint) would otherwise train the
    same run into the same folder at once; the second one waits for the first and then reuses its result. The lock
    is a sibling file `.<name>.lock`, released by the OS when the process ends (a killed run leaves no stale lock).
    """
    folder = Path(folder).resolve()
    key = str(folder)
    if key in _HELD or fcntl is None:  # re-entrant; no fcntl (Windows): no cross-process lock
        yield
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is training in {display_path(folder)}: waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fh, fcntl.LOCK_UN)
