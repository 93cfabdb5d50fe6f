#!/usr/bin/env bash
# kernels/build.sh: build the Linux guest kernel and initramfs for tinyvmm.
#
# Usage: bash kernels/build.sh            (from any directory; no arguments)
#
# Produces, in ${TINYVMM_KERNEL_DIR:-<repo>/target/kernels}:
#   vmlinux          uncompressed ELF kernel with a PVH entry note. The main
#                    boot image: VMMs load it directly, with no decompressor
#                    running in (on some hosts emulated) guest kernel mode.
#   bzImage          the same kernel as a compressed bzImage (LZ4), for VMMs
#                    or tests that want the Linux boot protocol.
#   config           the exact .config the kernel was built with.
#   initramfs.cpio   UNCOMPRESSED newc cpio (owner root) of rootfs/.
#   initramfs-vsock.cpio  the same plus /bin/vsockt (the vsock tests' guest
#                    tool, ~800 KB, kept out of the default initramfs).
#   rootfs.ext4      the same tree as a 32 MiB ext4 image (mkfs.ext4 -d),
#                    for a root file system on a virtio disk.
#   rootfs/          the tree the initramfs is made of: static busybox,
#                    /init (kernels/initramfs/init), /etc/fstab,
#                    /bin/tinyvmm-workload (kernels/initramfs/workload) and
#                    /bin/tlscheck (kernels/initramfs/tlscheck.c, self-test).
#                    A real directory (runc refuses a symlinked rootfs), so
#                    the container side can use it as an OCI rootfs.
#
# Kernel: Debian's linux-source-6.1, `make tinyconfig`, plus the fragment
# kernels/linux/tinyvmm.config, plus kernels/linux/patches/*.patch (each
# explains itself in its header). The result is cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tinyvmm/kernels/<hash>/
# where <hash> is a sha256 over everything that determines the kernel: the
# kernel part of this script (see "Cache key" below), the fragment, the
# patches, the linux-source package version and the compiler version. A
# cache hit copies the cached images and takes under a second; a miss
# extracts the source there (never inside the clone) and builds it (4 min
# on our 2-core machines). The initramfs is cheap and rebuilt on every run.
#
# Environment:
#   TINYVMM_KERNEL_DIR           output directory (default <repo>/target/kernels)
#   XDG_CACHE_HOME               cache root (default ~/.cache)
#   TINYVMM_KEEP_KERNEL_TREE=1   keep the extracted+built source tree in the
#                                cache (default: deleted after a successful
#                                build; it is ~1.5 GB and not needed to boot)
#
# See kernels/README.md for the guest interface (command line options, MMIO
# registers) and docs/host-kvm.md for why the kernel looks like this.
set -euo pipefail

# ---------------------------------------------------------------------------
# Locations. Everything is derived from the script's own path so it works
# from any working directory.
# ---------------------------------------------------------------------------
script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
kernels_dir="$(dirname "$script")"
repo="$(dirname "$kernels_dir")"
out="${TINYVMM_KERNEL_DIR:-$repo/target/kernels}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/tinyvmm/kernels"
fragment="$kernels_dir/linux/tinyvmm.config"
initramfs_src="$kernels_dir/initramfs"
src_pkg=linux-source-6.1
src_tarball=/usr/src/linux-source-6.1.tar.xz

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# Patches in lexical order (0001-..., 0002-...), independent of locale.
mapfile -t patches < <(LC_ALL=C find "$kernels_dir/linux/patches" -maxdepth 1 \
	-name '*.patch' -type f 2>/dev/null | LC_ALL=C sort)

# ---------------------------------------------------------------------------
# 1. Build dependencies, installed only when missing (apt-get update first,
#    since a fresh container has no package lists).
# ---------------------------------------------------------------------------
# (No libssl-dev: without modules nothing is signed, no host tool links
# OpenSSL. lz4: the bzImage compressor, see the config fragment.)
deps=(linux-source-6.1 flex bison bc libelf-dev xz-utils lz4
      busybox-static cpio build-essential e2fsprogs)
missing=()
for p in "${deps[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
		|| missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing missing packages: ${missing[*]}"
	((EUID == 0)) || die "need root to install: ${missing[*]}"
	# Another apt/dpkg may be running (CI set-up): wait for its lock.
	apt-get -o DPkg::Lock::Timeout=600 update
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		install -y --no-install-recommends "${missing[@]}"
fi
[[ -f $src_tarball ]] || die "$src_tarball missing although $src_pkg is installed"

# ---------------------------------------------------------------------------
# 2. Cache key. Anything that changes the kernel binary must be in here.
#    Paths are hashed relative to kernels/ so the key is the same in every
#    clone. Of this script, the part above the line "@@ END OF KERNEL PART
#    @@" is hashed, without its comment lines (editing a comment does not
#    cost a 4-minute rebuild): everything that influences the kernel build
#    must stay above that line; the initramfs code below it can change
#    freely.
# ---------------------------------------------------------------------------
src_version="$(dpkg-query -W -f='${Version}' "$src_pkg")"
hash="$(
	{
		printf 'package %s %s\n' "$src_pkg" "$src_version"
		printf 'compiler %s\n' "$(gcc --version | head -n1)"
		printf '== build.sh (kernel part)\n'
		sed -e '/^# @@ END OF KERNEL PART @@/q' "$script" | grep -Ev '^[[:space:]]*#'
		for f in "$fragment" "${patches[@]}"; do
			printf '== %s\n' "${f#"$kernels_dir"/}"
			cat "$f"
		done
	} | sha256sum | cut -d' ' -f1
)"
work="$cache_root/$hash"
mkdir -p "$cache_root" "$out"

# One build at a time per cache (concurrent test runs, two engineers'
# scripts): the second waiter then finds the first one's result cached.
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
	log "waiting for another build.sh holding $cache_root/.lock"
	flock 9
fi

# ---------------------------------------------------------------------------
# 3. Kernel configuration: tinyconfig + fragment, then verify.
# ---------------------------------------------------------------------------

# check_config FRAGMENT CONFIG: every line of the fragment must hold in the
# final .config. Kconfig silently drops a request whose dependencies are
# unmet (or that a choice overrides), so without this check a missing
# option shows up only as a guest that does not boot.
check_config() {
	local frag="$1" cfg="$2" line sym val bad=0
	while IFS= read -r line; do
		if [[ $line =~ ^CONFIG_([A-Za-z0-9_]+)=(.*)$ ]]; then
			sym="${BASH_REMATCH[1]}" val="${BASH_REMATCH[2]}"
			if ! grep -qxF "CONFIG_$sym=$val" "$cfg"; then
				log "config: CONFIG_$sym wanted $val, got: $(grep -E "^(# )?CONFIG_$sym[= ]" "$cfg" || echo 'absent (dependencies unmet?)')"
				bad=1
			fi
		elif [[ $line =~ ^#\ CONFIG_([A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			sym="${BASH_REMATCH[1]}"
			if grep -qE "^CONFIG_$sym=" "$cfg"; then
				log "config: CONFIG_$sym wanted off, got: $(grep -E "^CONFIG_$sym=" "$cfg")"
				bad=1
			fi
		fi
	done <"$frag"
	((bad == 0)) || die "kernel config does not match $frag (options named above)"
}

build_kernel() {
	local tree="$work/src"
	log "kernel cache miss: building $src_pkg $src_version in $tree"
	# Source trees of other entries are leftovers of failed or kept
	# builds (1.5 GB each); their finished images stay cached.
	local old
	for old in "$cache_root"/*/src; do
		[[ -d $old && $old != "$tree" ]] || continue
		log "removing stale build tree $old"
		rm -rf "$old"
	done
	rm -rf "$tree" "$work"/*.tmp
	mkdir -p "$work"

	# Pristine source for every new hash: a patch that changed must not
	# meet a tree that already has the old one applied (13 s to extract).
	log "extracting $src_tarball"
	tar -xf "$src_tarball" -C "$work"
	mv "$work/linux-source-6.1" "$tree"

	local p
	for p in "${patches[@]}"; do
		log "applying $(basename "$p")"
		patch -d "$tree" -p1 --forward --batch --quiet <"$p" \
			|| die "patch does not apply: $p"
	done

	# Build identity does not matter to a guest; fixing it makes the
	# banner the same for every builder.
	# ARCH=x86_64, not the host default ARCH=x86: with x86 tinyconfig
	# (allnoconfig) would pick a 32-bit kernel and 32-bit choices.
	local -a kmake=(make -C "$tree" -s ARCH=x86_64
		KBUILD_BUILD_USER=tinyvmm KBUILD_BUILD_HOST=tinyvmm)
	"${kmake[@]}" tinyconfig
	# -m: merge only; olddefconfig below resolves dependencies and
	# fills in defaults for the options the fragment made visible.
	(cd "$tree" && scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null)
	"${kmake[@]}" olddefconfig
	check_config "$fragment" "$tree/.config"

	log "compiling with $(nproc) jobs"
	local t0=$SECONDS
	"${kmake[@]}" -j"$(nproc)" vmlinux bzImage
	log "kernel compiled in $((SECONDS - t0)) s"

	# The VMMs we use boot vmlinux through its PVH note (XEN_ELFNOTE_PHYS32_ENTRY).
	readelf -n "$tree/vmlinux" | grep -q 'Xen' \
		|| die "vmlinux has no PVH (Xen) ELF note; is CONFIG_PVH on?"

	# Publish atomically: a cached entry is complete or absent.
	cp "$tree/vmlinux" "$work/vmlinux.tmp"
	cp "$tree/arch/x86/boot/bzImage" "$work/bzImage.tmp"
	cp "$tree/.config" "$work/config.tmp"
	mv "$work/config.tmp" "$work/config"
	mv "$work/bzImage.tmp" "$work/bzImage"
	mv "$work/vmlinux.tmp" "$work/vmlinux"

	if [[ ${TINYVMM_KEEP_KERNEL_TREE:-0} != 1 ]]; then
		rm -rf "$tree"
	fi
}

t_start=$SECONDS
if [[ -s $work/vmlinux && -s $work/bzImage && -s $work/config ]]; then
	log "kernel cache hit: $work"
else
	build_kernel
fi

# @@ END OF KERNEL PART @@ (see "Cache key": only the script text above this
# line is hashed into the kernel cache key; nothing below may affect the
# kernel build).

# Copy (not hard-link) into the output directory, via a temporary name so a
# VMM reading the old file meanwhile never sees a half-written one, and so
# nothing done to target/ can corrupt the cache.
# An identical file is left alone (other sessions may be booting it).
install_file() {
	cmp -s "$1" "$2" && return 0
	cp "$1" "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}
install_file "$work/vmlinux" "$out/vmlinux"
install_file "$work/bzImage" "$out/bzImage"
install_file "$work/config" "$out/config"

# ---------------------------------------------------------------------------
# 4. Initramfs: static busybox + /init + the workload, as an uncompressed
#    newc cpio. Rebuilt every run (well under a second) in a staging
#    directory; rootfs/ and initramfs.cpio are replaced only when the
#    (reproducible) archive changed, so a VM or container using them
#    meanwhile is not disturbed by a no-op run.
# ---------------------------------------------------------------------------
final_rootfs="$out/rootfs"
rootfs="$out/.rootfs.tmp.$$"
busybox=/bin/busybox # from busybox-static: no shared libraries needed
[[ -L $final_rootfs ]] && die "$final_rootfs is a symlink; runc refuses those, remove it"
rm -rf "$rootfs"
trap 'rm -rf "$rootfs" "$out/initramfs.cpio.tmp.$$" "$out/.vsockt.tmp.$$"' EXIT
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
install -m 0755 "$busybox" "$rootfs/bin/busybox"

# Applet symlinks. Debian's busybox-static is built with
# FEATURE_SH_STANDALONE/PREFER_APPLETS: its shell runs every applet without
# looking at PATH, so /init, the workload and an interactive shell need no
# symlinks at all. Each cpio entry costs boot time where guest kernel code
# is emulated (the initramfs unpacker creates every one of them), so only
# what something may exec() by path gets a link: bin/sh for the #!
# lines, the applets /init and the workload use (so they also run from a
# non-busybox parent, e.g. `runc exec`), and a few interactive basics.
# Relative links at busybox's usual places, and not `busybox --install -s`:
# that links to the absolute path of the running binary on this machine.
applets=(sh mount umount devmem setsid cttyhack reboot dd rm cat echo ls ps
	mkdir sleep env ip nc wget httpd)
declare -A applet_path=()
while IFS= read -r path; do
	applet_path[$(basename "$path")]="$path"
done < <("$busybox" --list-full)
for a in "${applets[@]}"; do
	path="${applet_path[$a]:-}"
	[[ -n $path ]] || die "busybox has no applet $a"
	case "$(dirname "$path")" in
	bin) target=busybox ;;
	sbin) target=../bin/busybox ;;
	usr/bin | usr/sbin) target=../../bin/busybox ;;
	*) die "unexpected busybox applet path: $path" ;;
	esac
	ln -sfn "$target" "$rootfs/$path"
done

install -m 0755 "$initramfs_src/init" "$rootfs/init"
# With the root on a disk the kernel runs /sbin/init: the same script.
ln -sfn ../init "$rootfs/sbin/init"
install -m 0755 "$initramfs_src/workload" "$rootfs/bin/tinyvmm-workload"
# /bin/tlscheck: the FS-base (TLS) and SSE-state checker of the self-test
# (tinyvmm.selftest=procs, see initramfs/init). Freestanding C, no libc:
# it checks the TLS set-up that a libc would itself depend on. ~10 KB.
gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie \
	-fno-asynchronous-unwind-tables -Wall -Wextra -Werror \
	-o "$rootfs/bin/tlscheck" "$initramfs_src/tlscheck.c" \
	|| die "cannot build $initramfs_src/tlscheck.c"
chmod 0755 "$rootfs/bin/tlscheck"
# /bin/diskbench: in-guest disk throughput and IOPS with O_DIRECT
# (tinyvmm.diskbench=, benches/disk.rs). Freestanding C like tlscheck.
gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie \
	-fno-asynchronous-unwind-tables -Wall -Wextra -Werror \
	-o "$rootfs/bin/diskbench" "$initramfs_src/diskbench.c" \
	|| die "cannot build $initramfs_src/diskbench.c"
chmod 0755 "$rootfs/bin/diskbench"
# /bin/vsockt: the guest side of the vsock tests and benchmark
# (tinyvmm.vsock=PORT, see initramfs/init): an AF_VSOCK server busybox
# cannot be. Static glibc, ~800 KB: unpacking it cost every initramfs boot
# 0.65 s on a kvm_pvm host (docs/profiling.md), so it is NOT in rootfs/ or
# initramfs.cpio but only in initramfs-vsock.cpio (below), the archive the
# vsock tests and benchmark boot.
vsockt_tree="$out/.vsockt.tmp.$$"
rm -rf "$vsockt_tree"
mkdir -p "$vsockt_tree/bin"
gcc -O2 -static -Wall -Wextra -Werror -o "$vsockt_tree/bin/vsockt" "$initramfs_src/vsockt.c" \
	|| die "cannot build $initramfs_src/vsockt.c"
strip "$vsockt_tree/bin/vsockt"
chmod 0755 "$vsockt_tree/bin/vsockt"
install -m 0644 "$initramfs_src/fstab" "$rootfs/etc/fstab"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

# The kernel opens /dev/console for init's stdio BEFORE /init can mount
# devtmpfs, so the node must be in the archive. mknod needs root; without
# it /init reopens /dev/console itself after mounting devtmpfs.
if ((EUID == 0)); then
	mknod -m 0600 "$rootfs/dev/console" c 5 1
else
	log "not root: no /dev/console node in the initramfs (init copes)"
fi

# Reproducible archive: sorted names, fixed mtimes, root owner,
# renumbered inodes. Uncompressed on purpose (see the header).
find "$rootfs" -exec touch -h -d @0 {} +
(
	cd "$rootfs"
	find . -print0 | LC_ALL=C sort -z |
		cpio --null --create --format=newc --owner=0:0 --reproducible --quiet
) >"$out/initramfs.cpio.tmp.$$"
if [[ -d $final_rootfs ]] && cmp -s "$out/initramfs.cpio.tmp.$$" "$out/initramfs.cpio"; then
	log "initramfs unchanged"
else
	# rootfs/ is briefly absent between the two renames; the archive
	# is replaced atomically.
	rm -rf "$final_rootfs.old.$$"
	[[ -e $final_rootfs ]] && mv "$final_rootfs" "$final_rootfs.old.$$"
	mv "$rootfs" "$final_rootfs"
	rm -rf "$final_rootfs.old.$$"
	mv -f "$out/initramfs.cpio.tmp.$$" "$out/initramfs.cpio"
fi

# initramfs-vsock.cpio: initramfs.cpio followed by a second archive holding
# /bin/vsockt. The kernel unpacks concatenated newc archives in order into
# one root, so this is the initramfs plus vsockt (Linux's
# Documentation/driver-api/early-userspace/buffer-format.rst).
find "$vsockt_tree" -exec touch -h -d @0 {} +
(
	cd "$vsockt_tree"
	find ./bin/vsockt -print0 |
		cpio --null --create --format=newc --owner=0:0 --reproducible --quiet
) | cat "$out/initramfs.cpio" - >"$out/initramfs-vsock.cpio.tmp.$$"
mv -f "$out/initramfs-vsock.cpio.tmp.$$" "$out/initramfs-vsock.cpio"

# ---------------------------------------------------------------------------
# 5. rootfs.ext4: the same tree as an ext4 image, for a root on a virtio
#    disk (`tinyvmm run --disk path=rootfs.ext4 ... root=/dev/vda rw`).
#    mkfs.ext4 -d copies the tree in: no root privileges, no loop device.
#    32 MiB leaves room to write. Rebuilt when the initramfs is newer;
#    tests write to copies.
# ---------------------------------------------------------------------------
img="$out/rootfs.ext4"
if [[ ! -f $img || $out/initramfs.cpio -nt $img ]]; then
	rm -f "$img.tmp.$$"
	mkfs.ext4 -q -F -L tinyvmm-root -d "$final_rootfs" -E root_owner=0:0 \
		"$img.tmp.$$" 32M || die "mkfs.ext4 of $final_rootfs failed"
	mv -f "$img.tmp.$$" "$img"
fi

# ---------------------------------------------------------------------------
# 6. Summary.
# ---------------------------------------------------------------------------
log "done in $((SECONDS - t_start)) s (kernel $src_pkg $src_version, cache $work)"
for f in vmlinux bzImage initramfs.cpio initramfs-vsock.cpio rootfs.ext4 config; do
	printf '  %-48s %10s bytes\n' "$out/$f" "$(stat -c %s "$out/$f")"
done
printf '  %-48s %10s\n' "$final_rootfs/" "($(du -sh "$final_rootfs" | cut -f1))"
