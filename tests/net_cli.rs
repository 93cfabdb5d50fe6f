//! `--net` from the command line: bad options are 125 and unusable taps
//! 126, each one line, before the VM starts; a tap given by name and a
//! created one attach (tiny guest, `--stats` names them), the created one
//! is gone once tinyvmm has exited, even after dropping its capabilities
//! and switching user. A VM with a tap is saved and restored on the saved
//! tap, another one, or a created one. Taps live in a network namespace
//! each test makes.

mod common;
mod net_ns;

use std::time::Duration;

use common::{kvm_available, run, skip::skip};
use net_ns::{in_new_netns, ip, link_exists};

const T: Duration = Duration::from_secs(60);

/// Asserts exit `code` and one `tinyvmm:` line mentioning `want`.
fn expect(args: &[&str], code: i32, want: &str) {
    let out = run(args, b"", T);
    assert_eq!(out.code, Some(code), "{args:?}: stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(want),
        "{args:?}: want {want:?}: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "one line: {}",
        out.stderr
    );
}

#[test]
fn bad_net_options_are_125_and_a_missing_tap_126() {
    for (opt, want) in [
        ("tap=a,ip=10.0.0.1/24", "exactly one of"),
        ("mac=06:00:00:00:00:01", "exactly one of"),
        ("ip=10.0.0.1", "ADDR/PREFIX"),
        ("ip=10.0.0.1/31", "prefix 1 to 30"),
        ("ip=10.0.0.300/24", "ADDR/PREFIX"),
        ("tap=a-name-longer-than-15", "1 to 15 bytes"),
        ("tap=t0,mac=01:00:5e:00:00:01", "multicast"),
        ("tap=t0,mac=06:00", "six hex bytes"),
        ("tap=t0,colour=red", "unknown key"),
    ] {
        expect(&["run", "--net", opt], 125, want);
    }
    expect(
        &["run", "--net", "tap=tvmm-nosuch"],
        126,
        "no such interface",
    );
}

#[test]
fn taps_by_name_and_created_attach_and_the_created_one_goes_away() {
    let test = "taps_by_name_and_created_attach_and_the_created_one_goes_away";
    if !kvm_available(test) {
        return;
    }
    let result = in_new_netns(|| {
        assert!(
            ip(&["tuntap", "add", "dev", "tvt0", "mode", "tap"]),
            "ip tuntap add"
        );
        let out = run(
            &[
                "run",
                "--stats",
                "--net",
                "tap=tvt0",
                "--net",
                "ip=10.9.0.1/24,mac=06:00:0a:09:00:02",
            ],
            b"",
            T,
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stderr.contains("net eth0 (tap tvt0)"), "{}", out.stderr);
        assert!(
            out.stderr.contains("net eth1 (tap tvmm0)"),
            "{}",
            out.stderr
        );
        assert!(!link_exists("tvmm0"), "the created tap is gone at exit");
        assert!(link_exists("tvt0"), "a tap given by name stays");

        // Capabilities dropped and another user while the VM ran: the
        // kernel still deletes the tap when its fd closes.
        let out = run(
            &[
                "run",
                "--uid",
                "65534",
                "--gid",
                "65534",
                "--net",
                "ip=10.9.1.1/24",
            ],
            b"",
            T,
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(!link_exists("tvmm0"), "gone after a user switch too");

        // One tap twice: the second attach finds it busy.
        expect(
            &["run", "--net", "tap=tvt0", "--net", "tap=tvt0"],
            126,
            "in use",
        );
        // Not a tap.
        expect(&["run", "--net", "tap=lo"], 126, "not a tap");
        // No CAP_NET_ADMIN: no tap can be created.
        let out = common::run_program(
            "setpriv",
            &[
                "--inh-caps=-net_admin",
                "--bounding-set=-net_admin",
                common::tinyvmm(),
                "run",
                "--net",
                "ip=10.9.2.1/24",
            ],
            T,
        );
        assert_eq!(out.code, Some(126), "{}", out.stderr);
        assert!(out.stderr.contains("needs CAP_NET_ADMIN"), "{}", out.stderr);
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    });
    if let Err(why) = result {
        skip(test, &why);
    }
}

#[test]
fn a_vm_with_taps_is_saved_and_restored_on_the_saved_or_a_given_tap() {
    let test = "a_vm_with_taps_is_saved_and_restored_on_the_saved_or_a_given_tap";
    if !kvm_available(test) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tinyvmm-net-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let snap = dir.join("snap").display().to_string();
    let result = in_new_netns(move || {
        for t in ["tvs0", "tvs1"] {
            assert!(
                ip(&["tuntap", "add", "dev", t, "mode", "tap"]),
                "ip tuntap add"
            );
        }
        let out = run(
            &[
                "run",
                "--net",
                "tap=tvs0,mac=06:00:00:00:00:05",
                "--snapshot-on-marker",
                &snap,
                "--cmdline",
                "tiny.exit=9",
            ],
            b"",
            T,
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        // The saved tap, by name.
        let out = run(&["restore", &snap, "--stats"], b"", T);
        assert_eq!(out.code, Some(9), "{}", out.stderr);
        assert!(out.stderr.contains("net eth0 (tap tvs0)"), "{}", out.stderr);
        // Another existing tap; the saved MAC goes with it.
        let out = run(&["restore", &snap, "--stats", "--net", "tap=tvs1"], b"", T);
        assert_eq!(out.code, Some(9), "{}", out.stderr);
        assert!(out.stderr.contains("net eth0 (tap tvs1)"), "{}", out.stderr);
        // A created one.
        let out = run(
            &["restore", &snap, "--stats", "--net", "ip=10.9.3.1/24"],
            b"",
            T,
        );
        assert_eq!(out.code, Some(9), "{}", out.stderr);
        assert!(
            out.stderr.contains("net eth0 (tap tvmm0)"),
            "{}",
            out.stderr
        );
        // Refusals, one line each: another MAC, more taps than devices, a
        // missing tap.
        let mac = "tap=tvs1,mac=06:00:00:00:00:06";
        expect(
            &["restore", &snap, "--net", mac],
            125,
            "mac= must be the saved",
        );
        let two = ["restore", &snap, "--net", "tap=tvs0", "--net", "tap=tvs1"];
        expect(&two, 125, "2 given, the snapshot has 1");
        assert!(ip(&["link", "del", "tvs0"]), "ip link del");
        expect(&["restore", &snap], 126, "no such interface");
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = result {
        skip(test, &why);
    }
}
