#!/usr/bin/env bash
# The provisioning bench with the ansible-core comparison: installs ansible-core from PyPI into
# a virtualenv (cached in ${DATARUN_IMAGE_CACHE:-~/.cache/datarun}/ansible-venv), then runs
# `cargo bench --bench provision` with BENCH_ANSIBLE pointing at its ansible-playbook, which
# times benches/ansible/provision.yml on the same hosts after datarun's unchanged re-runs.
# Not part of the tests. Extra arguments go to cargo bench.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${DATARUN_IMAGE_CACHE:-$HOME/.cache/datarun}
venv=$cache/ansible-venv
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q ansible-core
fi
"$venv/bin/ansible-playbook" --version | head -1
./images/build-sshd.sh
./images/build-busybox.sh
BENCH_ANSIBLE="$venv/bin/ansible-playbook" cargo bench --bench provision "$@"
