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

ids=()
for fold in 0 1 2 3 4; do
  # Inputs land in the fold's input/ directory; the fold runs with its attempt dir as cwd.
  ids+=("$("$bin" submit --input examples/linear/data.csv --input examples/linear/fold.py \
          --memory 128M --hard-limit 1m -- python3 input/fold.py "$fold" 5)")
done
echo "submitted folds: ${ids[*]}"
"$bin" queue wait --timeout 2m "${ids[@]}"
"$bin" queue status
echo
"$bin" queue status --all
echo
"$bin" fold show "${ids[0]}"
echo
for id in "${ids[@]}"; do "$bin" fold output "$id" score.json; echo; done
