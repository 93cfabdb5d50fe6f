//! The Linux guest on the virtio console (hvc0) with the 8250 absent: the
//! workload's TINYVMM-GUEST-OK arrives on hvc0, commands piped into stdin
//! run in the guest's shell, and a payload pushed from the guest in raw tty
//! mode arrives byte for byte.
//!
//! One boot only: a Linux boot costs 30-50 s where KVM emulates guest
//! kernel mode (kvm_pvm), ~100 ms on hardware KVM. Skips with a printed
//! reason when /dev/kvm or the kernel (`kernels/build.sh`, directory
//! overridable with TINYVMM_KERNEL_DIR) is missing.

mod common;

use std::time::Duration;

use common::{guest_file, kvm_available, run};

/// Minutes: a boot takes ~45 s here, and over 10 min was seen with other
/// VMs and builds sharing the two CPUs.
const TIMEOUT: Duration = Duration::from_secs(1800);
/// Lines of `seq` the guest sends back (about 108 KiB).
const SEQ_LINES: u32 = 20_000;

/// What we type: each check prints something only the shell could compute
/// (`$((40+2))`), so the tty's echo of our input cannot pass for it. The
/// payload goes out with `cat` (4 KiB writes): `seq` straight to the tty
/// makes one write(2), one notification and one interrupt per line, and
/// every guest system call is slow where kernel mode is emulated.
fn script() -> String {
    format!(
        "echo V$((40+2))K\n\
         head -3 /proc/cpuinfo\n\
         tinyvmm-workload\n\
         seq 1 {SEQ_LINES} > /tmp/payload\n\
         echo B$((1+1))GIN; stty raw -echo; cat /tmp/payload; stty sane; echo E$((1+1))ND\n\
         exit\n"
    )
}

#[test]
fn linux_shell_on_hvc0_with_the_serial_port_off() {
    let test = "linux_shell_on_hvc0_with_the_serial_port_off";
    if !kvm_available(test) {
        return;
    }
    let (Some(kernel), Some(initrd)) = (
        guest_file(test, "vmlinux"),
        guest_file(test, "initramfs.cpio"),
    ) else {
        return;
    };
    let cmdline = "console=hvc0 reboot=k panic=1 pci=off io_delay=none quiet tinyvmm.shell=1";
    let out = run(
        &[
            "run",
            "--kernel",
            &kernel.display().to_string(),
            "--initrd",
            &initrd.display().to_string(),
            "--console",
            "virtio",
            "--serial",
            "off",
            "--cmdline",
            cmdline,
            "--stats",
        ],
        script().as_bytes(),
        TIMEOUT,
    );
    eprintln!("virtio console boot: {:?}\n{}", out.elapsed, out.stderr);
    let stdout = &out.stdout;
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        out.stderr
    );
    assert!(stdout.contains("V42K"), "the shell ran our echo: {stdout}");
    assert!(stdout.contains("processor"), "cpuinfo: {stdout}");
    assert!(stdout.contains("TINYVMM-GUEST-OK"), "{stdout}");

    let begin = stdout.find("B2GIN").expect("payload start") + "B2GIN".len();
    let end = stdout[begin..].find("E2ND").expect("payload end") + begin;
    let got = stdout[begin..end].trim_start_matches(['\r', '\n']);
    let want: String = (1..=SEQ_LINES).map(|i| format!("{i}\n")).collect();
    let got = got.trim_end_matches(['\r', '\n']);
    assert_eq!(got.len(), want.trim_end().len(), "payload length");
    assert!(got == want.trim_end(), "payload differs");
    assert!(
        !out.stderr.contains("has not started the virtio console"),
        "{}",
        out.stderr
    );
}
