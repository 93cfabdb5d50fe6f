//! The chaos monkey (`tiny.chaos=SEED,N`, kernels/tiny/chaos_virtio.S) with
//! a virtio-net window among its targets: random register accesses,
//! out-of-order status writes and whole driver set-ups on rings and
//! descriptors it scribbles over, on both of the device's queues. The tap
//! (made by the test, in a namespace of its own) is down: nothing arrives
//! to be written into the tiny guest's memory (chaos descriptors may point
//! at its kernel), and what the device transmits the kernel refuses, which
//! the device counts. Every seed must end with status 0 and the `--stats`
//! report, never a panic or a hang.

mod common;
mod net_ns;

use std::time::Duration;

use common::{kvm_available, run, skip::skip};
use net_ns::{in_new_netns, ip};

const T: Duration = Duration::from_secs(120);

#[test]
fn chaos_on_a_virtio_net_window_ends_with_status_0() {
    let test = "chaos_on_a_virtio_net_window_ends_with_status_0";
    if !kvm_available(test) {
        return;
    }
    let seeds = common::chaos_seeds(20);
    let result = in_new_netns(move || {
        assert!(
            ip(&["tuntap", "add", "dev", "tvc0", "mode", "tap"]),
            "ip tuntap add"
        );
        let mut net_window_hit = false;
        for seed in 1..=seeds {
            let cmdline = format!("tiny.chaos={seed},3000");
            // The net device's window alone, or after the console's.
            let console = if seed % 2 == 0 { "serial" } else { "virtio" };
            let args = [
                "run",
                "--stats",
                "--console",
                console,
                "--cmdline",
                &cmdline,
                "--net",
                "tap=tvc0,mac=06:00:00:00:00:01",
            ];
            let out = run(&args, b"", T);
            let what = format!("{cmdline} --console {console}");
            assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
            assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
            assert!(
                out.stderr.contains("net eth0 (tap tvc0)"),
                "{what}: {}",
                out.stderr
            );
            let window = if console == "serial" {
                "mmio 0xd0000"
            } else {
                "mmio 0xd0001"
            };
            net_window_hit |= out.stderr.contains(window);
        }
        assert!(
            net_window_hit,
            "no seed's top addresses include the net window"
        );
    });
    if let Err(why) = result {
        skip(test, &why);
    }
}
