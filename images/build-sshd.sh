#!/usr/bin/env bash
# Builds datarun/sshd-host:0.3, a stand-in "runner machine" for the SSH tests, without any
# registry: debootstrap a minimal Debian bookworm from the machine's own mirror, add
# openssh-server, ca-certificates, procps, python3 (which ansible's modules need on a managed
# host, for the provisioning bench's comparison) and sudo, and `docker import` the result.
#
# sshd accepts keys only (PasswordAuthentication no, PermitRootLogin prohibit-password).
# The entrypoint generates host keys on first start (`ssh-keygen -A`), so every container has
# its own key and a restarted container keeps it. Root's authorized_keys comes from the
# environment variable AUTHORIZED_KEYS (written to /root/.ssh/authorized_keys at each start),
# or from a bind mount at /root/.ssh/authorized_keys when the variable is empty. With LOGIN_USER
# set, that user is created too, with the same keys and password-less sudo (an operator's
# usual non-root login).
#   docker run -d -e AUTHORIZED_KEYS="$(cat id_ed25519.pub)" datarun/sshd-host:0.3
#
# Idempotent: exits at once when the image exists (--force rebuilds). The rootfs tarball is
# cached in ${DATARUN_IMAGE_CACHE:-~/.cache/datarun} so a rebuild skips debootstrap.
set -euo pipefail
cd "$(dirname "$0")"
version=0.3
image=datarun/sshd-host:$version
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "build-sshd: $*" >&2; }
trap 'say "failed at line $LINENO"' ERR

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap, chroot)"; exit 1; }

cache=${DATARUN_IMAGE_CACHE:-$HOME/.cache/datarun}
base=$cache/sshd-host-$version-base.tar
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
  # policy-rc.d keeps the package scripts from starting sshd inside the chroot.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
    openssh-server ca-certificates procps python3 sudo >/dev/null
  rm -f "$root/usr/sbin/policy-rc.d"
  chroot "$root" apt-get clean
  umount "$root/proc"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar -C "$root" -cf "$base" .
  say "base rootfs cached in $base ($((SECONDS - start)) s)"
else
  tar -C "$root" -xf "$base"
fi

# The datarun layer: no baked-in host keys (each container makes its own), key-only sshd,
# and the entrypoint.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/run/sshd" "$root/root/.ssh"
chmod 0755 "$root/run/sshd"
chmod 0700 "$root/root/.ssh"
cat > "$root/etc/ssh/sshd_config.d/datarun.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
UseDNS no
PrintMotd no
CONF
cat > "$root/usr/local/sbin/datarun-sshd-entrypoint" <<'SH'
#!/bin/sh
# Host keys once per container (kept across restarts), root's key from $AUTHORIZED_KEYS.
set -e
ssh-keygen -A >/dev/null
mkdir -p /run/sshd /root/.ssh
chmod 0700 /root/.ssh
if [ -n "${AUTHORIZED_KEYS:-}" ]; then
  printf '%s\n' "$AUTHORIZED_KEYS" > /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi
if [ -n "${LOGIN_USER:-}" ] && ! id -u "$LOGIN_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$LOGIN_USER"
  home=$(getent passwd "$LOGIN_USER" | cut -d: -f6)
  mkdir -p "$home/.ssh"
  cp /root/.ssh/authorized_keys "$home/.ssh/authorized_keys"
  chown -R "$LOGIN_USER:" "$home/.ssh"
  chmod 0700 "$home/.ssh"
  printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$LOGIN_USER" > "/etc/sudoers.d/$LOGIN_USER"
  chmod 0440 "/etc/sudoers.d/$LOGIN_USER"
fi
exec /usr/sbin/sshd -D -e "$@"
SH
chmod 0755 "$root/usr/local/sbin/datarun-sshd-entrypoint"

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'EXPOSE 22' \
  --change 'ENTRYPOINT ["/usr/local/sbin/datarun-sshd-entrypoint"]' \
  --change "LABEL org.datarun.image=sshd-host org.datarun.version=$version" \
  - "$image" >/dev/null
say "built $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"

# Smoke test: the entrypoint makes host keys and sshd -t accepts the configuration.
docker run --rm --network none --entrypoint /bin/sh "$image" -c \
  'ssh-keygen -A >/dev/null && /usr/sbin/sshd -t && ls /etc/ssh/ssh_host_ed25519_key.pub >/dev/null'
