#!/usr/bin/env bash
# Install (scripts/install.sh) and run every test: the unit tests, then each notebook in quick mode under nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export LLM_TRANSFER_MODE=quick
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # no spin-waiting against other processes
python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider --durations=10 "$@"
