"""Checkpoint folders: safetensors weights, tokenizer, config, metrics and arguments, written atomically."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .hardware import launch
from .models import ModelError
from .settings import display_path

MARKER = "checkpoint.json"  # written last: a folder without it is not a complete checkpoint
MANIFEST = "manifest.json"  # SHA-256 of every other file of the folder, written after them and checked on load
STATE_TENSORS, STATE_JSON = "optimizer.safetensors", "training_state.json"
_EVENT_HOOK: Callable[[str], None] | None = None  # tests: called at named moments of training and saving


class CheckpointError(ModelError):
    """A checkpoint folder that is missing, foreign or damaged; the message says how to fix it."""


class SaveError(CheckpointError):
    """A checkpoint (or a run folder's lock) that could not be written: disk full, folder not writable.

    One line: what happened, what is intact, how much space a save needs, and `fix`, what to do (training adds
    where a rerun resumes from).
    """

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what, fix)
        self.what, self.fix = what, fix

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}."


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST)  # a file where a folder of the path should be


def os_error(e: BaseException) -> OSError | None:
    """The OSError behind a failed write (safetensors reports one as 'SafetensorError: ... (os error 28)'), or None."""
    if isinstance(e, OSError):
        return e
    if isinstance(e, SafetensorError):
        m = re.search(r"os error (\d+)|Os \{ code: (\d+)", str(e))
        if m:
            code = int(m[1] or m[2])
            return OSError(code, os.strerror(code))
    return None


def _reason(e: OSError, folder: Path | None = None) -> str:
    """'no space left on device', 'permission denied', 'x is a file, not a folder': what went wrong, lower case."""
    if e.errno in _IN_THE_WAY and folder is not None:
        for p in (folder, *folder.parents):
            if p.exists() and not p.is_dir():
                return f"{display_path(p)} is a file, not a folder"
    return (e.strerror or type(e).__name__).lower()


def _fix(e: OSError) -> str:
    """What to do about a failed write, by its cause."""
    if e.errno in _IN_THE_WAY:
        return "pass another output folder (or move that file away) and run the same command again"
    if e.errno in _NO_SPACE:
        return "free some space there (or pass another output folder) and run the same command again"
    if e.errno in _READ_ONLY:
        return "make that folder writable (or pass another output folder) and run the same command again"
    return "fix that (or pass another output folder) and run the same command again"


def _size(n: float) -> str:
    """Bytes as '1.2 GB', '87 MB', '310 kB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.{1 if unit == 'GB' else 0}f} {unit}"
    return f"{max(n, 1e3) / 1e3:.0f} kB"


def folder_bytes(folder: Path) -> int:
    """The size of every file under `folder` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _save_error(final: Path, e: OSError, needs: int, started: bool) -> SaveError:
    """The SaveError for a failed save of `final` (whose earlier copy, if any, is still in place)."""
    where = display_path(final)
    intact = f"the previous {where} is intact" if final.exists() else f"there is no previous {where}"
    removed = "the half-written copy was removed and " if started else ""
    try:
        free = f", {_size(shutil.disk_usage(final.parent).free)} free now"
    except OSError:
        free = ""
    return SaveError(f"{where}: could not save ({_reason(e, final.parent)}); {removed}{intact}; a save there needs "
                     f"about {_size(needs)}{free}", _fix(e))


def set_event_hook(hook: Callable[[str], None] | None) -> None:
    """Call `hook(name)` at named moments ('save:aside last', 'step 1.3'...): the kill test's trigger."""
    global _EVENT_HOOK
    _EVENT_HOOK = hook


def event(name: str) -> None:
    """Report a named moment to the event hook, if one is set."""
    if _EVENT_HOOK is not None:
        _EVENT_HOOK(name)


def _fsync(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk; a no-op where the OS cannot open folders (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(folder: Path) -> dict[str, str]:
    """Hash every file of `folder` (sub-folders too) into MANIFEST; return {relative path: SHA-256}."""
    from .models import sha256_file

    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"sha256": files}, indent=1))
    return files


def verify_manifest(folder: str | os.PathLike) -> bool:
    """Check every file against MANIFEST (CheckpointError naming the damaged file); False if there is none."""
    from .models import sha256_file

    folder = Path(folder)
    where = display_path(folder)
    fix = f"delete {where} (or restore it from a copy) and train again"
    if not (folder / MANIFEST).is_file():
        return False
    try:
        files = json.loads((folder / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where}/{MANIFEST}: unreadable ({type(e).__name__}); {fix}.") from None
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{where}/{name}: missing, though {MANIFEST} lists it; {fix}.")
        if sha256_file(path) != expected:
            raise CheckpointError(f"{where}/{name}: damaged (its SHA-256 differs from the one in {MANIFEST}); {fix}.")
    return True


def atomic_dir(final: str | os.PathLike, write: Callable[[Path], None], manifest: bool = False,
               needs: int = 0) -> Path:
    """Let `write` fill a temporary sibling folder, then swap it in with renames: never a half-written `final`.

    Every file and the folder are fsynced before the renames, so a power cut cannot leave renamed-but-empty files;
    `manifest=True` adds MANIFEST (SHA-256 of each file) for `verify_manifest`. A write that fails in the OS (disk
    full, folder not writable) removes the temporary folder and raises SaveError, which says that the previous
    `final` is untouched and how much space a save needs (`needs` bytes, or the size of the previous copy).
    """
    final = Path(final)
    tmp = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        os.chmod(tmp, 0o755)
        write(tmp)
        event(f"save:files {final.name}")
        if manifest:
            write_manifest(tmp)
        for p in tmp.rglob("*"):
            _fsync(p)
        _fsync(tmp)
    except BaseException as e:
        written = folder_bytes(tmp) if tmp is not None else 0
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        cause = os_error(e)
        if cause is None:
            raise
        raise _save_error(final, cause, max(needs, written, folder_bytes(final)), tmp is not None) from None
    event(f"save:synced {final.name}")
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.rename(final, old)
        event(f"save:aside {final.name}")
    os.rename(tmp, final)
    _fsync(final.parent)
    event(f"save:renamed {final.name}")
    shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale(final: str | os.PathLike) -> list[Path]:
    """Delete what killed saves of `final` left behind: `.name.tmp-*` folders, and `.name.old-*` once `final` is whole.

    Call it only while no other process writes `final` (training holds the run folder's lock).
    """
    final = Path(final)
    stale = list(final.parent.glob(f".{final.name}.tmp-*"))
    if final.is_dir():
        stale += final.parent.glob(f".{final.name}.old-*")
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def recover(final: str | os.PathLike, marker: str = MARKER) -> Path | None:
    """The complete checkpoint at `final`, put back from where a kill between two renames left it; None if none.

    Stale temporary folders of `final` are removed on the way (see remove_stale).
    """
    final = Path(final)
    if not (final / marker).is_file():
        olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in olds:
            if (old / marker).is_file():
                if final.exists():  # a damaged folder at `final`: keep it aside, never delete it silently
                    os.rename(final, final.with_name(f".{final.name}.damaged-{uuid.uuid4().hex[:8]}"))
                os.rename(old, final)
                _fsync(final.parent)
                break
    remove_stale(final)
    return final if (final / marker).is_file() else None


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


def load_training_state(folder: str | os.PathLike, optimizer, scheduler, scaler=None) -> dict:
    """Restore optimizer, scheduler (and loss scaler) from a checkpoint; return the JSON extras (epoch, history...).

    A missing, truncated or foreign resume state is a CheckpointError that says what to delete.
    """
    folder = Path(folder)
    try:
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
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        state["epoch"], state["history"] = int(state["epoch"]), list(state["history"])
    except Exception as e:  # JSONDecodeError, KeyError, safetensors' and torch's own errors: one message
        detail = " ".join(f"{type(e).__name__}: {e}".split())[:160]
        raise CheckpointError(f"{display_path(folder)}: the resume state ({STATE_JSON}, {STATE_TENSORS}) is missing "
                              f"or damaged ({detail}); delete that folder to restart the run (or pass resume=False)."
                              ) from None
    return state


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors file into `model` strictly: a missing or unexpected tensor is a CheckpointError.

    Tensors tied to another one (saved once) count as present.
    """
    path = Path(path)
    try:
        weights = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{display_path(path)}: unreadable weights ({type(e).__name__}); delete "
                              f"{display_path(path.parent)} and train again.") from None
    own = model.state_dict()
    loaded_ptrs = {own[k].data_ptr() for k in weights if k in own}
    missing = [k for k in own if k not in weights and own[k].data_ptr() not in loaded_ptrs]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        say = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                        for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
        raise CheckpointError(f"{display_path(path)}: these weights do not fit the model ({say}); it holds another "
                              f"architecture: delete {display_path(path.parent)} or pass another output_dir.")
    try:
        model.load_state_dict(weights, strict=False)  # strict by the check above (tied tensors are saved once)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{display_path(path)}: these weights do not fit the model "
                              f"({' '.join(str(e).split())[:200]}); delete {display_path(path.parent)} or pass "
                              "another output_dir.") from None


def save_checkpoint(folder: str | os.PathLike, model, tokenizer, metrics: dict, args: dict,
                    optimizer=None, scheduler=None, extra: dict | None = None, identity: dict | None = None) -> Path:
    """Write a complete checkpoint folder atomically: weights as safetensors, identity, optional resume state.

    Files: the model's and tokenizer's, train_args.json, metrics.json, identity.json (what the run holds, see
    identity.py), optimizer.safetensors + training_state.json (with `optimizer`), checkpoint.json (written last)
    and manifest.json (SHA-256 of each file, checked by load_checkpoint and on resume).
    """

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "train_args.json").write_text(json.dumps({**args, "identity": identity} if identity else args,
                                                        indent=1, default=str))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        if identity is not None:
            (tmp / "identity.json").write_text(json.dumps(identity, indent=1, default=str))
        event(f"save:weights {Path(folder).name}")
        if optimizer is not None:
            _optimizer_to_files(optimizer, scheduler, tmp, extra or {})
        (tmp / MARKER).write_text(json.dumps({"format": "llm-transfer/2", "metrics": metrics}, indent=1))

    tensors = list(model.state_dict().values())
    if optimizer is not None:
        tensors += [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v)]
    return atomic_dir(folder, write, manifest=True, needs=_tensor_bytes(tensors) + 2**20)  # + tokenizer, JSON


def _tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes these tensors take on disk (a tensor tied to another one counted once)."""
    storages = {(t.device, t.untyped_storage().data_ptr()): t.numel() * t.element_size() for t in tensors}
    return sum(storages.values())


def load_checkpoint(folder: str | os.PathLike, device: str = "cpu"):
    """Load (model, tokenizer) from a checkpoint folder, with a clear error for missing or damaged ones.

    Files listed in the folder's manifest.json are checked against their SHA-256 first.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found; train one first (notebook 04 or "
                              "`llm-transfer train`) or check the path.")
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder}: not a model checkpoint (needs config.json and model.safetensors); "
                              "point to a folder written by this project's training.")
    verify_manifest(folder)
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


def _lock_file(folder: Path):
    """The run folder's lock file `.<name>.lock`, opened for appending (created if need be)."""
    return open(folder.with_name(f".{folder.name}.lock"), "a+")


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold an exclusive lock on a run folder while training into or checking it.

    Two notebooks started side by side (03 and 05 both need notebook 04's checkpoint) would otherwise train the
    same run into the same folder at once; the second one waits for the first and then reuses its result. The lock
    is a sibling file `.<name>.lock`, released by the OS when the process ends (a killed run leaves no stale lock).
    """
    folder = Path(folder).resolve()
    key = str(folder)
    launched_peer = launch()[1] != 0
    if key in _HELD or fcntl is None or launched_peer:  # re-entrant; no fcntl (Windows): no cross-process lock;
        yield  # the other processes of one `accelerate launch` train the same run as its main process, which locks
        return
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fh = _lock_file(folder)
    except OSError as e:  # a folder not writable, a file in the way, a full disk: one line, not a traceback
        raise SaveError(f"{display_path(folder)}: cannot write the run folder's lock file ({_reason(e, folder)}); "
                        "nothing was written", _fix(e)) from None
    with fh:
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
