//! `--stats` splits resident memory between guest RAM and the VMM on both
//! sides of the MMIO gap: with RAM above 3 GiB the guest has two host
//! mappings that the kernel may merge into one, which once put all guest
//! pages on the VMM's side (4G: "guest 0.00 MiB").

mod common;

use std::time::Duration;

use common::{kvm_available, run, vmm_resident_mib};

/// "guest RAM touched X MiB" from the `--stats` line.
fn guest_mib(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("resident memory at exit"))
        .unwrap_or_else(|| panic!("no resident-memory line in:\n{stderr}"));
    let after = line
        .split("guest RAM touched")
        .nth(1)
        .expect("guest figure");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// "X MiB private, Y MiB file-backed" from the `--stats` line.
fn vmm_split_mib(stderr: &str) -> (f64, f64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("resident memory at exit"))
        .unwrap_or_else(|| panic!("no resident-memory line in:\n{stderr}"));
    let figure = |before: &str| -> f64 {
        let head = line.split(before).next().expect("split");
        head.split_whitespace()
            .next_back()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no figure before {before:?} in {line}"))
    };
    (figure(" MiB private"), figure(" MiB file-backed"))
}

#[test]
fn stats_split_guest_and_vmm_memory_below_and_above_the_mmio_gap() {
    if !kvm_available("stats_split_guest_and_vmm_memory_below_and_above_the_mmio_gap") {
        return;
    }
    let mut seen = Vec::new();
    for memory in ["128M", "3G", "4G", "6G"] {
        for touch in [1, 8] {
            let cmdline = format!("tiny.quiet tiny.touch={touch}");
            let out = run(
                &[
                    "run",
                    "--stats",
                    "--console",
                    "none",
                    "--memory",
                    memory,
                    "--cmdline",
                    &cmdline,
                ],
                b"",
                Duration::from_secs(60),
            );
            assert_eq!(out.code, Some(0), "{memory}: {}", out.stderr);
            let (guest, vmm) = (guest_mib(&out.stderr), vmm_resident_mib(&out.stderr));
            // The guest touched `touch` MiB plus its own few pages (the
            // kernel image, page tables, queues): under 1 MiB more.
            let t = touch as f64;
            assert!(
                guest >= t && guest < t + 1.0,
                "{memory} touch {touch}: guest {guest} MiB\n{}",
                out.stderr
            );
            assert!(
                vmm > 0.5 && vmm < 16.0,
                "{memory} touch {touch}: VMM {vmm} MiB\n{}",
                out.stderr
            );
            // The VMM's share splits into private and file-backed pages
            // that add up to it; the private part is the heap and stacks
            // (never zero), the file-backed part at least the executable's
            // pages that ran.
            let (private, file) = vmm_split_mib(&out.stderr);
            assert!(
                (private + file - vmm).abs() <= 0.02 && private > 0.0 && file > 0.0,
                "{memory} touch {touch}: VMM {vmm} = private {private} + file {file}?\n{}",
                out.stderr
            );
            seen.push((memory, touch, guest, vmm));
        }
    }
    eprintln!("(memory, touch MiB, guest MiB, VMM MiB): {seen:?}");
}
