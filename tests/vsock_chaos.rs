//! The chaos monkey (`tiny.chaos=SEED,N`, kernels/tiny/chaos_virtio.S) with
//! the virtio socket device among its targets: random register accesses,
//! out-of-order status writes and whole driver set-ups of its three queues
//! on rings and descriptors it scribbles over. Meanwhile host clients keep
//! connecting (`CONNECT <port>`), so that the device has REQUESTs to write
//! into whatever receive chains chaos offers, and the packets chaos
//! "transmits" are parsed as the guest's. Every seed must end with status 0
//! and the `--stats` report (the vsock line included), never a panic or a
//! hang.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{kvm_available, run};

const T: Duration = Duration::from_secs(120);

/// The number before `what` in the vsock stats line.
fn vsock_stat(stderr: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tinyvmm: vsock:"))
        .unwrap_or_else(|| panic!("no vsock line: {stderr}"));
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("{what} in {line}"));
    line[..at]
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before {what} in {line}"))
}

#[test]
fn chaos_on_a_virtio_socket_window_ends_with_status_0() {
    let test = "chaos_on_a_virtio_socket_window_ends_with_status_0";
    if !kvm_available(test) {
        return;
    }
    let seeds = common::chaos_seeds(20);
    let dir = std::env::temp_dir().join(format!("tinyvmm-vsock-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("v.sock");
    let vsock = format!("cid=3,socket={}", sock.display());
    // Host clients, every few milliseconds, for whichever VM is up.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = {
        let (stop, sock) = (stop.clone(), sock.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = UnixStream::connect(&sock) {
                    let _ = c.write_all(b"CONNECT 5000\nchaos");
                    held.push(c);
                    held.truncate(64);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (mut window_hit, mut packets, mut to_guest) = (false, 0, 0);
    for seed in 1..=seeds {
        let cmdline = format!("tiny.chaos={seed},3000");
        // The socket device's window alone, or after the console's.
        let console = if seed % 2 == 0 { "serial" } else { "virtio" };
        let args = [
            "run",
            "--stats",
            "--rng",
            "off",
            "--console",
            console,
            "--cmdline",
            &cmdline,
            "--vsock",
            &vsock,
        ];
        let out = run(&args, b"", T);
        let what = format!("{cmdline} --console {console}");
        assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("resident memory at exit"),
            "{what}: {}",
            out.stderr
        );
        packets += vsock_stat(&out.stderr, "packets from the guest")
            + vsock_stat(&out.stderr, "bad chains");
        to_guest += vsock_stat(&out.stderr, "to it (");
        let window = if console == "serial" {
            "mmio 0xd0000"
        } else {
            "mmio 0xd0001"
        };
        window_hit |= out.stderr.contains(window);
    }
    stop.store(true, Ordering::Relaxed);
    clients.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        window_hit,
        "no seed's top addresses include the socket window"
    );
    eprintln!("{test}: {packets} transmit chains parsed, {to_guest} packets written to the guest");
    assert!(
        packets > 0,
        "chaos never got a transmit chain to the device"
    );
}
