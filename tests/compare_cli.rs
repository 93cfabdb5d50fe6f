//! `tinyvmm compare` end to end, on the fast paths (tiny guest, crun,
//! runc): every present path reports positive startup and footprint
//! figures and the network row (a measured veth pair for crun and runc,
//! the tiny guest's own reason), every absent one a reason (shown on the
//! terminal). The tiny
//! guest's path must be present wherever KVM is; with no path present the
//! test is a visible skip (a failure under `TINYVMM_REQUIRE_KVM=1`). Linux paths boot for 30-60 s each
//! on hosts whose KVM emulates guest kernel mode, so here they are only
//! checked to be reported absent when the kernel is missing.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn compare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyvmm"))
        .arg("compare")
        .args(args)
        .output()
        .expect("tinyvmm runs")
}

fn json_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "tinyvmm-compare-test-{}-{name}.json",
        std::process::id()
    ))
}

fn paths(report: &Value) -> &Vec<Value> {
    report["paths"].as_array().expect("paths array")
}

#[test]
fn fast_paths_report_startup_and_footprint_or_a_reason() {
    let test = "fast_paths_report_startup_and_footprint_or_a_reason";
    let file = json_file("fast");
    let svg = file.with_extension("svg");
    let out = compare(&[
        "--paths",
        "tinyvmm-tiny,crun,runc",
        "--runs",
        "2",
        "--density",
        "2",
        "--quiet",
        "--json",
        file.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = match std::fs::read_to_string(&file) {
        Ok(json) => serde_json::from_str(&json).unwrap(),
        Err(e) => panic!("no JSON report ({e}): stdout:\n{stdout}\nstderr:\n{stderr}"),
    };
    let _ = std::fs::remove_file(&file);
    if let Err(why) = common::kvm_probe() {
        // Without KVM, compare must find tinyvmm-tiny absent, not run it.
        assert!(
            paths(&report)[0]["absent"].is_string(),
            "KVM is not usable here ({why}), yet compare ran tinyvmm-tiny: its probe must check KVM_GET_API_VERSION too\n{stdout}"
        );
    }
    let none_present = paths(&report).iter().all(|p| p["absent"].is_string());
    if none_present {
        // Nothing measured, so nothing to plot: compare says so and fails.
        assert!(stderr.contains("no path has figures to plot"), "{stderr}");
    } else {
        assert_eq!(
            out.status.code(),
            Some(0),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    assert!(
        stdout.contains("| **Startup time**") || stdout.contains("absent"),
        "{stdout}"
    );
    assert!(report["host"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(report["schema_version"], 4);
    let ids: Vec<&str> = paths(&report)
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tinyvmm-tiny", "crun", "runc"]);
    let mut present = 0;
    for p in paths(&report) {
        let id = p["path"].as_str().unwrap();
        if let Some(reason) = p["absent"].as_str() {
            assert!(!reason.is_empty());
            assert!(stdout.contains("absent"), "{stdout}");
            let why = format!("path {id} absent: {reason}");
            if id == "tinyvmm-tiny" {
                // Absent only where KVM is not, and then a visible skip.
                assert!(
                    common::kvm_probe().is_err(),
                    "KVM is usable here, yet {why}"
                );
                common::skip::skip(test, &why);
            } else if !common::kernel_dir().join("rootfs").is_dir() {
                // The built guest's rootfs (kernels/build.sh) is missing.
                common::skip::skip(test, &why);
            } else {
                // E.g. the runtime is not installed (tests/setup.sh does it).
                common::skip::not_shown_here(test, &why);
            }
            continue;
        }
        present += 1;
        assert!(p["failures"].as_array().unwrap().is_empty(), "{id}: {p}");
        assert!(
            p["startup"]["marker_ms"]["median"].as_f64().unwrap() > 0.0,
            "{id}"
        );
        assert!(
            p["startup"]["exit_ms"]["min"].as_f64().unwrap() > 0.0,
            "{id}"
        );
        assert_eq!(p["startup"]["marker_ms"]["n"], 2, "{id}");
        assert!(
            p["footprint"]["total_kib"]["median"].as_f64().unwrap() > 0.0,
            "{id}"
        );
        assert!(
            p["footprint"]["pss_kib"]["median"].as_f64().unwrap() > 0.0,
            "{id}"
        );
        assert!(p["size"]["image_bytes"].as_u64().unwrap() > 0, "{id}");
        assert_eq!(p["density"]["instances"], 2, "{id}");
        assert_eq!(p["density"]["succeeded"], 2, "{id}");
        let iso = &p["isolation"];
        assert_eq!(iso["host_kernel_shared"], id != "tinyvmm-tiny", "{id}");
        assert_eq!(
            iso["workload_is_host_process"],
            id != "tinyvmm-tiny",
            "{id}"
        );
        let net = &p["network"];
        if id == "tinyvmm-tiny" {
            // Measured too: the tiny guest, given a tap, ends without
            // ever answering on it (it has no network stack).
            let why = net["not_measured"].as_str().expect("a reason");
            assert!(why.contains("without answering"), "{why}");
        } else {
            // The same workload on a veth pair, from the host's side.
            let m = &net["measured"];
            assert_eq!(m["link"], "veth pair", "{id}: {net}");
            for f in ["to_workload_mibs", "from_workload_mibs", "round_trip_us"] {
                assert!(m[f]["median"].as_f64().unwrap() > 0.0, "{id}: {f}: {net}");
            }
            assert!(stdout.contains("| **Network**"), "{stdout}");
        }
        if id != "tinyvmm-tiny" {
            assert!(
                p["footprint"]["workload_peak_kib"]["median"]
                    .as_f64()
                    .unwrap()
                    > 0.0
            );
            let ns = iso["namespaces_apart"].as_array().unwrap();
            assert!(
                ns.iter().any(|n| n == "pid") && ns.iter().any(|n| n == "mnt"),
                "{id}: {ns:?}"
            );
        }
    }
    if present == 0 {
        // Nothing was measured: say so, or fail under TINYVMM_REQUIRE_KVM=1
        // (with KVM the tiny guest's path is always there).
        common::skip::skip(test, "no comparison path is present here (reasons above)");
        return;
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.contains("<svg"));
    std::fs::remove_file(&svg).unwrap();
}

#[test]
fn linux_paths_without_a_kernel_are_absent_with_the_reason() {
    let file = json_file("nokernel");
    let out = compare(&[
        "--paths",
        "tinyvmm-linux,qemu-linux",
        "--kernels",
        "/nonexistent/kernels",
        "--quiet",
        "--json",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    std::fs::remove_file(&file).unwrap();
    for p in paths(&report) {
        let reason = p["absent"].as_str().expect("absent");
        assert!(
            reason.contains("vmlinux missing")
                || reason.contains("qemu")
                || reason.contains("/dev/kvm"),
            "{reason}"
        );
        assert!(p["startup"].is_null());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("**tinyvmm + Linux: absent**"), "{stdout}");
}

#[test]
fn bad_arguments_exit_125() {
    for args in [
        &["--runs", "0"][..],
        &["--paths", "docker"],
        &["--memory", "12Q"],
        &["--exit", "200"],
    ] {
        let out = compare(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?}");
    }
}

#[test]
fn help_lists_the_options() {
    let out = compare(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--runs",
        "--density",
        "--paths",
        "--json",
        "--plot",
        "--linux-runs",
    ] {
        assert!(help.contains(opt), "{opt} missing from:\n{help}");
    }
}
