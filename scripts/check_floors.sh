#!/usr/bin/env bash
# Install the LOWEST versions pyproject.toml allows for every direct dependency (uv --resolution lowest-direct) into
# a fresh virtual environment, then run the unit tests and one quick notebook there. A pre-commit check: the lower
# bounds in pyproject are promises, and every other test runs on the newest releases.
#
#   bash scripts/check_floors.sh            # the declared floors (transformers 5.0, datasets 4.0, peft 0.13, ...)
#   bash scripts/check_floors.sh --colab    # Colab's versions: transformers 5.15.*, datasets 4.0.*, the rest newest
#
# torch is the exception: it is installed first as TORCH_SPEC (default torch==2.13.0, the one CPU wheel on this
# machine) and held there with a uv override, because any other torch release pulls gigabytes of CUDA packages.
# So the torch>=... floor is NOT tested by this script; test it by hand on a machine with a suitable torch wheel.
# Environment: FLOORS_DIR (default /tmp/llm-transfer-floors-<mode>, deleted and rebuilt), FLOORS_NOTEBOOK (default
# notebooks/04_bert_sst2_finetune.ipynb), FLOORS_KEEP=1 to reuse an existing environment instead of rebuilding it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODE=lowest
case "${1:-}" in
    "") ;;
    --colab) MODE=colab ;;
    *) echo "usage: $0 [--colab]" >&2; exit 2 ;;
esac
WORK="${FLOORS_DIR:-/tmp/llm-transfer-floors-$MODE}"
NOTEBOOK="${FLOORS_NOTEBOOK:-notebooks/04_bert_sst2_finetune.ipynb}"
PY="$WORK/venv/bin/python"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" LLM_TRANSFER_THREADS="${LLM_TRANSFER_THREADS:-1}"
START=$SECONDS

if [ "${FLOORS_KEEP:-0}" != 1 ] || [ ! -x "$PY" ]; then
    rm -rf "$WORK"
    mkdir -p "$WORK"
    python3 -m venv "$WORK/venv"
    "$PY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" uv 2>&1 | { grep -v '^WARNING: Location' || true; }
    # Hold the installed torch build exactly (local tag included, e.g. +cpu) whatever the other packages ask for.
    "$PY" -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > "$WORK/overrides.txt"
    : > "$WORK/constraints.txt"
    if [ "$MODE" = colab ]; then
        RESOLUTION=highest
        printf 'transformers==5.15.*\ndatasets==4.0.*\n' > "$WORK/constraints.txt"
    else
        # lowest-direct alone may still pick a newer release of a direct dependency while it backtracks (it chose
        # datasets 5.2 over 4.0 here): hold each one to its floor's release series (">=5.2" -> "==5.2.*").
        RESOLUTION=lowest-direct
        "$PY" - "$ROOT/pyproject.toml" > "$WORK/constraints.txt" <<'PYEOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for d in project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]:
    name, low = re.fullmatch(r"([\w.-]+)(?:\[[\w,]+\])?\s*>=\s*([\d.]+)", d).groups()
    if name != "torch":
        print(f"{name}=={low}.*")
PYEOF
    fi
    # uv does not read pip's configuration: pass on pip's local wheel folder (where torch's CPU wheel lies) if any.
    FIND_LINKS=()
    [ -n "${PIP_FIND_LINKS:-}" ] && FIND_LINKS=(--find-links "$PIP_FIND_LINKS")
    "$WORK/venv/bin/uv" pip install --quiet --python "$PY" --resolution "$RESOLUTION" \
        --override "$WORK/overrides.txt" --constraint "$WORK/constraints.txt" "${FIND_LINKS[@]}" -e "$ROOT[dev]"
fi
echo "== $MODE: installed in $((SECONDS - START)) s"

# The versions of every direct dependency (and numpy, which they share), as installed.
"$PY" - "$ROOT/pyproject.toml" <<'EOF'
import importlib.metadata as m, re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
declared = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
rows = [(re.split(r"[<>=\[ ;]", d)[0], d) for d in declared] + [("numpy", "(transitive)")]
print("\n".join(f"  {name:22s} {m.version(name):12s} declared {spec}" for name, spec in rows))
EOF

cd "$ROOT"
T0=$SECONDS
"$PY" -m pytest tests -p no:cacheprovider -x -q --ignore=tests/test_notebooks.py
echo "== $MODE: unit tests passed in $((SECONDS - T0)) s"
T0=$SECONDS
LLM_TRANSFER_MODE=quick "$PY" -m pytest -p no:cacheprovider -q --nbval-lax --nbval-current-env "$NOTEBOOK"
echo "== $MODE: $NOTEBOOK (quick) passed in $((SECONDS - T0)) s"
echo "== $MODE: floor check passed in $((SECONDS - START)) s"
