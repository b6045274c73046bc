#!/usr/bin/env bash
# Builds the ML fold image datarun/fold-python:0.1 without any registry: debootstrap a minimal
# Debian from the machine's own Debian mirror, add python3 with numpy, pandas and scikit-learn,
# the datarun-fold runner and a non-root user, and `docker import` the result.
# Idempotent: exits at once when the image exists (--force rebuilds). The rootfs tarball is
# cached in ${DATARUN_IMAGE_CACHE:-~/.cache/datarun} so a rebuild skips debootstrap.
# --save FILE.tar also writes a `docker save` tarball for `datarun image load` on runners.
set -euo pipefail
cd "$(dirname "$0")"
version=0.1
image=datarun/fold-python:$version
force=0 save=""
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --save) save="$2"; shift ;;
    *) echo "usage: $0 [--force] [--save FILE.tar]" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "build-fold-python: $*" >&2; }
trap 'say "failed at line $LINENO"' ERR

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  [ -z "$save" ] || docker save "$image" -o "$save"
  exit 0
fi
[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap, chroot)"; exit 1; }

cache=${DATARUN_IMAGE_CACHE:-$HOME/.cache/datarun}
base=$cache/fold-python-$version-base.tar
mkdir -p "$cache"
start=$SECONDS
root=$(mktemp -d)
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

if [ ! -s "$base" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  # The machine's own Debian mirror (no host is written here).
  mirror=$(grep -rhoE '^(deb|URIs:) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
             | grep -v security | head -1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || { say "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }
  say "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  mount -t proc proc "$root/proc"
  chroot "$root" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
    python3 python3-numpy python3-pandas python3-sklearn >/dev/null
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar -C "$root" -cf "$base" .
  say "base rootfs cached in $base ($((SECONDS - start)) s)"
else
  tar -C "$root" -xf "$base"
fi

# The datarun layer: the runner, its tests, the fold user and directories.
install -m 0755 fold-python/datarun-fold "$root/usr/local/bin/datarun-fold"
mkdir -p "$root/opt/datarun" "$root/datarun/input" "$root/datarun/output"
[ ! -f fold-python/test_datarun_fold.py ] || install -m 0644 fold-python/test_datarun_fold.py "$root/opt/datarun/"
grep -q '^fold:' "$root/etc/passwd" || {
  echo 'fold:x:1000:1000:fold:/tmp:/bin/sh' >> "$root/etc/passwd"
  echo 'fold:x:1000:' >> "$root/etc/group"
}
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'USER 1000' \
  --change "LABEL org.datarun.image=fold-python org.datarun.version=$version" \
  - "$image" >/dev/null
say "built $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
if [ -f fold-python/test_datarun_fold.py ]; then
  docker run --rm --network none "$image" python3 -m unittest -q /opt/datarun/test_datarun_fold.py
fi
[ -z "$save" ] || docker save "$image" -o "$save"
