#!/usr/bin/env bash
# Install (scripts/install.sh) and run the whole series headless, in order.
#   bash scripts/run_series.sh quick   -> executed copies in artifacts/executed/ (minutes)
#   bash scripts/run_series.sh full    -> notebooks/ rewritten in place with full-mode outputs (hours on 2 CPU cores)
# Optional: a list of notebook numbers after the mode, e.g. `bash scripts/run_series.sh full 04 05`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-quick}"; shift || true
case "$MODE" in quick|full) ;; *) echo "usage: $0 [quick|full] [NN ...]" >&2; exit 2;; esac
bash scripts/install.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export LLM_TRANSFER_MODE="$MODE"
mkdir -p artifacts/executed
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  num="$(basename "$nb" | cut -c1-2)"
  if [ "$#" -gt 0 ] && [[ ! " $* " == *" $num "* ]]; then continue; fi
  start=$(date +%s)
  if [ "$MODE" = full ]; then
    jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 "$nb"
    python scripts/tidy_outputs.py "$nb"
  else
    jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
      --output-dir artifacts/executed "$nb"
    python scripts/tidy_outputs.py "artifacts/executed/$(basename "$nb")"
  fi
  echo "$nb: $MODE mode, $(( $(date +%s) - start )) s"
done
