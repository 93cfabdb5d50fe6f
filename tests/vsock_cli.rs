//! `--vsock`: bad arguments (125) and unusable socket paths (126) get one
//! line before the VM starts; a stale socket is replaced and the tiny
//! guest then runs with the device attached, under the real seccomp
//! filters (the listener is bound in the build stage).

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
