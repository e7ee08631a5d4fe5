#!/usr/bin/env bash
# Install the package the way a Colab user does, from a git URL (non-editable), into a fresh virtual environment,
# and run one notebook in quick mode from a folder outside any checkout. Catches what an editable install hides:
# files missing from the built wheel, paths found relative to the source tree, data looked up next to the checkout.
#
#   bash scripts/check_git_install.sh        # clones HEAD of this checkout (commit your changes first)
#
# Colab's first cell runs `%pip install "llm-transfer @ git+https://github.com/..."`; here the URL is
# git+file://<fresh clone of HEAD>. torch is installed first (TORCH_SPEC, default torch==2.13.0, the CPU wheel on
# this machine) so pip keeps it. The copied notebook cannot find ../shared/data from its folder, so
# LLM_TRANSFER_DATA must name the GLUE SST-2 folder (default: ../shared/data/glue/SST-2 next to this checkout).
# Environment: GIT_INSTALL_DIR (default /tmp/llm-transfer-git-install, deleted and rebuilt), GIT_INSTALL_NOTEBOOK
# (default 04_bert_sst2_finetune.ipynb).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${GIT_INSTALL_DIR:-/tmp/llm-transfer-git-install}"
NOTEBOOK="${GIT_INSTALL_NOTEBOOK:-04_bert_sst2_finetune.ipynb}"
export LLM_TRANSFER_DATA="${LLM_TRANSFER_DATA:-$(cd "$ROOT/.." && pwd)/shared/data/glue/SST-2}"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" LLM_TRANSFER_THREADS="${LLM_TRANSFER_THREADS:-1}"
export LLM_TRANSFER_MODE=quick
[ -d "$LLM_TRANSFER_DATA" ] || { echo "no SST-2 folder at $LLM_TRANSFER_DATA; set LLM_TRANSFER_DATA" >&2; exit 2; }
START=$SECONDS

rm -rf "$WORK"
mkdir -p "$WORK/run"
git clone -q "$ROOT" "$WORK/clone"
echo "== cloned $(git -C "$WORK/clone" rev-parse --short HEAD)"
python3 -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
pip_install() { "$PY" -m pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }  # fails if pip does
# A current pip, as on Colab (Python 3.11's bundled pip 23.2 rejects a git+file:/// URL: "Invalid requirement").
pip_install --upgrade pip
pip_install "${TORCH_SPEC:-torch==2.13.0}"
# Exactly what the notebooks' setup cell runs on Colab, with the clone's address in place of GitHub's.
pip_install "llm-transfer @ git+file://$WORK/clone"
# The notebook runner (a Colab kernel already has one; nbclient and ipykernel are dev extras, not dependencies).
pip_install nbclient ipykernel
echo "== installed in $((SECONDS - START)) s"

cd "$WORK/run"
cp "$WORK/clone/notebooks/$NOTEBOOK" .
# The package must come from site-packages (not from the clone or this checkout), and find its bundled model.
"$PY" - <<'EOF'
import importlib.metadata as m
from pathlib import Path

import llm_transfer
from llm_transfer.settings import get_settings, project_root

where = Path(llm_transfer.__file__).resolve()
assert "site-packages" in where.parts, f"llm_transfer imported from {where}, not from the installed wheel"
assert project_root() is None, f"project_root() found {project_root()} outside any checkout"
url = m.distribution("llm-transfer").read_text("direct_url.json")
assert url and "git" in url and '"editable": true' not in url, url
print(f"== import llm_transfer {llm_transfer.__version__} from {where.parent}; settings: {get_settings().summary()}")
EOF
T0=$SECONDS
"$PY" - "$NOTEBOOK" <<'EOF'
import sys

import nbformat
from nbclient import NotebookClient

name = sys.argv[1]
nb = nbformat.read(name, as_version=4)
NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
nbformat.write(nb, "executed-" + name)
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
assert not errors, errors
print(f"== {name}: {sum(c.cell_type == 'code' for c in nb.cells)} code cells ran without error")
EOF
echo "== notebook ran in $((SECONDS - T0)) s; git install check passed in $((SECONDS - START)) s"
