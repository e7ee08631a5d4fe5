"""What a run holds (model, exact data rows, seed, recipe), compared before a run is resumed or reused.

A checkpoint records its identity in `identity.json`. Resuming (`training.fine_tune`) and reusing (`recipes.
ensure_finetuned`, `lm.get_pretrained_lm`) compare it with the identity of what they are about to do and refuse, or
rebuild, on any difference, with one line naming what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoints import CheckpointError
from .settings import display_path

IDENTITY = "identity.json"
_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> SHA-256: each file hashed once


class IdentityError(CheckpointError):
    """A checkpoint that holds another run (other model, data rows, seed or recipe) or records no identity."""

    def __init__(self, message: str, folder: Path, differences: list[str]):
        super().__init__(message)
        self.folder, self.differences = folder, differences


# Recipe fields added after runs were saved: recorded only when they differ from these defaults (training.py's
# recipe_fields), so every earlier run keeps its identity; a missing one reads as its default.
LATER_RECIPE_DEFAULTS = {"freeze_word_embeddings": False}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, remembered per (path, mtime, size) so a weights file is read once per process."""
    from .models import sha256_file

    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(p)
    return _FILE_HASHES[key]


def _weights_files(source: str) -> list[Path]:
    """The safetensors weights a model source loads from: a local folder's, or a hub id's cached snapshot's."""
    p = Path(source).expanduser()
    if p.is_dir():
        single = p / "model.safetensors"
        return [single] if single.is_file() else sorted(p.glob("model-*-of-*.safetensors"))
    if p.is_file():
        return [p]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "model.safetensors")
    except Exception:  # not a valid repo id, no cache: no file to hash
        return []
    return [Path(cached)] if isinstance(cached, str) else []


def weights_sha256(source: str | os.PathLike | None) -> str | None:
    """SHA-256 of a model source's weights file (several shards: of their hashes), or None when there is none."""
    files = _weights_files(str(source)) if source else []
    if not files:
        return None
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("".join(f"{f.name}:{file_sha256(f)}\n" for f in files).encode()).hexdigest()


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's tensors as they are now (names, dtypes, shapes and bytes, in state_dict order)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_name(source: str | os.PathLike | None, sha256: str | None) -> str:
    """A readable name for a model source (the bundled MiniLM by name, folders relative to the checkout)."""
    from .models import BUNDLED_NAME, BUNDLED_SHA256

    if sha256 == BUNDLED_SHA256:
        return f"{BUNDLED_NAME} (bundled)"
    return display_path(source) if source else "a model built in memory"


def model_identity(model: torch.nn.Module | None = None, source: str | os.PathLike | None = None) -> dict:
    """{name, sha256 of the weights file, start_sha256 of the weights in memory} (start_sha256 only with a model).

    The file hash names the pretrained model; the in-memory hash also covers the new head's initialisation (the
    seed), a random initialisation and a model built in memory. Without a model (a reuse check), it is left out.
    """
    if source is None and model is not None:
        source = getattr(model, "name_or_path", "") or None
    sha = weights_sha256(source)
    ident = {"name": model_name(source, sha) if sha or model is None else type(model).__name__, "sha256": sha}
    if model is not None:
        ident["start_sha256"] = state_sha256(model)
    return ident


def rows_fingerprint(rows) -> str:
    """SHA-256 of the exact rows, in order: a tokenized dataset's input_ids and labels, or lists of token ids."""
    h = hashlib.sha256()
    if hasattr(rows, "with_format"):  # a 🤗 Dataset: read the columns as Arrow (fast; honours select/shuffle)
        import pyarrow.compute as pc

        table = rows.with_format("arrow")[:]
        ids = table.column("input_ids").combine_chunks()
        lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(ids).to_numpy(zero_copy_only=False)
        labels = table.column("label").to_numpy() if "label" in table.column_names else np.zeros(0)
    elif isinstance(rows, (np.ndarray, torch.Tensor)) and rows.ndim == 2:  # packed blocks: the same bytes, fast
        flat = np.asarray(rows).reshape(-1)
        lengths = np.full(len(rows), rows.shape[1])
        labels = np.zeros(0)
    else:
        seqs = [list(s) for s in rows]
        lengths = np.array([len(s) for s in seqs])
        flat = np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(lengths.sum()))
        labels = np.zeros(0)
    for part in (lengths, flat, labels):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes() + b"|")
    return h.hexdigest()


def data_source(ds) -> str:
    """Where a dataset's rows came from, as load_sst2 recorded it (a GLUE folder or the hub)."""
    return getattr(getattr(ds, "info", None), "description", "") or "rows given in memory"


def data_identity(train, evaluation, source: str | None = None) -> dict:
    """{source, rows and fingerprint of the training and evaluation rows}."""
    return {"source": source or data_source(train),
            "train_rows": len(train), "train_fingerprint": rows_fingerprint(train),
            "eval_rows": len(evaluation), "eval_fingerprint": rows_fingerprint(evaluation)}


def run_identity(model: dict, data: dict, seed: int, recipe: dict) -> dict:
    """The identity a checkpoint records: model, data, seed and recipe (the seed is not repeated in the recipe)."""
    return {"model": model, "data": data, "seed": seed,
            "recipe": json.loads(json.dumps({k: v for k, v in recipe.items() if k != "seed"}, default=str))}


def _short(h: str | None) -> str:
    """The first 12 hex digits of a hash ('none' when absent)."""
    return h[:12] if h else "none"


def differences(saved: dict, now: dict) -> list[str]:
    """What differs between a saved identity and the current one, in words; fields None now are not compared."""
    out = []
    sm, nm = saved.get("model") or {}, now.get("model") or {}
    if nm.get("sha256") is not None and sm.get("sha256") != nm.get("sha256"):
        out.append(f"another model ({sm.get('name')} {_short(sm.get('sha256'))} there, "
                   f"{nm.get('name')} {_short(nm.get('sha256'))} now)")
    elif (nm.get("start_sha256") is not None and sm.get("start_sha256") != nm.get("start_sha256")
          and saved.get("seed") == now.get("seed")):  # another seed explains another head initialisation
        out.append(f"another starting model (weights in memory {_short(sm.get('start_sha256'))} there, "
                   f"{_short(nm.get('start_sha256'))} now: another model, initialisation or seed before loading)")
    sd, nd = saved.get("data") or {}, now.get("data") or {}
    for split, words in (("train", "training"), ("eval", "evaluation")):
        if sd.get(f"{split}_fingerprint") != nd.get(f"{split}_fingerprint"):
            out.append(f"other {words} rows ({sd.get(f'{split}_rows')} rows {_short(sd.get(f'{split}_fingerprint'))} "
                       f"there, {nd.get(f'{split}_rows')} rows {_short(nd.get(f'{split}_fingerprint'))} now)")
    if saved.get("seed") != now.get("seed"):
        out.append(f"another seed ({saved.get('seed')} there, {now.get('seed')} now)")
    sr = {**LATER_RECIPE_DEFAULTS, **(saved.get("recipe") or {})}  # a field recorded only when not its default
    nr = {**LATER_RECIPE_DEFAULTS, **(now.get("recipe") or {})}
    changed = [f"{k}: {sr.get(k)!r} there, {nr.get(k)!r} now" for k in sorted(set(sr) | set(nr))
               if sr.get(k) != nr.get(k)]
    if changed:
        out.append(f"other arguments ({'; '.join(changed)})")
    return out


def read_identity(folder: str | os.PathLike) -> dict | None:
    """The identity.json of a checkpoint folder; None when it has none (written by an older version)."""
    path = Path(folder) / IDENTITY
    if not path.is_file():
        return None
    try:
        ident = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{display_path(path)}: unreadable ({type(e).__name__}); delete "
                              f"{display_path(folder)} and train again.") from None
    return ident if isinstance(ident, dict) else None


def mismatch(folder: str | os.PathLike, now: dict) -> list[str] | None:
    """The differences between the identity saved in `folder` and `now`: None if it matches, [] if none is saved."""
    saved = read_identity(folder)
    if saved is None:
        return []
    diffs = differences(saved, now)
    return diffs or None


def describe_mismatch(folder: str | os.PathLike, diffs: Sequence[str], what: str = "a run") -> str:
    """One line: the folder, then what it holds instead (or that it records nothing)."""
    if not diffs:
        return f"{display_path(folder)}: records no identity (written by an older version), so it may hold {what} " \
               "of another model or data"
    return f"{display_path(folder)}: holds {what} of {' and '.join(diffs)}"


def check_identity(folder: str | os.PathLike, now: dict, fix: str, what: str = "a run") -> None:
    """Raise IdentityError (one line: what differs, then `fix`) unless `folder` records the identity `now`."""
    diffs = mismatch(folder, now)
    if diffs is not None:
        raise IdentityError(f"{describe_mismatch(folder, diffs, what)}; {fix}", Path(folder), list(diffs))
