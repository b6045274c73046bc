#!/usr/bin/env bash
# Per-fold overhead of a RAMP fold in the fold image (what one datarun fold pays that one
# iteration of ramp-test's CV loop does not), step by step, median of N runs each:
#
#   start     docker run --rm --network none IMAGE true      container start and removal
#   python    ... python3 -c pass                             + the interpreter
#   imports   ... python3 -c 'import rampwf ...'              + what every fold imports (the kit's
#                                                               problem.py imports rampwf, which
#                                                               imports scikit-learn, pandas, scipy)
#   fold      ... datarun-ramp-fold, examples/ramp_kit fold 0 + reading the kit and data, get_cv,
#                                                               training, scoring, writing outputs
#   ramp-test ... ramp-test --submission starting_kit         the kit's 4 folds and bagging in
#                                                               one container, for comparison
#
# Then, from the measured per-fold overhead, the wall time of a kit with K folds of S seconds on
# R runners (datarun: ceil(K/R) waves of S + overhead, plus the bagging fold) over ramp-test's
# (its start-up once + K x S): a projection, not an end-to-end run.
#
#   scripts/ramp-fold-overhead.sh [-n N] [-s SECONDS] [-r RUNNERS] [--image IMAGE]
#
# The load average is printed first: the numbers mean something on a quiet machine only (the
# script says so when the 1-minute load is above 0.5 per core). Needs Docker and the image
# (./images/build-fold-python.sh).
set -euo pipefail

n=5 secs=10 runners=3 image=datarun/fold-python:0.1
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift ;;
    -s) secs=$2; shift ;;
    -r) runners=$2; shift ;;
    --image) image=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
kit=$(cd "$(dirname "$0")/../examples/ramp_kit" && pwd)
docker image inspect "$image" >/dev/null 2>&1 ||
  { echo "no image $image: run ./images/build-fold-python.sh" >&2; exit 1; }

cores=$(nproc)
read -r load1 load5 load15 _ </proc/loadavg
echo "load average $load1 $load5 $load15 on $cores cores"
if awk -v l="$load1" -v c="$cores" 'BEGIN { exit !(l > 0.5 * c) }'; then
  echo "WARNING: the machine is busy; these figures are not the quiet-machine overhead"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chmod 777 "$out"
printf '{"submission": "starting_kit", "fold": 0}\n' >"$out/ramp-fold.json"
run=(docker run --rm --network none --read-only --tmpfs /tmp)

# Median wall seconds of N runs of "$@".
median() {
  local i t0 t1
  for ((i = 0; i < n; i++)); do
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2 || true; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | sort -n | awk '{ v[NR] = $1 } END { printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

start=$(median "${run[@]}" "$image" true)
python=$(median "${run[@]}" "$image" python3 -c pass)
imports=$(median "${run[@]}" "$image" python3 -c \
  'import rampwf, rampwf.utils.submission, rampwf.utils.testing, sklearn.linear_model')
fold=$(median "${run[@]}" -v "$kit:/datarun/input:ro" -v "$out/ramp-fold.json:/datarun/ramp-fold.json:ro" \
  --tmpfs /datarun/output:uid=1000 "$image" datarun-ramp-fold /datarun/ramp-fold.json)
ramptest=$(median "${run[@]}" -v "$kit:/kit:ro" "$image" sh -c \
  'cp -r /kit /tmp/kit && cd /tmp/kit && rm -rf submissions/*/training_output && ramp-test --submission starting_kit --save-output')

printf '%-10s %7s s  %s\n' start "$start" "container start and removal" \
  python "$python" "+ python3" imports "$imports" "+ rampwf, scikit-learn, pandas, scipy imported" \
  fold "$fold" "one datarun-ramp-fold (iris, fold 0)" ramp-test "$ramptest" "ramp-test, 4 folds + bagging, one container"
# Iris trains and scores in milliseconds: a whole fold's run is its overhead.
per_fold=$fold
echo "per-fold overhead (a whole iris fold): ${per_fold} s"
echo "projection for $secs s folds on $runners runners (datarun / ramp-test):"
for k in 3 6 9 12; do
  awk -v k="$k" -v s="$secs" -v r="$runners" -v o="$per_fold" -v rt="$ramptest" 'BEGIN {
    waves = int((k + r - 1) / r)
    d = waves * (s + o) + o            # the folds, then the bagging fold
    t = rt + k * s                     # ramp-test: its start-up and iris work once, K x S
    printf "  K=%-3d datarun %6.1f s  ramp-test %6.1f s  ratio %.2f\n", k, d, t, d / t }'
done
