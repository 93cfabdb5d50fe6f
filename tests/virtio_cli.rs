//! The virtio console from the command line, with the embedded tiny guest
//! and a hand-assembled one: it is the default console, it is announced on
//! the kernel command line, `--console serial|none` leave it out, and a
//! guest that never starts it gets a warning naming the fix.

mod common;

use std::time::Duration;

use common::{TempFile, elf_with_code, kvm_available, run};

const T: Duration = Duration::from_secs(60);
const DEVICE: &str = "virtio_mmio.device=4K@0xd0000000:5";

#[test]
fn the_virtio_console_is_the_default_and_is_announced_to_the_guest() {
    if !kvm_available("the_virtio_console_is_the_default_and_is_announced_to_the_guest") {
        return;
    }
    // The tiny guest prints its command line on the 8250 and drives the
    // virtio console itself.
    let out = run(&["run", "--stats"], b"", T);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("console=hvc0 "), "{}", out.stdout);
    assert!(out.stdout.contains(DEVICE), "{}", out.stdout);
    assert!(out.stderr.contains("virtio console: "), "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

#[test]
fn serial_and_none_consoles_attach_no_virtio_device() {
    if !kvm_available("serial_and_none_consoles_attach_no_virtio_device") {
        return;
    }
    // Without the entropy device (on by default), no virtio device at all.
    let serial = run(&["run", "--console", "serial", "--rng", "off"], b"", T);
    assert_eq!(serial.code, Some(0), "{}", serial.stderr);
    assert!(
        serial.stdout.contains("console=ttyS0 "),
        "{}",
        serial.stdout
    );
    assert!(!serial.stdout.contains("virtio_mmio.device"));
    let none = run(&["run", "--console", "none", "--rng", "off"], b"", T);
    assert_eq!(none.code, Some(0), "{}", none.stderr);
    assert!(!none.stdout.contains("console="), "{}", none.stdout);
    assert!(!none.stdout.contains("virtio_mmio.device"));
    assert_eq!(none.stdout, "", "--console none puts nothing on stdout");
}

/// Reaches "user space" (0x41 to port 0x80) and ends with status 0 on the
/// debug-exit port, printing nothing and never touching the virtio console.
const SILENT_GUEST: &[u8] = &[
    0xb0, 0x41, //       mov al, 0x41
    0xe6, 0x80, //       out 0x80, al   -> boot marker "user space"
    0xb0, 0x00, //       mov al, 0
    0xe6, 0xf4, //       out 0xf4, al   -> debug-exit, status 0
    0xf4, 0xeb, 0xfe, // hlt; jmp $
];

#[test]
fn a_guest_that_never_starts_the_virtio_console_gets_a_warning() {
    if !kvm_available("a_guest_that_never_starts_the_virtio_console_gets_a_warning") {
        return;
    }
    let kernel = TempFile::with("silent", &elf_with_code(SILENT_GUEST));
    let args = ["run", "--kernel", kernel.path(), "--serial", "off"];
    let out = run(&args, b"", T);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("has not started the virtio console"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--console serial"), "{}", out.stderr);
    // With the 8250 as the console there is nothing to warn about.
    let serial = run(&[&args[..], &["--console", "serial"]].concat(), b"", T);
    assert!(
        !serial.stderr.contains("virtio console"),
        "{}",
        serial.stderr
    );
}
