//! The run-time stage of the sandbox: once the VM is built, every class of
//! forbidden call, made from the main thread or a vCPU thread, ends the
//! VMM with 159 and names the call; the VMM can switch to another user
//! (`--uid`/`--gid`) and runs as an ordinary user with access to /dev/kvm.

mod common;

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kvm_available, run, tinyvmm};

const T: Duration = Duration::from_secs(30);
/// `nobody` on Debian.
const NOBODY: u32 = 65534;

#[test]
fn every_forbidden_class_from_every_thread_ends_the_vmm_with_159_and_its_name() {
    if !kvm_available("every_forbidden_class_from_every_thread_ends_the_vmm_with_159_and_its_name")
    {
        return;
    }
    let classes = [
        ("open", "openat"),
        ("socket", "socket"),
        ("clone", "clone"),
        ("exec", "execve"),
        ("tiocsti", "ioctl"),
        ("mprotect-exec", "mprotect"),
        ("getppid", "getppid"),
    ];
    for (class, call) in classes {
        for (thread, role) in [("main", "VMM"), ("vcpu", "vCPU")] {
            let v = format!("{class}@{thread}");
            let out = run(
                &[
                    "run",
                    "--console",
                    "none",
                    "--cmdline",
                    "tiny.quiet tiny.loop=100000000",
                    "--seccomp-test-violation",
                    &v,
                ],
                b"",
                T,
            );
            assert_eq!(out.code, Some(159), "{v}: {}", out.stderr);
            let want = format!("in a {role} thread: {call}; exiting with 159");
            assert!(
                out.stderr.contains(&want),
                "{v}: wanted {want:?} in\n{}",
                out.stderr
            );
        }
    }
}

/// `Uid:`, `Gid:` (real ids) and `CapEff:`/`CapBnd:` of every thread of `pid`.
fn thread_ids(pid: u32) -> Vec<(String, String, String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| {
                let status = std::fs::read_to_string(t.ok()?.path().join("status")).ok()?;
                let get = |k: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.split_whitespace().next())
                        .map(str::to_string)
                };
                Some((get("Uid:")?, get("Gid:")?, get("CapEff:")?, get("CapBnd:")?))
            })
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn uid_and_gid_switch_every_thread_once_the_vm_is_built() {
    if !kvm_available("uid_and_gid_switch_every_thread_once_the_vm_is_built") {
        return;
    }
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIP uid_and_gid_switch_every_thread_once_the_vm_is_built: needs root to switch user"
        );
        return;
    }
    let mut child = Command::new(tinyvmm())
        .args([
            "run",
            "--console",
            "none",
            "--uid",
            "65534",
            "--gid",
            "65534",
        ])
        .args(["--cmdline", "tiny.quiet tiny.loop=2000000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids = thread_ids(pid);
        if ids.len() >= 3 && ids.iter().all(|(u, ..)| u == "65534") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(ids.len() >= 3, "threads seen: {ids:?}");
    let zero = "0000000000000000";
    assert!(
        ids.iter()
            .all(|(u, g, eff, bnd)| u == "65534" && g == "65534" && eff == zero && bnd == zero),
        "every thread: user nobody, no capability: {ids:?}"
    );
    assert_eq!(status.code(), Some(143), "SIGTERM ends it as usual");
    assert!(
        run(&["run", "--uid", "1"], b"", T).stderr.contains("--gid"),
        "--uid needs --gid"
    );
}

#[test]
fn an_ordinary_user_with_access_to_dev_kvm_runs_a_vm() {
    if !kvm_available("an_ordinary_user_with_access_to_dev_kvm_runs_a_vm") {
        return;
    }
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIP an_ordinary_user_with_access_to_dev_kvm_runs_a_vm: needs root to set up the user's /dev/kvm"
        );
        return;
    }
    // A /dev/kvm node of our own, owned by `nobody`, bind-mounted over
    // /dev/kvm in a private mount namespace: the host's node and its
    // permissions stay as they are.
    let dir = std::env::temp_dir().join(format!("tinyvmm-user-kvm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let node = CString::new(dir.join("kvm").to_str().unwrap()).unwrap();
    // SAFETY: mknod/chown with a NUL-terminated path we own; /dev/kvm is
    // the misc character device 10:232.
    unsafe {
        libc::unlink(node.as_ptr());
        assert_eq!(
            libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(10, 232)),
            0
        );
        assert_eq!(libc::chown(node.as_ptr(), NOBODY, NOBODY), 0);
    }
    let mut cmd = Command::new(tinyvmm());
    cmd.args([
        "run",
        "--console",
        "none",
        "--cmdline",
        "tiny.quiet tiny.exit=7",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let node_for_child = node.clone();
    // SAFETY: only system calls between fork and exec, on data prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                node_for_child.as_ptr(),
                c"/dev/kvm".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
            check(libc::setresuid(NOBODY, NOBODY, NOBODY))
        });
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
