#!/usr/bin/env bash
# The quickstart: builds datarun, starts a master on the embedded default (SQLite in a fresh
# data dir, this machine as the only runner), runs a 5-fold cross-validation of
# examples/linear through the real queue, shows the results, and stops the master.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/datarun
export DATARUN_DATA_DIR="${DATARUN_DATA_DIR:-$(mktemp -d)/datarun}"
"$bin" serve --listen 127.0.0.1:0 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null || true' EXIT
until [ -s "$DATARUN_DATA_DIR/server" ]; do sleep 0.1; done

# One array of five folds: each gets its index in $DATARUN_ARRAY_INDEX. Inputs land in the
# fold's input/ directory; the fold runs with its attempt dir as cwd.
mapfile -t ids < <("$bin" submit --array 0-4 --input examples/linear/data.csv \
    --input examples/linear/fold.py --memory 128M --hard-limit 1m \
    -- sh -c 'python3 input/fold.py "$DATARUN_ARRAY_INDEX" 5')
echo "submitted folds: ${ids[*]}"
# A report fold that waits for all five and takes their scores as inputs.
from=()
for id in "${ids[@]}"; do from+=(--input-from "$id:score.json=score-${id#*.}.json"); done
report=$("$bin" submit "${from[@]}" --memory 64M -- sh -c 'for f in input/score-*.json; do cat "$f"; echo; done > "$DATARUN_OUTPUT/report.txt"')
echo "report fold: $report (waits for the five)"
"$bin" queue wait --timeout 2m "${ids[@]}" "$report"
"$bin" queue status
echo
"$bin" queue status --all
echo
"$bin" fold show "${ids[0]}"
echo
echo "report.txt of fold $report:"
"$bin" fold output "$report" report.txt
