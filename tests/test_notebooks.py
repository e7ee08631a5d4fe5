"""The committed notebooks, read as a reader on GitHub sees them: full-mode outputs that can be trusted.

Fails on: an absolute path or an object repr in an output, an error output, a missing provenance or wall-time
line, outputs from a quick-mode run, a setup cell or Colab badge that disagrees with pyproject.toml, and a number in
the README's Results table that no notebook output contains.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from llm_transfer.notebook import FINISH_PREFIX, PROVENANCE_PREFIX

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Absolute paths of a machine: POSIX roots a checkout or home lives under, and Windows drives.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~])(/(?:work|root|home|Users|tmp|mnt|content|opt|var|private)/[\w.-]+"
                           r"|[A-Z]:\\[\w.-]+)")
OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>|at 0x[0-9a-f]{6,}>")


def output_text(output) -> str:
    """The text a reader sees of one output (stream text, text/plain, error traceback)."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    return "".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))


def all_outputs(path: Path) -> list[tuple[int, str]]:
    """(cell index, text) for every output of every code cell."""
    nb = nbformat.read(path, as_version=4)
    return [(i, output_text(o)) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])]


def test_the_series_is_numbered_without_gaps():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_no_absolute_paths_reprs_or_errors_in_outputs(path):
    bad = []
    for i, text in all_outputs(path):
        for m in ABSOLUTE_PATH.finditer(text):
            bad.append(f"cell {i}: absolute path {m.group(0)!r}")
        for m in OBJECT_REPR.finditer(text):
            bad.append(f"cell {i}: object repr {m.group(0)!r}")
        if "Traceback (most recent call last)" in text or "Error:" in text.split("\n", 1)[0]:
            bad.append(f"cell {i}: error output")
    nb = nbformat.read(path, as_version=4)
    bad += [f"cell {i}: error output" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]
    assert not bad, f"{path.name}: " + "; ".join(bad[:10])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_first_output_is_full_mode_provenance_and_last_is_wall_time(path):
    outs = [t for _, t in all_outputs(path) if t.strip()]
    assert outs, f"{path.name} has no outputs: commit it after a full-mode run (bash scripts/run_series.sh full)"
    assert PROVENANCE_PREFIX in outs[0], f"{path.name}: first output lacks the provenance line: {outs[0][:200]!r}"
    assert "a full-mode run" in outs[0], f"{path.name}: committed outputs must come from a full-mode run"
    assert outs[-1].startswith(FINISH_PREFIX), f"{path.name}: last output is not the wall-time line: {outs[-1][:200]!r}"


def test_setup_cells_and_badges_follow_pyproject():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def results_numbers(readme: str) -> list[str]:
    """Decimal numbers (measured results) in the README's Results table rows."""
    section = readme.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\|\s*0\d\s*\|", line)]
    assert len(rows) == len(NOTEBOOKS), "the README's Results table should have one row per notebook"
    return [m.group(0) for row in rows for m in re.finditer(r"\d[\d,]*\.\d+", row)]


def test_readme_results_come_from_notebook_outputs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = "\n".join(t for p in NOTEBOOKS for _, t in all_outputs(p)).replace("\u2212", "-")
    missing = sorted({n for n in results_numbers(readme) if n not in text})
    assert not missing, f"README Results numbers found in no notebook output: {missing}"


def test_results_check_catches_a_made_up_number():
    n = len(NOTEBOOKS)
    fake = "\n## Results\n" + "".join(f"| 0{i} | acc **0.12345{i}** |\n" for i in range(1, n + 1)) + "\n## Next\n"
    assert results_numbers(fake) == [f"0.12345{i}" for i in range(1, n + 1)]


def test_notebook_04_runs_the_article_snippet_as_printed():
    """Section 1 of notebook 04 is the article's §5 code block as printed, only the model name from the settings."""
    article = Path(__file__).resolve().parents[1].parent / "shared" / "article" / "article.zh.md"
    if not article.is_file():
        pytest.skip(f"the source article is not at hand ({article.name} beside the checkout, under shared/article)")
    section = re.split(r"^## 5\.", article.read_text(encoding="utf-8"), maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"§5 of the article should hold one python block, found {len(blocks)}"
    assert blocks[0].count("'bert-base-uncased'") == 2
    snippet = blocks[0].replace("'bert-base-uncased'", "model_name").strip()

    def matches(nb) -> list[int]:
        return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() == snippet]

    nb = nbformat.read(ROOT / "notebooks" / "04_bert_sst2_finetune.ipynb", as_version=4)
    hits = matches(nb)
    assert len(hits) == 1, f"notebook 04: {len(hits)} code cells equal the article's §5 snippet, expected 1"
    nb.cells[hits[0]].source = nb.cells[hits[0]].source.replace("lr=1e-5", "lr=2e-5")  # the check notices a change
    assert matches(nb) == []
