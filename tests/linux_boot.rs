//! Boots of the real Linux guest built by `kernels/build.sh`.
//!
//! Slow where guest kernel code is emulated (about 30-50 s per boot on our
//! kvm_pvm machines, ~100 ms on hardware KVM), so they are few, quiet and
//! have generous timeouts. They skip with a printed reason when /dev/kvm or
//! the built kernel is missing, and run for real when both are there.

mod common;

use std::time::Duration;

use common::{assert_status, guest_pair, run_kernel};

/// Several minutes: a boot takes ~45 s here, and two may share the CPUs.
const T: Duration = Duration::from_secs(600);
const BASE: &str = "console=ttyS0 reboot=k panic=1 pci=off io_delay=none quiet";

#[test]
fn vmlinux_boots_to_user_space_and_exits_0() {
    let Some((kernel, initrd)) = guest_pair(
        "vmlinux_boots_to_user_space_and_exits_0",
        "vmlinux",
        "initramfs.cpio",
    ) else {
        return;
    };
    // The same boot checks the entropy device (on by default): the
    // guest's hw_random core picked it and reads from /dev/hwrng work.
    let cmdline = format!("{BASE} tinyvmm.hwrng=1");
    let out = run_kernel(
        &kernel,
        &cmdline,
        &[
            "--initrd",
            &initrd,
            "--console",
            "serial",
            "--boot-timer",
            "--stats",
        ],
        T,
    );
    eprintln!("vmlinux boot: {:?}\n{}", out.elapsed, out.stderr);
    assert_status(&out, 0);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"), "{}", out.stdout);
    assert!(
        out.stderr.contains("boot marker: boot timer"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("tinyvmm-init: hwrng current=virtio_rng.0 read=256"),
        "the guest's hw_random did not use the virtio entropy device: {}",
        out.stdout
    );
    // The VMM gave at least what the guest read from /dev/hwrng.
    let given = entropy_bytes(&out.stderr).expect("a --stats line for the entropy device");
    assert!(given >= 256, "the device gave {given} bytes");
}

/// The bytes figure of `--stats`' "virtio entropy: N requests, B bytes" line.
fn entropy_bytes(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.contains("virtio entropy:"))?;
    let after = line.split("requests, ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn bzimage_boots_and_passes_the_workload_status_through() {
    let test = "bzimage_boots_and_passes_the_workload_status_through";
    let Some((kernel, initrd)) = guest_pair(test, "bzImage", "initramfs.cpio") else {
        return;
    };
    let cmdline = format!("{BASE} tinyvmm.exit=7");
    let out = run_kernel(
        &kernel,
        &cmdline,
        &["--initrd", &initrd, "--console", "serial"],
        T,
    );
    eprintln!("bzImage boot: {:?}", out.elapsed);
    assert_status(&out, 7);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"), "{}", out.stdout);
}

#[test]
fn guest_kernel_panic_exits_120() {
    let test = "guest_kernel_panic_exits_120";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs.cpio") else {
        return;
    };
    // An init that exits at once: "Kernel panic - not syncing: Attempted to
    // kill init!", then panic=1 reboots through the i8042 after a second.
    let cmdline = format!("{BASE} rdinit=/bin/false");
    let out = run_kernel(
        &kernel,
        &cmdline,
        &["--initrd", &initrd, "--console", "serial"],
        T,
    );
    eprintln!("panic boot: {:?}", out.elapsed);
    assert_status(&out, 120);
    assert!(
        out.stdout.contains("Kernel panic - not syncing"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("guest kernel panic"), "{}", out.stderr);
}
