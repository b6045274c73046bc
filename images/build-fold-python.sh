#!/usr/bin/env bash
# Builds the fold image datarun/fold-python:0.1 (Debian bookworm, python3 + numpy + pandas +
# scikit-learn, /usr/local/bin/datarun-fold, user fold 1000) without any container registry:
# debootstrap from the machine's own Debian mirror, apt-get in a chroot, then `docker import`.
#
#   images/build-fold-python.sh [--force] [--fresh] [--save FILE.tar] [--no-test]
#
# Idempotent: exits at once when the image exists with the label of the current sources
# (datarun-fold, its tests, iris.csv and this script). --force rebuilds the image; the base
# rootfs (debootstrap + apt) is cached at $DATARUN_IMAGE_CACHE/fold-python-0.1.tar (default
# ~/.cache/datarun) and reused; --fresh rebuilds that too. After a build the image's own
# unit tests run inside it (--no-test skips them); a failing image is removed. --save writes
# `docker save` output for `datarun image load` on runners. Mirror override: DATARUN_DEBIAN_MIRROR=URL.
# Must run as root (debootstrap, chroot).
set -euo pipefail

version=0.1
image=datarun/fold-python:$version
here=$(cd "$(dirname "$0")" && pwd)
src=$here/fold-python
iris=$here/../examples/iris/iris.csv
cache_dir=${DATARUN_IMAGE_CACHE:-$HOME/.cache/datarun}
cache=$cache_dir/fold-python-$version.tar
packages="python3 python3-numpy python3-pandas python3-sklearn"

force=0 fresh=0 test=1 save=
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1 ;;
    --fresh) force=1 fresh=1 ;;
    --no-test) test=0 ;;
    --save) [ $# -ge 2 ] || { echo "--save needs a file name" >&2; exit 2; }; save=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

t0=$SECONDS
step() { echo "[$((SECONDS - t0))s] $*"; }

save_image() {
  if [ -n "$save" ]; then
    docker save -o "$save" "$image"
    step "saved $image to $save ($(du -h "$save" | cut -f1))"
  fi
}

# The label ties the image to the sources it was built from.
digest=$(cat "$0" "$src/datarun-fold" "$src/test_datarun_fold.py" "$iris" | sha256sum | cut -c1-16)
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
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -ec "
    dpkg-deb -b /tmp/stub /tmp/stub.deb >/dev/null && dpkg -i /tmp/stub.deb >/dev/null
    apt-mark hold python3-pythran >/dev/null && rm -rf /tmp/stub /tmp/stub.deb
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
    apt-get clean
    groupadd -g 1000 fold
    useradd -u 1000 -g 1000 -m -d /home/fold -s /bin/sh fold"
  umount "$root/dev/pts" "$root/proc"
  step "installed $packages"
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
install -D -m 0644 "$src/test_datarun_fold.py" "$root/opt/datarun/test_datarun_fold.py"
install -D -m 0644 "$iris" "$root/opt/datarun/iris.csv"
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
  if ! docker run --rm --network none "$image" python3 -m unittest /opt/datarun/test_datarun_fold.py; then
    docker rmi "$image" >/dev/null || true
    echo "the image's tests failed; removed $image" >&2
    exit 1
  fi
  step "tests passed inside $image"
fi
save_image
step "done: $image (digest $digest)"
