//! Snapshots of the Linux guest (issue 13) at its warm ready point
//! (`tinyvmm.ready=1`, kernels/initramfs/init): two boots in all, each
//! saved once and restored twice, since a boot costs ~20-60 s where guest
//! kernel code is emulated.
//!
//! 1. initramfs: `run --snapshot-on-marker` exits 0; each `restore`, fed
//!    one request line, prints TINYVMM-GUEST-OK and exits 5.
//! 2. root on a virtio disk: the same, each restore on its own copy of
//!    the image (`--disk`), made after the snapshot.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Outcome, assert_status, guest_pair, run, run_kernel};

/// A boot takes 20-60 s on kvm_pvm; allow for a loaded host.
const T: Duration = Duration::from_secs(900);
const BASE: &str = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet";

fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tinyvmm-snaplinux-{}-{tag}", std::process::id()))
}

fn restored(out: &Outcome, what: &str) {
    assert_eq!(
        out.code,
        Some(5),
        "{what}: stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("TINYVMM-GUEST-OK"),
        "{what}: {}",
        out.stdout
    );
    eprintln!("{what}: {:?}", out.elapsed);
}

#[test]
fn linux_saved_at_its_ready_point_restores_twice() {
    let Some((kernel, initrd)) = guest_pair(
        "linux_saved_at_its_ready_point_restores_twice",
        "vmlinux",
        "initramfs.cpio",
    ) else {
        return;
    };
    let dir = scratch("initramfs");
    let d = dir.to_str().unwrap();
    let cmdline = format!("{BASE} tinyvmm.ready=1 tinyvmm.exit=5");
    let out = run_kernel(
        &kernel,
        &cmdline,
        &["--initrd", &initrd, "--snapshot-on-marker", d],
        T,
    );
    eprintln!("boot to the ready point: {:?}", out.elapsed);
    assert_status(&out, 0);
    assert!(out.stderr.contains("snapshot saved in"), "{}", out.stderr);
    assert!(out.stdout.contains("tinyvmm-init: ready"), "{}", out.stdout);
    assert!(!out.stdout.contains("TINYVMM-GUEST-OK"), "{}", out.stdout);
    for i in 0..2 {
        restored(
            &run(&["restore", d], b"request\n", T),
            &format!("restore {i}"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn linux_with_a_disk_root_restores_on_copies_of_the_image() {
    let Some((kernel, image)) = guest_pair(
        "linux_with_a_disk_root_restores_on_copies_of_the_image",
        "vmlinux",
        "rootfs.ext4",
    ) else {
        return;
    };
    let dir = scratch("disk");
    let d = dir.to_str().unwrap();
    let root = scratch("root.ext4");
    std::fs::copy(&image, &root).unwrap();
    let disk = format!("path={}", root.display());
    let cmdline = format!("{BASE} root=/dev/vda rw tinyvmm.ready=1 tinyvmm.exit=5");
    let out = run_kernel(
        &kernel,
        &cmdline,
        &["--disk", &disk, "--snapshot-on-marker", d],
        T,
    );
    assert_status(&out, 0);
    let copies: Vec<PathBuf> = (0..2).map(|i| scratch(&format!("copy{i}.ext4"))).collect();
    for c in &copies {
        std::fs::copy(&root, c).unwrap();
    }
    for (i, c) in copies.iter().enumerate() {
        let out = run(
            &["restore", d, "--disk", c.to_str().unwrap()],
            b"request\n",
            T,
        );
        restored(&out, &format!("restore {i} on its copy"));
    }
    for p in copies.iter().chain([&root]) {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
