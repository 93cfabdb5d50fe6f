//! `tinyvmm run --bundle` against crun on the same OCI bundles (issue 12):
//! the same stdout, the same stderr and the same exit status. Each Linux
//! boot costs ~12-25 s on our kvm_pvm hosts, so the cases are batched into
//! a few bundles whose process is a script, and their VMs boot at once.
//! Bad bundles are refused before any VM (no KVM needed).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::skip::skip;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(300);

/// What one runtime delivered.
#[derive(Debug, PartialEq, Eq)]
struct Result3 {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<i32>,
}

/// A scratch bundle: a copy of the Linux guest's busybox tree as rootfs/
/// and a config.json crun accepts.
struct Bundle(PathBuf);

impl Bundle {
    fn new(tag: &str, rootfs: &Path, process: Value, readonly: bool) -> Bundle {
        let dir = std::env::temp_dir().join(format!("tinyvmm-bundle-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(dir.join("rootfs"))
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::write(
            dir.join("config.json"),
            config(process, readonly).to_string(),
        )
        .unwrap();
        Bundle(dir)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config.json as `crun spec` writes it, with `process` and `readonly`.
fn config(process: Value, readonly: bool) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": "bundle-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// What `crun spec` gives a process.
const CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn process(args: &[&str], uid: u32, gid: u32, groups: &[u32], cwd: &str) -> Value {
    json!({
        "terminal": false,
        "user": {"uid": uid, "gid": gid, "additionalGids": groups},
        "args": args,
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello  world", "UNI=ünï ✓"],
        "cwd": cwd,
        "capabilities": {
            "bounding": CAPS, "effective": CAPS, "inheritable": [], "permitted": CAPS, "ambient": CAPS
        }
    })
}

/// crun in a private mount namespace without the hybrid cgroup2 mount (as
/// src/lab/container/runtime.rs starts it on this kind of host).
fn crun_command(bundle: &Bundle, id: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "sh",
        "-c",
        "mount --make-rprivate / && { umount -l /sys/fs/cgroup/unified 2>/dev/null; true; } \
         && exec crun run --bundle \"$0\" \"$1\"",
    ])
    .args([bundle.path(), id]);
    c
}

fn tinyvmm_command(bundle: &Bundle, kernel: &Path) -> Command {
    let mut c = Command::new(common::tinyvmm());
    c.args(["run", "--bundle", bundle.path(), "--kernel"])
        .arg(kernel);
    c
}

fn run(mut command: Command, stdin: &[u8]) -> Result3 {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(TIMEOUT).expect("finished in time").unwrap();
    Result3 {
        stdout: out.stdout,
        stderr: out.stderr,
        status: out.status.code(),
    }
}

/// The kernel, the rootfs, crun and root, or a skip with the reason.
fn prerequisites(test: &str) -> Option<(PathBuf, PathBuf)> {
    if !common::kvm_available(test) {
        return None;
    }
    let Some(kernel) = tinyvmm::kernel_dir::default_vmlinux(Path::new(common::tinyvmm())) else {
        skip(
            test,
            "no guest kernel; build it with `bash kernels/build.sh`",
        );
        return None;
    };
    let rootfs = common::guest_file(test, "rootfs/bin/busybox")?;
    let rootfs = rootfs.parent()?.parent()?.to_path_buf();
    // SAFETY: geteuid has no arguments and cannot fail.
    if tinyvmm::lab::which("crun").is_none() || unsafe { libc::geteuid() } != 0 {
        skip(
            test,
            "crun (run as root) is needed for the differential tests",
        );
        return None;
    }
    Some((kernel, rootfs))
}

fn show(r: &Result3) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    )
}

/// Every case but signals: three bundles, their VMs booted at once.
#[test]
fn the_same_bundles_give_the_same_output_and_status_under_crun_and_tinyvmm() {
    let test = "the_same_bundles_give_the_same_output_and_status_under_crun_and_tinyvmm";
    let Some((kernel, rootfs)) = prerequisites(test) else {
        return;
    };
    // A non-root user with groups, a read-only root, arguments with
    // spaces, quotes and non-ASCII, the environment, cwd, hostname,
    // stderr, a failed write and a non-zero status.
    let script = r#"env | sort; id; hostname; pwd
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status
for a in "$@"; do echo "[$a]"; done
echo to-stderr >&2
touch /ro-write; echo "ro write: $?"
cat /proc/kcore 2>&1 | wc -c
exit 3"#;
    let ro = Bundle::new(
        "ro",
        &rootfs,
        process(
            &[
                "sh",
                "-c",
                script,
                "zero",
                "a b  c",
                "q\"'`$x",
                "héllo wörld ✓",
                "",
            ],
            1000,
            1000,
            &[10, 20],
            "/tmp",
        ),
        true,
    );
    // root, a writable root, stdin to its end.
    let script = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; \
                  echo written > /new-file && cat /new-file; ls -l /new-file | wc -l; \
                  cat; echo \"stdin ended\"; id -u";
    let rw = Bundle::new(
        "rw",
        &rootfs,
        process(&["sh", "-c", script], 0, 0, &[], "/"),
        false,
    );
    let missing = Bundle::new(
        "missing",
        &rootfs,
        process(&["no-such-program", "x"], 0, 0, &[], "/"),
        true,
    );
    let stdin = b"line one\nline two \xc3\xa9\n".as_slice();
    let cases: Vec<(&Bundle, &[u8])> = vec![(&ro, b""), (&rw, stdin), (&missing, b"")];
    // The VMs boot concurrently (one vCPU each); crun runs meanwhile.
    let vms: Vec<_> = cases
        .iter()
        .map(|(b, input)| {
            let cmd = tinyvmm_command(b, &kernel);
            let input = input.to_vec();
            std::thread::spawn(move || run(cmd, &input))
        })
        .collect();
    let crun: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (b, input))| {
            let r = run(
                crun_command(b, &format!("tinyvmm-test-{}-{i}", std::process::id())),
                input,
            );
            let _ = std::fs::remove_file(b.0.join("rootfs/new-file"));
            r
        })
        .collect();
    let vms: Vec<Result3> = vms.into_iter().map(|t| t.join().unwrap()).collect();

    for (i, (c, v)) in crun.iter().zip(&vms).enumerate().take(2) {
        assert_eq!(c, v, "case {i}: crun:\n{}\ntinyvmm:\n{}", show(c), show(v));
    }
    let ro_out = String::from_utf8_lossy(&vms[0].stdout);
    for want in [
        "uid=1000 gid=1000 groups=10,20",
        "bundle-test",
        "[a b  c]",
        "[héllo wörld ✓]",
        "ro write: 1",
        "GREETING=hello  world",
    ] {
        assert!(
            ro_out.contains(want),
            "{want:?} missing:\n{}",
            show(&vms[0])
        );
    }
    assert_eq!(vms[0].status, Some(3));
    assert!(String::from_utf8_lossy(&vms[0].stderr).contains("Read-only file system"));
    let rw_out = String::from_utf8_lossy(&vms[1].stdout);
    // crun's default capability set (AUDIT_WRITE, KILL, NET_BIND_SERVICE).
    assert!(
        rw_out.contains("CapEff:\t0000000020000420\n"),
        "{}",
        show(&vms[1])
    );
    assert!(
        rw_out.ends_with("written\n1\nline one\nline two é\nstdin ended\n0\n"),
        "{}",
        show(&vms[1])
    );
    // The VM's writes went to its tmpfs overlay, never to the bundle.
    assert!(!rw.0.join("rootfs/new-file").exists());
    // A missing executable: status 1 and one line naming it, under both.
    for r in [&crun[2], &vms[2]] {
        assert_eq!(r.status, Some(1), "{}", show(r));
        assert!(r.stdout.is_empty(), "{}", show(r));
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            err.contains("`no-such-program`") && err.trim_end().lines().count() == 1,
            "{}",
            show(r)
        );
    }
}

/// SIGTERM to tinyvmm runs the workload's trap handler, as SIGTERM to crun
/// does; a workload without a handler goes on, as crun's PID 1 does; a
/// workload that ignores it is stopped after --stop-timeout (143 and one
/// line).
#[test]
fn sigterm_reaches_the_workloads_trap_handler() {
    let test = "sigterm_reaches_the_workloads_trap_handler";
    let Some((kernel, rootfs)) = prerequisites(test) else {
        return;
    };
    let script = "trap 'echo caught TERM; exit 42' TERM; echo ready; while :; do sleep 1; done";
    let b = Bundle::new(
        "sig",
        &rootfs,
        process(&["sh", "-c", script], 0, 0, &[], "/"),
        true,
    );
    let deaf = Bundle::new(
        "deaf",
        &rootfs,
        process(
            &["sh", "-c", "trap '' TERM; echo ready; sleep 600"],
            0,
            0,
            &[],
            "/",
        ),
        true,
    );
    // Untrapped: under crun the shell is PID 1 of its namespace and the
    // kernel drops a signal it has no handler for; the guest's init
    // forwards a signal only when the workload catches it (or it is
    // SIGKILL/SIGSTOP), so the shell goes on in both.
    let untrapped = Bundle::new(
        "untrapped",
        &rootfs,
        process(
            &["sh", "-c", "echo ready; sleep 2; echo done; exit 7"],
            0,
            0,
            &[],
            "/",
        ),
        true,
    );
    let signalled = |mut command: Command| -> Result3 {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut stdout = Vec::new();
        lines.read_until(b'\n', &mut stdout).unwrap();
        assert_eq!(stdout, b"ready\n");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        std::io::Read::read_to_end(&mut lines, &mut stdout).unwrap();
        let out = child.wait_with_output().unwrap();
        Result3 {
            stdout,
            stderr: out.stderr,
            status: out.status.code(),
        }
    };
    let vm = std::thread::spawn({
        let cmd = tinyvmm_command(&b, &kernel);
        move || signalled(cmd)
    });
    let stopped = std::thread::spawn({
        let mut cmd = tinyvmm_command(&deaf, &kernel);
        cmd.args(["--stop-timeout", "1"]);
        move || signalled(cmd)
    });
    let ignored = std::thread::spawn({
        let cmd = tinyvmm_command(&untrapped, &kernel);
        move || signalled(cmd)
    });
    let c = signalled(crun_command(
        &b,
        &format!("tinyvmm-test-sig-{}", std::process::id()),
    ));
    let v = vm.join().unwrap();
    assert_eq!(c, v, "crun:\n{}\ntinyvmm:\n{}", show(&c), show(&v));
    assert_eq!(v.stdout, b"ready\ncaught TERM\n");
    assert_eq!(v.status, Some(42));
    let c = signalled(crun_command(
        &untrapped,
        &format!("tinyvmm-test-untrapped-{}", std::process::id()),
    ));
    let v = ignored.join().unwrap();
    assert_eq!(c, v, "crun:\n{}\ntinyvmm:\n{}", show(&c), show(&v));
    assert_eq!(v.stdout, b"ready\ndone\n");
    assert_eq!(v.status, Some(7));
    let s = stopped.join().unwrap();
    assert_eq!(s.status, Some(143), "{}", show(&s));
    assert_eq!(s.stdout, b"ready\n");
    let err = String::from_utf8_lossy(&s.stderr);
    assert!(
        err.contains("did not end within 1 s of signal 15"),
        "{}",
        show(&s)
    );
}

/// Bad bundles: one `tinyvmm:` line and 125/126, before any VM.
#[test]
fn bad_bundles_are_refused_with_one_line_before_any_vm() {
    let dir = std::env::temp_dir().join(format!("tinyvmm-badbundle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let good = config(process(&["true"], 0, 0, &[], "/"), true);
    let cases: Vec<(&str, Option<String>, u8)> = vec![
        ("no config.json", None, 126),
        ("invalid JSON", Some("{\"ociVersion\": ".into()), 125),
        (
            "no process.args",
            Some({
                let mut c = good.clone();
                c["process"].as_object_mut().unwrap().remove("args");
                c.to_string()
            }),
            125,
        ),
        (
            "rootfs missing",
            Some({
                let mut c = good.clone();
                c["root"]["path"] = json!("nowhere");
                c.to_string()
            }),
            126,
        ),
        (
            "rootfs a symlink",
            Some({
                let mut c = good.clone();
                c["root"]["path"] = json!("link");
                c.to_string()
            }),
            126,
        ),
    ];
    std::os::unix::fs::symlink("rootfs", dir.join("link")).unwrap();
    for (what, config, code) in cases {
        let _ = std::fs::remove_file(dir.join("config.json"));
        if let Some(c) = config {
            std::fs::write(dir.join("config.json"), c).unwrap();
        }
        let out = common::run(
            &["run", "--bundle", dir.to_str().unwrap()],
            b"",
            Duration::from_secs(30),
        );
        assert_eq!(out.code, Some(code.into()), "{what}: {out:?}");
        assert!(out.stdout.is_empty(), "{what}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {out:?}");
        assert!(lines[0].starts_with("tinyvmm: "), "{what}: {out:?}");
    }
    // A bad image cache cap (docs/bundle.md) is a bad configuration.
    std::fs::write(dir.join("config.json"), good.to_string()).unwrap();
    let out = Command::new(common::tinyvmm())
        .args(["run", "--bundle", dir.to_str().unwrap()])
        .env("TINYVMM_BUNDLE_CACHE_MAX", "lots")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("tinyvmm: TINYVMM_BUNDLE_CACHE_MAX=lots"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
