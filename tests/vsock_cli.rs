//! `--vsock`: bad arguments (125) and unusable socket paths (126) get one
//! line before the VM starts; a stale socket is replaced and the tiny
//! guest then runs with the device attached, under the real seccomp
//! filters (the listener is bound in the build stage). The tiny guest has
//! no vsock driver: a host client's REQUEST is never answered, and the
//! VMM closes it after `REQUEST_TIMEOUT` (its timer under the real filters).

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::run;

const T: Duration = Duration::from_secs(30);

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tinyvmm-vsock-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Asserts exit `code` and one `tinyvmm:` line on stderr mentioning `want`.
fn expect(vsock: &str, code: i32, want: &str) {
    let out = run(&["run", "--vsock", vsock], b"", T);
    assert_eq!(out.code, Some(code), "{vsock}: {}", out.stderr);
    assert!(
        out.stderr.contains(want),
        "{vsock}: want {want:?}: {}",
        out.stderr
    );
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("tinyvmm: --vsock"), "{}", out.stderr);
}

#[test]
fn bad_vsock_arguments_are_125() {
    expect("cid=3", 125, "socket= is required");
    expect("socket=/tmp/x", 125, "cid= is required");
    expect("cid=2,socket=/tmp/x", 125, "0-2 are reserved");
    expect("cid=4294967295,socket=/tmp/x", 125, "from 3 to 4294967294");
    expect("cid=three,socket=/tmp/x", 125, "must be a number");
    expect("cid=3,socket=/tmp/x,port=1", 125, "unknown key");
    let long = format!("cid=3,socket=/tmp/{}", "a".repeat(100));
    expect(&long, 125, "longer than 96 bytes");
}

#[test]
fn unusable_socket_paths_are_126_before_the_vm_starts() {
    let d = scratch("paths");
    let file = d.join("file");
    std::fs::write(&file, b"x").unwrap();
    expect(
        &format!("cid=3,socket={}", file.display()),
        126,
        "not a socket",
    );
    expect(
        &format!("cid=3,socket={}", d.display()),
        126,
        "not a socket",
    );
    expect(
        &format!("cid=3,socket={}/missing/v.sock", d.display()),
        126,
        "No such file",
    );
    let live = d.join("live.sock");
    let _l = UnixListener::bind(&live).unwrap();
    expect(&format!("cid=3,socket={}", live.display()), 126, "in use");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_stale_socket_is_replaced_and_the_vm_runs() {
    let test = "a_stale_socket_is_replaced_and_the_vm_runs";
    if !common::kvm_available(test) {
        return;
    }
    let d = scratch("stale");
    let sock = d.join("v.sock");
    drop(UnixListener::bind(&sock).unwrap()); // leaves the file, nobody listening
    let arg = format!("cid=3,socket={}", sock.display());
    let out = run(&["run", "--vsock", &arg, "--stats"], b"", T);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("tinyvmm: vsock: 0 packets"),
        "{}",
        out.stderr
    );
    // Bound by this run (and left as stale for the next one).
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_socket()
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_host_connection_the_guest_never_answers_is_closed_and_counted() {
    let test = "a_host_connection_the_guest_never_answers_is_closed_and_counted";
    if !common::kvm_available(test) {
        return;
    }
    use std::io::{Read, Write};
    let d = scratch("unanswered");
    let sock = d.join("v.sock");
    let arg = format!("cid=3,socket={}", sock.display());
    let mut child = std::process::Command::new(common::tinyvmm())
        .args(["run", "--vsock", &arg, "--stats", "--console", "none"])
        .args(["--cmdline", "tiny.loop=1000000000000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut c = loop {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(c) => break c,
            Err(_) if start.elapsed() < T => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no vsock listener: {e}"),
        }
    };
    c.set_read_timeout(Some(T)).unwrap();
    let asked = std::time::Instant::now();
    c.write_all(b"CONNECT 5000\n").unwrap();
    let mut b = [0u8; 16];
    let n = c.read(&mut b).unwrap();
    let waited = asked.elapsed();
    // SAFETY: kill takes integers; the pid is our child's, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(n, 0, "closed without an answer: {:?}", &b[..n]);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "closed after {waited:?} (the timeout is 2 s)"
    );
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("1 host connections, 0 guest connections")
            && stderr.contains("1 REQUEST timeouts"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_vm_with_a_socket_device_is_saved_and_restored_on_its_path() {
    let test = "a_vm_with_a_socket_device_is_saved_and_restored_on_its_path";
    if !common::kvm_available(test) {
        return;
    }
    use std::io::{Read, Write};
    let d = scratch("snapshot");
    let (sock, snap) = (d.join("v.sock"), d.join("snap"));
    let arg = format!("cid=7,socket={}", sock.display());
    let snap_arg = snap.display().to_string();
    let out = run(
        &[
            "run",
            "--vsock",
            &arg,
            "--snapshot-on-marker",
            &snap_arg,
            "--cmdline",
            "tiny.exit=9 tiny.loop=3000000000",
        ],
        b"",
        T,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // The restored VM binds the saved path again (the first run's socket
    // is stale now) and serves host clients while the guest runs on.
    let mut child = std::process::Command::new(common::tinyvmm())
        .args(["restore", &snap_arg, "--stats", "--console", "none"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut c = loop {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(c) => break c,
            Err(_) if start.elapsed() < T => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the restored VM does not listen on {}: {e}", sock.display()),
        }
    };
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(b"HELLO\n").unwrap();
    let mut b = [0u8; 8];
    assert_eq!(c.read(&mut b).unwrap(), 0, "a bad line is closed");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("1 bad CONNECT lines"), "{stderr}");
    let _ = std::fs::remove_dir_all(&d);
}
