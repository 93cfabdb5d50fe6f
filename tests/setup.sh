#!/usr/bin/env bash
# tests/setup.sh: install what the full test suite needs, then build the
# Linux guest. Idempotent; a second run takes seconds.
#
#   Debian packages: the kernel build's (kernels/build.sh installs those
#   itself) plus the comparison peers: crun and runc (the container side),
#   qemu-system-x86 (the peer VMM), busybox-static and cpio (the rootfs).
#   The Linux guest: kernels/build.sh, cached outside the clone under
#   ~/.cache/tinyvmm/kernels/<hash of config, patches and source version>.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(crun runc qemu-system-x86 busybox-static cpio)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}" >&2
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

bash "$repo/kernels/build.sh"
