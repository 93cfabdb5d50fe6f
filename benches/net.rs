//! Network overhead, side by side in one run (issue 14): TCP throughput
//! host -> workload and workload -> host, and 1-byte request/response
//! latency, for tinyvmm + Linux (virtio-net on a tap it creates), QEMU
//! microvm + the same Linux (virtio-net-device on a tap) and crun running
//! the same busybox rootfs on a veth pair; for tinyvmm also VM exits,
//! queue notifications and interrupts per MiB moved (from `--stats`).
//!
//! One yardstick, compare's network row (`tinyvmm::lab::compare::network`
//! and `netns`): the same busybox `nc` servers in the guest or container,
//! the same client on the host, each path in a network namespace of its
//! own that the bench makes (root only); the paths are compare's, prepared
//! the same way (`common::context`).
//!
//! A plain program (harness = false), not criterion: each path is one
//! long-lived guest (a Linux boot costs 15-30 s where guest kernel code is
//! emulated) measured several times, which criterion's per-sample model
//! does not fit. Run under the heavy lock:
//! `flock /work/.heavy.lock cargo bench --bench net`;
//! `TINYVMM_BENCH_NET_MIB` (default 4) and `TINYVMM_BENCH_NET_REPS`
//! (default 3) size it; `TINYVMM_BENCH_NET_PATHS=tinyvmm,qemu,crun` picks
//! paths (a path left out says so).

mod common;

use tinyvmm::lab::compare::netns;
use tinyvmm::lab::compare::network::{NetworkRow, Plan};
use tinyvmm::lab::compare::paths::{self, PathId};

const ROUND_TRIPS: usize = 200;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// "N VM exits;" and the net line's notifications and interrupts.
fn vm_counts(stats: &str) -> Option<(u64, u64, u64)> {
    let exits = stats.lines().find_map(|l| {
        l.strip_prefix("tinyvmm: ")?
            .split(" VM exits;")
            .next()?
            .parse()
            .ok()
    })?;
    let net = stats.lines().find(|l| l.contains("net eth0 (tap"))?;
    let before = |phrase: &str| -> Option<u64> {
        net[..net.find(phrase)?]
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    Some((exits, before(" notifications")?, before(" interrupts")?))
}

fn row(label: &str, r: &NetworkRow, stats: &str) -> String {
    let n = match r {
        NetworkRow::NotMeasured(why) => {
            return format!("| {label} | not measured: {why} | | | | | | |");
        }
        NetworkRow::Measured(n) => n,
    };
    let moved = (2 * n.plan.reps * n.plan.mib) as f64;
    let per_mib = match vm_counts(stats) {
        Some((e, q, i)) => format!(
            "{:.0} | {:.0} | {:.0}",
            e as f64 / moved,
            q as f64 / moved,
            i as f64 / moved
        ),
        None => "n/a | n/a | n/a".into(),
    };
    if let Some(net) = stats.lines().find(|l| l.contains("net eth0")) {
        eprintln!("{label}: {}", net.trim());
    }
    format!(
        "| {label} | {:.1} | {:.2} (min {:.2}) | {:.2} (min {:.2}) | {:.0} / {:.0} | {per_mib} |",
        n.ready_s,
        n.to_workload_mibs.median,
        n.to_workload_mibs.min,
        n.from_workload_mibs.median,
        n.from_workload_mibs.min,
        n.round_trip_us.median,
        n.round_trip_p99_us,
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it without.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("net bench: run with `cargo bench --bench net` (root, under the heavy lock)");
        return;
    }
    let plan = Plan {
        mib: env_num("TINYVMM_BENCH_NET_MIB", 4),
        reps: env_num("TINYVMM_BENCH_NET_REPS", 3).max(1),
        round_trips: ROUND_TRIPS,
    };
    let mut ctx = common::context();
    ctx.linux_timeout = std::time::Duration::from_secs(600);
    std::fs::create_dir_all(&ctx.scratch).expect("scratch dir");
    let wanted = |p: &str| {
        std::env::var("TINYVMM_BENCH_NET_PATHS").map_or(true, |v| v.split(',').any(|w| w == p))
    };
    println!(
        "\nnet: {} MiB per transfer, median (min) of {} each way, {} round trips (median / p99); \
         VM counts per MiB moved over the whole session (boot included); each path in a \
         network namespace of its own",
        plan.mib, plan.reps, plan.round_trips
    );
    println!(
        "| path | ready (s) | host->workload MiB/s | workload->host MiB/s | round trip (us) | VM exits / MiB | notifications / MiB | interrupts / MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, id, label) in [
        (
            "tinyvmm",
            PathId::TinyvmmLinux,
            "tinyvmm + Linux (virtio-net, tap)",
        ),
        (
            "qemu",
            PathId::QemuLinux,
            "QEMU microvm + Linux (virtio-net, tap)",
        ),
        ("crun", PathId::Crun, "crun + busybox (veth)"),
    ] {
        if !wanted(name) {
            println!("| {label} | left out (TINYVMM_BENCH_NET_PATHS) | | | | | | |");
            continue;
        }
        let p = match paths::prepare(id, &ctx) {
            Ok(p) => p,
            Err(why) => {
                println!("| {label} | absent: {why} | | | | | | |");
                continue;
            }
        };
        let (r, stats) = netns::probe(&p, &ctx, plan);
        println!("{}", row(label, &r, &stats));
    }
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}
