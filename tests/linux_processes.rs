//! Many short-lived processes in one Linux guest boot (issue 17).
//!
//! On our kvm_pvm machines guest user processes were reported to die at
//! random, `segfault at 0` in their first TLS access, about 12 in 40
//! processes under every VMM. These tests boot the project's guest once
//! with `tinyvmm.selftest=procs` (kernels/initramfs/init): /init starts
//! 234 processes, most of them busybox in pipelines (two at a time), each
//! checked for its exit status and output, then /bin/tlscheck checks the FS
//! base of 20 freshly exec'd processes and the SSE registers of two
//! processes taking turns, and finally dmesg is searched for `segfault`.
//!
//! One boot per VMM: a boot costs ~30 s on kvm_pvm and the 234 processes
//! about two minutes more (each process start runs through the emulated
//! guest kernel), ~1 s in all on hardware KVM. QEMU microvm runs the same
//! guest as a cross-check when `qemu-system-x86_64` is installed. The two
//! tests take turns (a mutex): two guests at once each run far slower than
//! half speed on a 2-core kvm_pvm host.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{guest_pair, run, run_program};
use tinyvmm::lab::qemu::{self, Microvm};

/// Generous: boot + 234 processes took 2m50s on a lightly loaded kvm_pvm
/// host, and 7m18s (tinyvmm) / 5m34s (QEMU) at a load average of about 10.
const T: Duration = Duration::from_secs(1200);
const BASE: &str = "reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.selftest=procs";
/// What /init's self-test starts at least (the issue asks for 200).
const MIN_PROCESSES: u32 = 200;

/// One guest at a time (see the module doc).
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// The self-test's numbers from the guest console:
/// `TINYVMM-SELFTEST procs: processes=N failed=F segfaults=S`.
fn summary(stdout: &str) -> Option<(u32, u32, u32)> {
    let line = stdout
        .lines()
        .find_map(|l| l.split("TINYVMM-SELFTEST procs: ").nth(1))?;
    let field = |name: &str| -> Option<u32> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.trim_end_matches('\r').parse().ok())
    };
    Some((
        field("processes=")?,
        field("failed=")?,
        field("segfaults=")?,
    ))
}

/// Asserts a clean self-test on `stdout`; `who` names the VMM.
fn assert_selftest_passed(who: &str, stdout: &str, stderr: &str) {
    let Some((processes, failed, segfaults)) = summary(stdout) else {
        panic!("{who}: no TINYVMM-SELFTEST summary line\nstdout: {stdout}\nstderr: {stderr}");
    };
    eprintln!("{who}: processes={processes} failed={failed} segfaults={segfaults}");
    assert!(
        processes >= MIN_PROCESSES,
        "{who}: only {processes} processes\n{stdout}"
    );
    assert_eq!(segfaults, 0, "{who}: segfaults in the guest\n{stdout}");
    assert_eq!(failed, 0, "{who}: failed processes or checks\n{stdout}");
    assert!(stdout.contains("TINYVMM-SELFTEST: PASS"), "{who}: {stdout}");
}

#[test]
fn tinyvmm_guest_runs_200_processes_without_a_segfault() {
    let test = "tinyvmm_guest_runs_200_processes_without_a_segfault";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs.cpio") else {
        return;
    };
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let cmdline = format!("console=hvc0 {BASE}");
    let out = run(
        &[
            "run",
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--cmdline",
            &cmdline,
        ],
        b"",
        T,
    );
    eprintln!("tinyvmm self-test boot: {:?}", out.elapsed);
    // /init reports the self-test's status through the debug-exit register.
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert_selftest_passed("tinyvmm", &out.stdout, &out.stderr);
}

#[test]
fn qemu_guest_runs_200_processes_without_a_segfault() {
    let test = "qemu_guest_runs_200_processes_without_a_segfault";
    let Some((kernel, initrd)) = guest_pair(test, "vmlinux", "initramfs.cpio") else {
        return;
    };
    let Some(qemu) = qemu::find() else {
        eprintln!("SKIP {test}: qemu-system-x86_64 is not installed");
        return;
    };
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    // The lab's one QEMU microvm command line, with this host's options
    // (on kvm_pvm the guest kernel cannot run XSAVE etc.).
    let args = Microvm::new(
        Path::new(&kernel),
        Path::new(&initrd),
        &format!("console=ttyS0 {BASE}"),
        "128M",
        tinyvmm::host::kvm_emulates_guest_kernel(),
    )
    .args();
    let start = Instant::now();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_program(&qemu.to_string_lossy(), &args, T);
    let (code, stdout, stderr) = (out.code, out.stdout, out.stderr);
    eprintln!("QEMU self-test boot: {:?}", start.elapsed());
    // QEMU has no debug-exit register at our address: /init falls back to
    // `reboot -f`, the i8042 reset, and -no-reboot makes QEMU exit 0. The
    // verdict is the console's summary line.
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_selftest_passed("QEMU", &stdout, &stderr);
}

#[test]
fn summary_line_is_parsed() {
    let s = "x\r\nTINYVMM-SELFTEST procs: processes=234 failed=0 segfaults=3\r\nTINYVMM-SELFTEST: FAIL\r\n";
    assert_eq!(summary(s), Some((234, 0, 3)));
    assert_eq!(summary("nothing"), None);
}
