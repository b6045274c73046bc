#!/usr/bin/env bash
# The test command (README): prepares what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --lib --bins --tests --no-fail-fast "$@"
