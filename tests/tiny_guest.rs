//! Boots of the embedded tiny guest (kernels/tiny/): milliseconds even where
//! guest kernel code is emulated, so these run on every `cargo test`.

mod common;

use std::time::Duration;

use common::{Outcome, kvm_available, run};

const T: Duration = Duration::from_secs(60);

/// The 64-byte line the tiny guest's flood repeats.
const FLOOD_LINE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-\n";

fn tiny(test: &str, cmdline: Option<&str>, extra: &[&str]) -> Option<Outcome> {
    tiny_on(test, "serial", cmdline, extra)
}

fn tiny_on(test: &str, console: &str, cmdline: Option<&str>, extra: &[&str]) -> Option<Outcome> {
    if !kvm_available(test) {
        return None;
    }
    let mut args = vec!["run", "--console", console];
    if console == "serial" {
        // No entropy device: with no virtio device on its command line the
        // tiny guest prints nothing about consoles, so its serial output is
        // exactly what these tests expect.
        args.extend_from_slice(&["--rng", "off"]);
    }
    if let Some(c) = cmdline {
        args.extend_from_slice(&["--cmdline", c]);
    }
    args.extend_from_slice(extra);
    Some(run(&args, b"", T))
}

#[test]
fn default_run_with_no_arguments_boots_the_embedded_guest() {
    if !kvm_available("default_run_with_no_arguments_boots_the_embedded_guest") {
        return;
    }
    let out = run(&["run"], b"", T);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("tiny: payload exit(0)"),
        "{}",
        out.stdout
    );
}

#[test]
fn greeting_and_cmdline_on_serial() {
    // The host template adds no kernel arguments, so the line is exactly ours.
    let Some(out) = tiny(
        "greeting_and_cmdline_on_serial",
        Some("tiny.exit=0 foo=bar"),
        &["--cpu-template", "host"],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        "tiny: hello from the tiny guest\ntiny: cmdline: tiny.exit=0 foo=bar\nTINYVMM-GUEST-OK\ntiny: payload exit(0)\n"
    );
}

#[test]
fn payload_exit_status_is_the_process_exit_code() {
    let Some(out) = tiny(
        "payload_exit_status_is_the_process_exit_code",
        Some("tiny.exit=3"),
        &[],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(3), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("tiny: payload exit(3)"));
    let Some(out) = tiny("status_above_119", Some("tiny.quiet tiny.exit=200"), &[]) else {
        return;
    };
    assert_eq!(
        out.code,
        Some(119),
        "statuses above 119 are clamped: {}",
        out.stderr
    );
    assert!(out.stderr.contains("above 119"), "{}", out.stderr);
}

#[test]
fn quiet_run_prints_only_the_marker_and_hits_the_boot_markers() {
    let Some(out) = tiny(
        "quiet_run",
        Some("tiny.quiet"),
        &["--stats", "--boot-timer"],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "TINYVMM-GUEST-OK\n");
    for want in [
        "boot marker: kernel start",
        "boot marker: boot timer",
        "boot marker: user space",
        "mmio 0xc0000000   Write          1",
        "port 0x00f4",
    ] {
        assert!(
            out.stderr.contains(want),
            "missing {want:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn triple_fault_gives_121() {
    let Some(out) = tiny("triple_fault_gives_121", Some("tiny.fault"), &[]) else {
        return;
    };
    assert_eq!(out.code, Some(121), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("triple-faulting on purpose"));
    assert!(out.stderr.contains("guest triple fault"));
}

#[test]
fn flood_arrives_byte_exact_over_serial() {
    let Some(out) = tiny(
        "flood_arrives_byte_exact_over_serial",
        Some("tiny.quiet tiny.flood=4100"),
        &[],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let body = out
        .stdout
        .strip_prefix("TINYVMM-GUEST-OK\n")
        .expect("marker first");
    let want: Vec<u8> = FLOOD_LINE.iter().copied().cycle().take(4100).collect();
    assert_eq!(body.as_bytes(), want.as_slice());
}

#[test]
fn memory_touch_fits_or_fails_cleanly() {
    let Some(out) = tiny("touch_fits", Some("tiny.quiet tiny.touch=100"), &[]) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let Some(out) = tiny("touch_too_big", Some("tiny.quiet tiny.touch=125"), &[]) else {
        return;
    };
    assert_eq!(out.code, Some(101), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("does not fit"), "{}", out.stdout);
    let Some(out) = tiny(
        "touch_big_vm",
        Some("tiny.quiet tiny.touch=600"),
        &["--memory", "1G"],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
}

#[test]
fn bad_options_give_the_guest_error_status() {
    let Some(out) = tiny("bad_number", Some("tiny.exit=abc"), &[]) else {
        return;
    };
    assert_eq!(out.code, Some(101), "{}", out.stdout);
    let Some(out) = tiny("unknown_option", Some("tiny.bogus=1 tiny.exit=7"), &[]) else {
        return;
    };
    assert_eq!(out.code, Some(7));
    assert!(out.stdout.contains("ignoring unknown option tiny.bogus=1"));
}

#[test]
fn user_mode_loop_runs_and_exits() {
    let Some(out) = tiny(
        "user_mode_loop",
        Some("tiny.quiet tiny.loop=100000000"),
        &[],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
}

/// The tiny guest never starts a second vCPU (it sends no INIT/SIPI): this
/// checks that an extra vCPU left waiting costs the boot nothing and does not
/// stop the VM from ending. A vCPU that is started and runs is checked in
/// tests/vcpu_setup.rs.
#[test]
fn tiny_guest_boots_and_ends_with_a_second_vcpu_it_never_starts() {
    let Some(out) = tiny(
        "tiny_guest_boots_and_ends_with_a_second_vcpu_it_never_starts",
        Some("tiny.exit=5"),
        &["--vcpus", "2"],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(5), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"));
}

/// What the tiny guest sees of the templates is its command line (it prints
/// it): `minimal` appends the kernel arguments that make a Linux guest drop
/// the features it hides, `host` appends nothing. The CPUID side of the
/// templates is checked in tests/vcpu_setup.rs.
#[test]
fn the_minimal_template_appends_its_kernel_arguments_and_host_none() {
    let test = "the_minimal_template_appends_its_kernel_arguments_and_host_none";
    let args = tinyvmm::arch::x86_64::cpuid::MINIMAL_KERNEL_ARGS;
    for (template, want) in [
        ("host", "tiny: cmdline: tiny.exit=0\n".to_string()),
        ("minimal", format!("tiny: cmdline: tiny.exit=0 {args}\n")),
    ] {
        let Some(out) = tiny(test, Some("tiny.exit=0"), &["--cpu-template", template]) else {
            return;
        };
        assert_eq!(out.code, Some(0), "template {template}: {}", out.stderr);
        assert!(
            out.stdout.contains(&want),
            "template {template}: want {want:?} in {}",
            out.stdout
        );
    }
}

#[test]
fn marker_arrives_through_virtio_with_the_serial_port_off() {
    let Some(out) = tiny_on(
        "marker_arrives_through_virtio_with_the_serial_port_off",
        "virtio",
        Some("tiny.exit=4"),
        &["--serial", "off", "--stats"],
    ) else {
        return;
    };
    // With no 8250 at all, the marker can only have come over virtio.
    assert_eq!(out.code, Some(4), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "TINYVMM-GUEST-OK\n");
}

#[test]
fn default_run_uses_the_virtio_console() {
    let Some(out) = tiny_on("default_run_uses_the_virtio_console", "virtio", None, &[]) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout
            .contains("tiny: virtio: 0xd0000000: console ready"),
        "{}",
        out.stdout
    );
    let ready = out.stdout.find("console ready").unwrap();
    let marker = out.stdout.find("TINYVMM-GUEST-OK").unwrap();
    assert!(ready < marker, "{}", out.stdout);
}

#[test]
fn virtio_flood_is_byte_exact_and_costs_no_exit_per_write() {
    let Some(out) = tiny_on(
        "virtio_flood_is_byte_exact_and_costs_no_exit_per_write",
        "virtio",
        Some("tiny.quiet tiny.flood=1048576"),
        &["--serial", "off", "--stats"],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let body = out
        .stdout
        .strip_prefix("TINYVMM-GUEST-OK\n")
        .expect("marker first");
    assert!(
        body.as_bytes()
            .iter()
            .eq(FLOOD_LINE.iter().cycle().take(1 << 20)),
        "flood differs"
    );
    let exits: u64 = out
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("tinyvmm: ")?
                .split(" VM exits")
                .next()?
                .parse()
                .ok()
        })
        .expect("exit count");
    assert!(exits < 100, "1 MiB over virtio took {exits} exits");
}

#[test]
fn a_bogus_virtio_device_falls_back_to_serial() {
    let Some(out) = tiny_on(
        "a_bogus_virtio_device_falls_back_to_serial",
        "serial",
        Some("virtio_mmio.device=4K@0xd0001000:6"),
        &[],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("no virtio-mmio device here"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"));
}

/// A gigabyte through virtio into a reader that starts slow: back-pressure
/// holds the guest, nothing is dropped, the VMM's memory stays bounded.
#[test]
fn one_gib_through_virtio_with_a_slow_reader_loses_nothing() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    if !kvm_available("one_gib_through_virtio_with_a_slow_reader_loses_nothing") {
        return;
    }
    let total: usize = 1 << 30;
    let mut child = Command::new(common::tinyvmm())
        .args(["run", "--serial", "off", "--stats", "--cmdline"])
        .arg(format!("tiny.quiet tiny.flood={total}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let pattern: Vec<u8> = FLOOD_LINE
        .iter()
        .copied()
        .cycle()
        .take((1 << 16) + 64)
        .collect();
    let mut seen = 0usize;
    let marker = b"TINYVMM-GUEST-OK\n";
    let mut head = Vec::new();
    let mut slow_reads = 0;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut data = &buf[..n];
        if head.len() < marker.len() {
            let take = (marker.len() - head.len()).min(data.len());
            head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        // Compare whole reads against the pattern (memcmp, fast even in debug).
        let off = seen % 64;
        assert!(
            data == &pattern[off..off + data.len()],
            "flood differs within bytes {seen}..+{}",
            data.len()
        );
        seen += data.len();
        if slow_reads < 20 {
            slow_reads += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(head, marker);
    assert_eq!(seen, total, "{err}");
    assert!(!err.contains("dropped"), "{err}");
    let vmm_mib = common::vmm_resident_mib(&err);
    assert!(vmm_mib < 16.0, "VMM RSS {vmm_mib} MiB after 1 GiB");
}
