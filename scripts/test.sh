#!/usr/bin/env bash
# The test command (README): prepares what the tests need, then runs every test.
# Tests use the real Docker engine; the images are built locally (no registry), once.
set -euo pipefail
cd "$(dirname "$0")/.."
./images/build-busybox.sh
./images/build-fold-python.sh
./images/build-sshd.sh
cargo nextest run --lib --bins --tests --no-fail-fast "$@"
