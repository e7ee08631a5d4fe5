"""Make saved notebook outputs read as a person saw them: apply carriage returns, merge stream chunks.

Progress bars redraw a line with '\\r'; a saved notebook keeps every redraw. This keeps only what the last
redraw left on each line (a finished `leave=False` bar leaves nothing), so each bar ends as at most one line.
Usage: python scripts/tidy_outputs.py NOTEBOOK.ipynb [...]
"""

from __future__ import annotations

import sys

import nbformat


def resolve_cr(text: str) -> str:
    """Apply carriage returns line by line, as a terminal would; drop lines left blank by them."""
    out = []
    for line in text.split("\n"):
        if "\r" in line:
            line = line.split("\r")[-1]
            if not line.strip():
                continue
        out.append(line)
    return "\n".join(out)


def tidy(path: str) -> None:
    """Rewrite one notebook with tidied stream outputs."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and merged and merged[-1].output_type == "stream" \
                    and merged[-1].name == o.name:
                merged[-1].text += o.text
            else:
                merged.append(o)
        for o in merged:
            if o.output_type == "stream":
                o.text = resolve_cr(o.text)
        cell.outputs = [o for o in merged if not (o.output_type == "stream" and not o.text.strip())]
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        tidy(p)
