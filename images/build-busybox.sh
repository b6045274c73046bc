#!/usr/bin/env bash
# Builds the tiny test image datarun/busybox:test from Debian's static busybox (no registry
# needed): a rootfs with busybox and its applet links, /tmp, and a non-root user 'fold' (1000).
# Idempotent: does nothing when the image exists (pass --force to rebuild).
set -euo pipefail
image=datarun/busybox:test
if [ "${1:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if [ ! -x /bin/busybox ] || ! file /bin/busybox 2>/dev/null | grep -q static; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,tmp,etc,datarun/input,datarun/output,proc,sys,dev}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nfold:x:1000:1000:fold:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nfold:x:1000:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -c . | docker import --change 'ENV PATH=/bin' - "$image" >/dev/null
echo "built $image"
