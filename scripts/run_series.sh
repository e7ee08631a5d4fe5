#!/usr/bin/env bash
# Install (scripts/install.sh) and run the whole series headless, in order.
#   bash scripts/run_series.sh quick   -> executed copies in artifacts/executed/ (minutes)
#   bash scripts/run_series.sh full    -> notebooks/ rewritten in place with full-mode outputs (about 80 min on 2 idle CPU cores)
# Optional: a list of notebook numbers after the mode, e.g. `bash scripts/run_series.sh full 04 05`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-quick}"; shift || true
case "$MODE" in quick|full) ;; *) echo "usage: $0 [quick|full] [NN ...]" >&2; exit 2;; esac
bash scripts/install.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export LLM_TRANSFER_MODE="$MODE"
# Threads wait passively instead of spinning: a second busy process on the cores then costs little (README).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
mkdir -p artifacts/executed "artifacts/$MODE"
TIMES="artifacts/$MODE/series_times.tsv"   # one line per notebook run: wall time, threads, machine, date
[ -f "$TIMES" ] || printf 'notebook\tmode\tseconds\tthreads\tcpu\tfinished_utc\n' > "$TIMES"
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
  secs=$(( $(date +%s) - start ))
  cpu="$(python -c 'from llm_transfer.hardware import cpu_model; print(cpu_model())')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$nb")" "$MODE" "$secs" "${LLM_TRANSFER_THREADS:-default}" "$cpu" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" >> "$TIMES"
  echo "$nb: $MODE mode, $secs s (appended to $TIMES)"
done
