#!/usr/bin/env bash
# Builds the fold image datarun/fold-python:0.1 (Debian bookworm, python3 + numpy + pandas +
# scikit-learn, ramp-workflow from PyPI, /usr/local/bin/datarun-fold, datarun-prepare and
# datarun-ramp-fold, user fold 1000) without any container registry: debootstrap from the
# machine's own Debian mirror, apt-get in a chroot, pip for the one pinned (hash-checked)
# ramp-workflow wheel, `docker import`.
#
#   images/build-fold-python.sh [--force] [--fresh] [--save FILE.tar] [--no-test]
#                               [--pip "REQ..." --tag TAG]
#
# Idempotent: exits at once when the image exists with the label of the current sources (the
# runners, their tests, iris.csv, the ramp kit, the text example, this script); one build at a
# time (flock).
# --force rebuilds the image; the base rootfs (debootstrap + apt + ramp-workflow) is cached at
# $DATARUN_IMAGE_CACHE/fold-python-0.1-<recipe hash>.tar (default ~/.cache/datarun), the wheel
# in wheels/ there (a rebuild needs no PyPI); --fresh rebuilds the base too. After a build the
# image's unit tests run inside it (--no-test skips them); a failing image is removed. --save writes
# `docker save` output for `datarun image load` on runners. Mirror override: DATARUN_DEBIAN_MIRROR=URL.
# Other versions: --pip "scikit-learn==1.3.2" --tag 0.1-sk13 builds
# datarun/fold-python:0.1-sk13 with those requirements installed by pip over bookworm's packages
# (wheels only, downloaded by the host's pip for this Python, cached; the chroot stays offline).
# Must run as root (debootstrap, chroot).
set -euo pipefail

version=0.1
here=$(cd "$(dirname "$0")" && pwd)
src=$here/fold-python
iris=$here/../examples/iris/iris.csv
kit=$here/../examples/ramp_kit
text=$here/../examples/text_problem
cache_dir=${DATARUN_IMAGE_CACHE:-$HOME/.cache/datarun}
# python3-click and python3-cloudpickle are ramp-workflow's dependencies beyond scikit-learn's;
# python3-pip installs the wheel and is purged again.
packages="python3 python3-numpy python3-pandas python3-sklearn python3-click python3-cloudpickle"
# ramp-workflow 0.7.0 (2024-12-02, the newest): requires numpy, scipy, pandas, scikit-learn>=0.22,
# joblib, cloudpickle, click, all satisfied by bookworm's (sklearn 1.2.1, pandas 1.5.3, numpy
# 1.24.2), so it goes in with --no-deps and nothing from PyPI but this wheel.
ramp_version=0.7.0
ramp_wheel=ramp_workflow-$ramp_version-py3-none-any.whl
ramp_sha256=dcf25007d1cc86957a8ab2f11d9c0263a980a9c67518981d65f66360d891e5c5
# Bump base_recipe when the steps that build the base rootfs change (or build with --fresh).
base_recipe=3
wheels=$cache_dir/wheels

force=0 fresh=0 test=1 save= pins= tag=$version
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1 ;;
    --fresh) force=1 fresh=1 ;;
    --no-test) test=0 ;;
    --save) [ $# -ge 2 ] || { echo "--save needs a file name" >&2; exit 2; }; save=$2; shift ;;
    --pip) [ $# -ge 2 ] || { echo "--pip needs requirements" >&2; exit 2; }; pins=$2; shift ;;
    --tag) [ $# -ge 2 ] || { echo "--tag needs a tag" >&2; exit 2; }; tag=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$pins" ] && [ "$tag" = "$version" ]; then
  echo "--pip needs its own --tag (not $version, the image with bookworm's versions)" >&2; exit 2
fi
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "bad tag $tag" >&2; exit 2; }
image=datarun/fold-python:$tag
# The base cache is keyed by the pins too (none: the same key as before there were pins).
base_key=$(printf '%s\n' "$base_recipe" "$packages" "$ramp_wheel" "$ramp_sha256" ${pins:+"$pins"} |
  sha256sum | cut -c1-12)
cache=$cache_dir/fold-python-$version-$base_key.tar

t0=$SECONDS
step() { echo "[$((SECONDS - t0))s] $*"; }

save_image() {
  if [ -n "$save" ]; then
    docker save -o "$save" "$image"
    step "saved $image to $save ($(du -h "$save" | cut -f1))"
  fi
}

# One build at a time on this machine: tests run in parallel call this script, and a second
# caller then finds the image the first one built.
mkdir -p "$cache_dir"
exec 9>"$cache_dir/fold-python.lock"
if ! flock -n 9; then
  echo "waiting for another build of $image to finish"
  flock 9
fi

# The label ties the image to the sources it was built from.
kit_files=$(cd "$kit" && find . -type f ! -name '*.pyc' ! -path '*/training_output/*' | LC_ALL=C sort)
text_files=$(cd "$text" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort)
digest=$( (echo "$pins"; cat "$0" "$src/datarun-fold" "$src/test_datarun_fold.py" "$src/datarun-ramp-fold" \
  "$src/test_datarun_ramp_fold.py" "$src/datarun-prepare" "$src/test_datarun_prepare.py" "$iris"
  cd "$kit" && for f in $kit_files; do echo "$f"; cat "$f"; done
  cd "$text" && for f in $text_files; do echo "text/$f"; cat "$f"; done) |
  sha256sum | cut -c1-16)
if [ $force = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "datarun.digest"}}' "$image" 2>/dev/null)" = "$digest" ]; then
  echo "$image is up to date (digest $digest)"
  save_image
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap and chroot need it)" >&2; exit 1; }

# The first URI of an enabled `deb` source for SUITE, from sources.list(.d) (one-line or deb822).
find_uri() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -v '^[[:space:]]*#' "$f" | awk -v s="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      { uri = ""; deb = 0; has = 0; on = 1
        for (i = 1; i <= NF; i++) {
          split($i, w, /[ \t]+/)
          if (w[1] == "Types:") for (j = 2; j in w; j++) if (w[j] == "deb") deb = 1
          if (w[1] == "Suites:") for (j = 2; j in w; j++) if (w[j] == s) has = 1
          if (w[1] == "URIs:") uri = w[2]
          if (w[1] == "Enabled:" && w[2] == "no") on = 0
        }
        if (deb && has && on && uri != "") { print uri; exit } }'
  done
}

# The pinned ramp-workflow wheel, downloaded once by the host's pip (its proxy and CA settings
# apply; the chroot never reaches PyPI) into $wheels and checked against its sha256 every time.
fetch_wheel() {
  printf 'ramp-workflow==%s --hash=sha256:%s\n' "$ramp_version" "$ramp_sha256" >"$work/ramp.txt"
  if [ ! -f "$wheels/$ramp_wheel" ]; then
    mkdir -p "$wheels"
    python3 -m pip --version >/dev/null 2>&1 ||
      { echo "need pip to download $ramp_wheel (or put it in $wheels)" >&2; exit 1; }
    python3 -m pip download -q --no-deps --only-binary :all: --require-hashes \
      -r "$work/ramp.txt" -d "$wheels"
  fi
  echo "$ramp_sha256  $wheels/$ramp_wheel" | sha256sum -c --quiet ||
    { echo "$wheels/$ramp_wheel does not have the pinned sha256; remove it" >&2; exit 1; }
  step "ramp-workflow wheel $wheels/$ramp_wheel"
}

work=$(mktemp -d /var/tmp/datarun-fold-python.XXXXXX)
root=$work/rootfs
cleanup() {
  local m
  for m in dev/pts proc; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m" || true; fi
  done
  if findmnt -rn -o TARGET | grep -q "^$work"; then
    echo "something is still mounted under $work; leaving it for you to clean" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  rm -f "$cache.tmp"
}
trap cleanup EXIT
trap 'echo "build-fold-python: failed at line $LINENO" >&2' ERR
trap 'exit 130' INT TERM

if [ $fresh = 0 ] && [ -f "$cache" ]; then
  mkdir "$root"
  tar -C "$root" -xf "$cache"
  step "base rootfs from cache $cache"
else
  mirror=${DATARUN_DEBIAN_MIRROR:-$(find_uri bookworm | head -n1)}
  [ -n "$mirror" ] || { echo "no bookworm mirror in /etc/apt/sources.list(.d); set DATARUN_DEBIAN_MIRROR" >&2; exit 1; }
  security=$(find_uri bookworm-security | head -n1)
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  fetch_wheel
  if [ -n "$pins" ]; then
    # Wheels for the image's Python (bookworm: CPython 3.11), whatever the host runs.
    pinned=$wheels/pins-$base_key
    if [ ! -d "$pinned" ]; then
      python3 -m pip download -q --only-binary :all: --implementation cp --python-version 3.11 \
        --abi cp311 --abi abi3 --abi none --platform "manylinux2014_$(uname -m)" \
        --platform "manylinux_2_28_$(uname -m)" --platform any -d "$pinned.tmp" $pins
      mv "$pinned.tmp" "$pinned"
    fi
    step "wheels for $pins in $pinned"
  fi
  step "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  step "debootstrap done"
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [ -z "$security" ] || echo "deb $security bookworm-security main"
  } >"$root/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"   # start no services
  chmod 755 "$root/usr/sbin/policy-rc.d"
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/unsafe-io"
  mount -t proc proc "$root/proc"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
  # python3-scipy depends on python3-pythran only because it was built with it; pythran would
  # pull ~400 MB of g++, boost and -dev packages into the image. A stub package stands in.
  mkdir -p "$root/tmp/stub/DEBIAN"
  printf '%s\n' 'Package: python3-pythran' 'Version: 0~datarun' 'Architecture: all' \
    'Maintainer: datarun' 'Description: stub: scipy needs pythran only at build time' \
    >"$root/tmp/stub/DEBIAN/control"
  mkdir -p "$root/tmp/wheels"
  cp "$wheels/$ramp_wheel" "$work/ramp.txt" "$root/tmp/wheels/"
  [ -z "$pins" ] || cp -r "$pinned" "$root/tmp/pins"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -ec "
    dpkg-deb -b /tmp/stub /tmp/stub.deb >/dev/null && dpkg -i /tmp/stub.deb >/dev/null
    apt-mark hold python3-pythran >/dev/null && rm -rf /tmp/stub /tmp/stub.deb
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $packages python3-pip >/dev/null
    python3 -m pip install -q --isolated --disable-pip-version-check --no-cache-dir \
      --root-user-action=ignore --break-system-packages --no-index --no-deps \
      --require-hashes --find-links /tmp/wheels -r /tmp/wheels/ramp.txt
    if [ -n '$pins' ]; then
      python3 -m pip install -q --isolated --disable-pip-version-check --no-cache-dir \
        --root-user-action=ignore --break-system-packages --no-index --find-links /tmp/pins $pins
      rm -rf /tmp/pins
    fi
    apt-get purge -y -qq --autoremove -o APT::AutoRemove::SuggestsImportant=false \
      -o APT::AutoRemove::RecommendsImportant=false python3-pip >/dev/null
    python3 -c 'import rampwf.utils.testing, rampwf.utils.cli.testing, rampwf.workflows, rampwf.score_types'
    python3 -c 'import sys, sklearn, pandas, numpy, scipy, rampwf; print(*[m.__name__ + chr(61) + m.__version__ for m in (sklearn, pandas, numpy, scipy, rampwf)], chr(40) + sys.version.split()[0] + chr(41))'
    # Byte-compiled imports baked in (the image runs with PYTHONDONTWRITEBYTECODE=1, as user
    # 1000: nothing it imports from source would ever be cached). Debian compiles its packages
    # at install and pip its wheel; this covers anything left. test_datarun_ramp_fold checks it.
    python3 -m compileall -q -j 0 /usr/lib/python3 /usr/lib/python3.11 /usr/local/lib >/dev/null
    ramp-test --help >/dev/null
    apt-get clean
    groupadd -g 1000 fold
    useradd -u 1000 -g 1000 -m -d /home/fold -s /bin/sh fold"
  umount "$root/dev/pts" "$root/proc"
  rm -rf "$root/tmp/wheels"
  step "installed $packages and $ramp_wheel"
  # Slim down: apt lists and caches, docs, locales, the libraries' own test suites.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d" "$root/etc/dpkg/dpkg.cfg.d/unsafe-io"
  find "$root/usr/lib/python3/dist-packages" -depth -type d -name tests -exec rm -rf {} +
  mkdir -p "$root/datarun/input" "$root/datarun/output"
  chown 1000:1000 "$root/datarun/output"
  chmod 1777 "$root/tmp"
  step "base rootfs ready"
fi

# The datarun layer; the cache gets the whole tree (the next build overwrites these files).
install -D -m 0755 "$src/datarun-fold" "$root/usr/local/bin/datarun-fold"
install -D -m 0755 "$src/datarun-ramp-fold" "$root/usr/local/bin/datarun-ramp-fold"
install -D -m 0755 "$src/datarun-prepare" "$root/usr/local/bin/datarun-prepare"
install -D -m 0644 "$src/test_datarun_fold.py" "$root/opt/datarun/test_datarun_fold.py"
install -D -m 0644 "$src/test_datarun_ramp_fold.py" "$root/opt/datarun/test_datarun_ramp_fold.py"
install -D -m 0644 "$src/test_datarun_prepare.py" "$root/opt/datarun/test_datarun_prepare.py"
install -D -m 0644 "$iris" "$root/opt/datarun/iris.csv"
rm -rf "$root/opt/datarun/ramp_kit"
(cd "$kit" && for f in $kit_files; do install -D -m 0644 "$f" "$root/opt/datarun/ramp_kit/$f"; done)
rm -rf "$root/opt/datarun/text_problem"
(cd "$text" && for f in $text_files; do install -D -m 0644 "$f" "$root/opt/datarun/text_problem/$f"; done)
keep=/dev/null
if [ ! -f "$cache" ] || [ $fresh = 1 ]; then mkdir -p "$cache_dir"; keep=$cache.tmp; fi
tar -C "$root" -c . | tee "$keep" | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change "LABEL datarun.digest=$digest" \
  --change 'USER 1000' \
  - "$image" >/dev/null
[ "$keep" = /dev/null ] || mv "$keep" "$cache"
step "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"

if [ $test = 1 ]; then
  if ! docker run --rm --network none -w /opt/datarun "$image" python3 -m unittest \
      test_datarun_fold test_datarun_ramp_fold test_datarun_prepare; then
    docker rmi "$image" >/dev/null || true
    echo "the image's tests failed; removed $image" >&2
    exit 1
  fi
  step "tests passed inside $image"
fi
save_image
step "done: $image (digest $digest)"
