//! Boots of the embedded tiny guest (kernels/tiny/): milliseconds even where
//! guest kernel code is emulated, so these run on every `cargo test`.

mod common;

use std::time::Duration;

use common::{Outcome, kvm_available, run};

const T: Duration = Duration::from_secs(60);

/// The 64-byte line the tiny guest's flood repeats.
const FLOOD_LINE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-\n";

fn tiny(test: &str, cmdline: Option<&str>, extra: &[&str]) -> Option<Outcome> {
    if !kvm_available(test) {
        return None;
    }
    let mut args = vec!["run", "--console", "serial"];
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

#[test]
fn two_vcpus_still_boot() {
    let Some(out) = tiny(
        "two_vcpus_still_boot",
        Some("tiny.exit=5"),
        &["--vcpus", "2"],
    ) else {
        return;
    };
    assert_eq!(out.code, Some(5), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("TINYVMM-GUEST-OK"));
}

#[test]
fn cpu_templates_both_boot() {
    for t in ["host", "minimal"] {
        let Some(out) = tiny(
            "cpu_templates_both_boot",
            Some("tiny.quiet"),
            &["--cpu-template", t],
        ) else {
            return;
        };
        assert_eq!(out.code, Some(0), "template {t}: {}", out.stderr);
    }
}
