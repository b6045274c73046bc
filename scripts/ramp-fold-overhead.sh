#!/usr/bin/env bash
# Per-fold overhead of a RAMP fold in the fold image (what one datarun fold pays that one
# iteration of ramp-test's CV loop does not), and what it means for a kit's wall time.
#
#   scripts/ramp-fold-overhead.sh [-n N] [-s SECONDS] [-r RUNNERS] [--image IMAGE]
#                                 [--baseline IMAGE] [--native-usr] [--engine SOCKET]
#
# Every container runs confined as the docker executor runs a fold (src/agent/docker/spec.rs:
# --init, no network, read-only root, 64 MB /tmp, all capabilities dropped, no-new-privileges,
# private IPC, 256 pids, 1 CPU, 1 GB without swap, user 1000). Steps, median of N runs each:
#
#   start      ... IMAGE true                  container start and removal
#   python     ... python3 -c pass             + the interpreter
#   imports    ... python3 -c 'import rampwf…' + what every fold imports (the kit's problem.py
#                                                imports rampwf: scikit-learn, pandas, scipy)
#   fold       ... datarun-ramp-fold            one whole fold of examples/ramp_kit (iris, fold 0)
#   bag        ... datarun-ramp-fold, "bag"     the bagging fold over the kit's 4 folds
#   ramp-test  ... ramp-test --save-output      the kit's 4 folds and bagging in one container
#
# Then the wall time of a kit with K = 3, 6, 9, 12 folds of S seconds on R runners, datarun
# (ceil(K/R) waves of S + fold, then the bagging fold) side by side with ramp-test (its own
# run on the 4-fold kit, whose folds take milliseconds, + K x S), and their ratio: a projection
# from the measured steps, not an end-to-end run (the master's scheduling is not counted).
#
# Variants, measured interleaved (run i of every step of every variant, then run i+1), so that
# a machine whose load drifts affects them alike:
#   IMAGE              the candidate (default datarun/fold-python:0.1)
#   --baseline IMAGE   another image, e.g. the image before a change
#   --native-usr       IMAGE with its /usr/lib and /usr/local bind-mounted from a copy on the
#                      host's own disk (docker export): what the engine's storage driver costs
#   --engine SOCKET    IMAGE on another Docker engine (unix socket), e.g. one with another
#                      storage driver; the image must be loaded there
# The load average is printed before and after; the figures are a quiet machine's only when it
# stays below 0.5 per core (the script warns otherwise). Needs Docker and the image
# (./images/build-fold-python.sh).
set -euo pipefail

n=5 secs=10 runners=3 image=datarun/fold-python:0.1 baseline= native=0 engine=
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift ;;
    -s) secs=$2; shift ;;
    -r) runners=$2; shift ;;
    --image) image=$2; shift ;;
    --baseline) baseline=$2; shift ;;
    --native-usr) native=1 ;;
    --engine) engine=$2; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $n =~ ^[1-9][0-9]*$ && $secs =~ ^[0-9]+$ && $runners =~ ^[1-9][0-9]*$ ]] ||
  { echo "-n and -r take a positive integer, -s a whole number of seconds" >&2; exit 2; }
kit=$(cd "$(dirname "$0")/../examples/ramp_kit" && pwd)

# Variant v: label[v], docker command dock[v] (an engine), image img[v], extra run args xtra[v].
labels=() docks=() imgs=() xtras=()
variant() { labels+=("$1"); docks+=("$2"); imgs+=("$3"); xtras+=("$4"); }
[ -z "$baseline" ] || variant A "docker" "$baseline" ""
variant B "docker" "$image" ""
for v in "${!labels[@]}"; do
  docker image inspect "${imgs[$v]}" >/dev/null 2>&1 ||
    { echo "no image ${imgs[$v]}: run ./images/build-fold-python.sh" >&2; exit 1; }
done

out=$(mktemp -d)
cleanup() { rm -rf "$out"; }
trap cleanup EXIT
chmod 755 "$out"
if [ $native = 1 ]; then
  # The image's libraries (Python's and the shared ones) as plain files on the host's disk,
  # bound over the container's; /usr/sbin stays (the engine's init is mounted there).
  id=$(docker create "$image" true)
  mkdir "$out/root"
  docker export "$id" | tar -C "$out/root" -x usr/lib usr/local
  docker rm "$id" >/dev/null
  variant N "docker" "$image" "--mount type=bind,src=$out/root/usr/lib,dst=/usr/lib,readonly
    --mount type=bind,src=$out/root/usr/local,dst=/usr/local,readonly"
fi
if [ -n "$engine" ]; then
  [ -S "$engine" ] || { echo "--engine $engine: not a socket" >&2; exit 2; }
  docker -H "unix://$engine" image inspect "$image" >/dev/null 2>&1 ||
    { echo "no image $image on $engine: docker save $image | docker -H unix://$engine load" >&2; exit 1; }
  variant E "docker -H unix://$engine" "$image" ""
fi

cores=$(nproc)
load() {
  local l1 l5 l15 _
  read -r l1 l5 l15 _ </proc/loadavg
  echo "load average $l1 $l5 $l15 on $cores cores ($1)"
  if awk -v l="$l1" -v c="$cores" 'BEGIN { exit !(l > 0.5 * c) }'; then
    echo "WARNING: the machine is busy; these figures are not the quiet-machine overhead"
  fi
}
load "before"
for v in "${!labels[@]}"; do
  driver=$(${docks[$v]} info -f '{{.Driver}}' 2>/dev/null || echo '?')
  printf '%s  %s (storage driver %s)%s\n' "${labels[$v]}" "${imgs[$v]}" "$driver" \
    "$([ "${labels[$v]}" = N ] && echo ', /usr/lib and /usr/local from the host disk')"
done

# Inputs: the kit and a fold description; for bagging, the kit plus its 4 folds' predictions.
printf '{"submission": "starting_kit", "fold": 0}\n' >"$out/fold.json"
printf '{"submission": "starting_kit", "bag": true}\n' >"$out/bag.json"
mkdir -p "$out/bag-input" "$out/preds"
cp -r "$kit/." "$out/bag-input/"
rm -rf "$out/bag-input/submissions/"*/training_output
chmod -R a+rX "$out"
chmod 777 "$out/preds"

confine=(--rm --init --network none --read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m,mode=1777
  --cap-drop ALL --security-opt no-new-privileges --ipc private --pids-limit 256 --cpus 1
  --memory 1g --memory-swap 1g --ulimit core=0 --user 1000:1000 -w /datarun -e HOME=/tmp
  -e OMP_NUM_THREADS=1 -e DATARUN_INPUT=/datarun/input -e DATARUN_OUTPUT=/datarun/output)
imports='import rampwf, rampwf.utils.submission, rampwf.utils.testing, sklearn.linear_model'
# The argv after `docker run` of step $1 for variant $2 (an array named by $3).
step_args() {
  local -n a=$3
  # shellcheck disable=SC2206 # the variant's extra args are words
  a=("${confine[@]}" ${xtras[$2]})
  case $1 in
    start) a+=("${imgs[$2]}" true) ;;
    python) a+=("${imgs[$2]}" python3 -c pass) ;;
    imports) a+=("${imgs[$2]}" python3 -c "$imports") ;;
    fold) a+=(-v "$kit:/datarun/input:ro" -v "$out/fold.json:/datarun/ramp-fold.json:ro"
      --tmpfs /datarun/output:uid=1000 "${imgs[$2]}" datarun-ramp-fold /datarun/ramp-fold.json) ;;
    bag) a+=(-v "$out/bag-input:/datarun/input:ro" -v "$out/bag.json:/datarun/ramp-fold.json:ro"
      --tmpfs /datarun/output:uid=1000 "${imgs[$2]}" datarun-ramp-fold /datarun/ramp-fold.json) ;;
    ramp-test) a+=(-v "$kit:/kit:ro" "${imgs[$2]}" sh -c 'cp -r /kit /tmp/kit && cd /tmp/kit &&
      rm -rf submissions/*/training_output && ramp-test --submission starting_kit --save-output') ;;
  esac
}

# The bagging fold's inputs: the 4 folds' predictions, made once with the candidate.
for k in 0 1 2 3; do
  printf '{"submission": "starting_kit", "fold": %d}\n' "$k" >"$out/f$k.json"
  chmod 644 "$out/f$k.json"
  docker run "${confine[@]}" -v "$kit:/datarun/input:ro" -v "$out/f$k.json:/datarun/ramp-fold.json:ro" \
    -v "$out/preds:/datarun/output" "$image" datarun-ramp-fold /datarun/ramp-fold.json >/dev/null ||
    { echo "fold $k of $kit failed in $image" >&2; exit 1; }
done
cp -r "$out/preds/training_output" "$out/bag-input/"
chmod -R a+rX "$out/bag-input"

steps=(start python imports fold bag ramp-test)
for ((i = 0; i < n; i++)); do
  for s in "${steps[@]}"; do
    for v in "${!labels[@]}"; do
      step_args "$s" "$v" args
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086 # the variant's docker command is words
      ${docks[$v]} run "${args[@]}" >"$out/last.log" 2>&1 ||
        { echo "failed: ${labels[$v]} $s" >&2; cat "$out/last.log" >&2; exit 1; }
      t1=$(date +%s.%N)
      echo "$t1 - $t0" | bc -l >>"$out/${labels[$v]}.$s"
    done
  done
done
load "after"

median() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "median seconds of $n runs:"
printf '  %-10s' step; for v in "${!labels[@]}"; do printf ' %8s' "${labels[$v]}"; done; echo
for s in "${steps[@]}"; do
  printf '  %-10s' "$s"
  for v in "${!labels[@]}"; do printf ' %8s' "$(median "$out/${labels[$v]}.$s")"; done
  echo
done
echo "a kit of $secs s folds on $runners runners: datarun = ceil(K/$runners) x ($secs + fold) + bag;" \
  "ramp-test = its run + K x $secs; ratio = datarun / ramp-test"
printf '  %-4s' K
for v in "${!labels[@]}"; do printf ' | %s: %9s %9s %5s' "${labels[$v]}" datarun ramp-test ratio; done
echo
for k in 3 6 9 12; do
  printf '  %-4s' "$k"
  for v in "${!labels[@]}"; do
    l=${labels[$v]}
    awk -v k="$k" -v s="$secs" -v r="$runners" -v l="$l" -v o="$(median "$out/$l.fold")" \
      -v b="$(median "$out/$l.bag")" -v rt="$(median "$out/$l.ramp-test")" 'BEGIN {
      d = int((k + r - 1) / r) * (s + o) + b
      t = rt + k * s
      printf " | %s: %8.1fs %8.1fs %5.2f", l, d, t, d / t }'
  done
  echo
done
