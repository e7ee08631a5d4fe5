#!/usr/bin/env bash
# Install (scripts/install.sh) and run every test: the unit tests and each notebook in quick mode under nbval.
# With no arguments: two pytest processes side by side, one torch thread each (on 2 cores they finish sooner than
# one process with two threads: much of the work is small batches and Python). Stream A: the unit tests, then the
# notebooks built on notebook 04's checkpoint (01, 04, 05, 07); stream B: the others, in order (02 builds the
# language model 03 and 07 reuse; a notebook that finds an artefact missing builds it, so the split is only speed).
# With arguments, or TEST_PROCESSES=1: one process, e.g. `bash scripts/test.sh tests/test_data.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export LLM_TRANSFER_MODE=quick
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # no spin-waiting against other processes
PYTEST=(python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider --durations=10)
if [ "$#" -gt 0 ] || [ "${TEST_PROCESSES:-2}" = 1 ]; then
  exec "${PYTEST[@]}" tests notebooks "$@"
fi
a=(tests)
b=()
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  case "$(basename "$nb" | cut -c1-2)" in 01|04|05|07) a+=("$nb") ;; *) b+=("$nb") ;; esac
done
logs="$(mktemp -d)"
start=$(date +%s)
OMP_NUM_THREADS=1 "${PYTEST[@]}" "${a[@]}" > "$logs/a.log" 2>&1 &
pid_a=$!
OMP_NUM_THREADS=1 "${PYTEST[@]}" "${b[@]}" > "$logs/b.log" 2>&1 &
pid_b=$!
trap 'kill "$pid_a" "$pid_b" 2>/dev/null || true' INT TERM
status_a=0
status_b=0
wait "$pid_a" || status_a=$?
end_a=$(date +%s)
wait "$pid_b" || status_b=$?
end_b=$(date +%s)
echo "===== stream A: ${a[*]} ($(( end_a - start )) s) ====="
cat "$logs/a.log"
echo "===== stream B: ${b[*]} ($(( end_b - start )) s) ====="
cat "$logs/b.log"
rm -rf "$logs"
echo "stream A exit $status_a, stream B exit $status_b; $(( $(date +%s) - start )) s of pytest in all"
[ "$status_a" = 0 ] && [ "$status_b" = 0 ]
