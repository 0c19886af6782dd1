#!/usr/bin/env bash
# Installs the host tools the tests use (NBD clients, reference servers, fio, etcd, Prometheus,
# filesystems), only those missing. Debian 12; needs root only when something must be installed.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# package:command that shows it is installed
REQUIRED=(
  qemu-utils:qemu-io
  libnbd-bin:nbdinfo
  nbdkit:nbdkit
  fio:fio
  nbdfuse:nbdfuse
  fuse3:fusermount3
  e2fsprogs:mkfs.ext4
  xfsprogs:mkfs.xfs
  etcd-server:etcd
  etcd-client:etcdctl
  prometheus:prometheus
  prometheus-alertmanager:prometheus-alertmanager
  strace:strace
)

missing=()
for entry in "${REQUIRED[@]}"; do
  command -v "${entry#*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -ne 0 ]; then
  echo "setup-host.sh: missing packages: ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "setup-host.sh: installing ${missing[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup-host.sh: installing ${missing[*]} failed (output above)" >&2
  exit 1
fi
