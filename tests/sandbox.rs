//! The seccomp sandbox and fd hygiene: every thread filtered with
//! NoNewPrivs set, a forbidden call ends the VMM with 159, every fd the VMM
//! opens is close-on-exec, and `--no-seccomp` says so loudly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempFile, elf_with_code, kvm_available, run, tinyvmm};

const T: Duration = Duration::from_secs(60);

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// Starts a VM whose guest spins forever, waits until its vCPU thread
/// exists, runs `check` on the pid, then stops it with SIGTERM.
fn with_spinning_vm(extra: &[&str], check: impl FnOnce(u32)) {
    let spin = TempFile::with("spin", &elf_with_code(&[0xeb, 0xfe]));
    let mut args = vec!["run", "--kernel", spin.path(), "--vcpus", "2"];
    args.extend_from_slice(extra);
    let mut child = Command::new(tinyvmm())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    loop {
        let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().filter(|n| n.starts_with("vcpu")).count() == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "vCPU threads never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100)); // let them install their filters
    check(pid);
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

#[test]
fn every_thread_is_filtered_with_no_new_privs() {
    if !kvm_available("every_thread_is_filtered_with_no_new_privs") {
        return;
    }
    with_spinning_vm(&[], |pid| {
        let mut vcpus = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap();
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            assert_eq!(field(&status, "NoNewPrivs:"), Some("1"), "{comm}");
            assert_eq!(field(&status, "Seccomp:"), Some("2"), "{comm}: filter mode");
            // Build and run filters on every thread; a vCPU adds its own.
            // KVM's own worker (kvm-nx-lpage-recovery) is forked from the
            // first vCPU to run and carries its filters.
            let vcpu_like = comm.starts_with("vcpu") || comm.starts_with("kvm-");
            let filters = if vcpu_like { "3" } else { "2" };
            assert_eq!(field(&status, "Seccomp_filters:"), Some(filters), "{comm}");
            if comm.starts_with("vcpu") {
                vcpus += 1;
            }
            // No capability left in any thread while the guest runs (the
            // bounding set too, where the VMM started with CAP_SETPCAP).
            for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
                assert_eq!(
                    field(&status, set),
                    Some("0000000000000000"),
                    "{comm} {set}"
                );
            }
            // SAFETY: geteuid has no arguments.
            if unsafe { libc::geteuid() } == 0 {
                assert_eq!(
                    field(&status, "CapBnd:"),
                    Some("0000000000000000"),
                    "{comm}"
                );
            }
        }
        assert_eq!(vcpus, 2);
    });
}

#[test]
fn every_fd_the_vmm_opens_is_close_on_exec() {
    if !kvm_available("every_fd_the_vmm_opens_is_close_on_exec") {
        return;
    }
    // Fds this test process holds without close-on-exec are inherited by
    // every child (from whoever started `cargo test`): not the VMM's doing.
    let inherited: Vec<u32> = std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|fd| {
            let fd = fd.ok()?;
            let info = std::fs::read_to_string(fd.path()).ok()?;
            let flags = u32::from_str_radix(field(&info, "flags:")?, 8).ok()?;
            (flags & libc::O_CLOEXEC as u32 == 0).then(|| fd.file_name().to_str()?.parse().ok())?
        })
        .collect();
    with_spinning_vm(&[], |pid| {
        let mut checked = 0;
        for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
            let fd = fd.unwrap();
            let num: u32 = fd.file_name().to_str().unwrap().parse().unwrap();
            if num <= 2 || inherited.contains(&num) {
                continue; // stdio, or inherited from us
            }
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            let flags = u32::from_str_radix(field(&info, "flags:").unwrap(), 8).unwrap();
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{num}")).unwrap_or_default();
            assert_ne!(
                flags & libc::O_CLOEXEC as u32,
                0,
                "fd {num} ({target:?}) lacks O_CLOEXEC"
            );
            checked += 1;
        }
        assert!(
            checked >= 8,
            "only {checked} fds: KVM, VM, vCPUs, eventfds, epoll"
        );
    });
}

#[test]
fn a_forbidden_call_ends_the_vmm_with_159() {
    if !kvm_available("a_forbidden_call_ends_the_vmm_with_159") {
        return;
    }
    let out = run(
        &["run", "--console", "serial", "--seccomp-test-violation"],
        b"",
        T,
    );
    assert_eq!(out.code, Some(159), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("seccomp: forbidden system call 110 in a vCPU thread"),
        "{}",
        out.stderr
    );
}

#[test]
fn guests_run_with_zero_violations() {
    if !kvm_available("guests_run_with_zero_violations") {
        return;
    }
    // Any violation would end the VMM with 159 instead.
    for console in ["serial", "virtio"] {
        let out = run(
            &["run", "--console", console, "--stats", "--repeat", "3"],
            b"",
            T,
        );
        assert_eq!(out.code, Some(0), "{console}: {}", out.stderr);
        assert!(out.stdout.contains("TINYVMM-GUEST-OK"));
    }
}

#[test]
fn no_seccomp_is_loud_and_really_off() {
    if !kvm_available("no_seccomp_is_loud_and_really_off") {
        return;
    }
    let out = run(&["run", "--no-seccomp", "--cmdline", "tiny.quiet"], b"", T);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stderr.contains("WITHOUT the seccomp sandbox"),
        "{}",
        out.stderr
    );
    with_spinning_vm(&["--no-seccomp"], |pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert_eq!(field(&status, "Seccomp:"), Some("0"));
    });
}
