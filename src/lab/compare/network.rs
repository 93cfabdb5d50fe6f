//! compare's network row and `benches/net.rs`, one yardstick: TCP
//! throughput each way and request/response latency between the host and
//! the workload, measured the same way on every path that can have a
//! network (tinyvmm + Linux and QEMU microvm + Linux on a tap, crun and
//! runc on a veth pair), inside a private network namespace (`netns.rs`).
//!
//! The same server on every path: the rootfs's busybox (the initramfs is
//! built from the same tree) runs [`workload`]: an `nc` sink on port 5001,
//! an `nc` source of an N MiB tmpfs file on 5002 and an `nc -e cat` echo
//! on 5003. The same client on the host: this file's code, from its side
//! of the link. Throughput host → workload: connect to the sink's close
//! after our EOF; workload → host: connect to the N-th MiB received;
//! latency: 1-byte round trips on one connection (TCP_NODELAY). A VM's
//! guest is configured by the kernel's `ip=` and gets the workload on its
//! console shell (`tinyvmm.shell=1`); a container runs it as `sh -c`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::netns::Session;
use crate::lab::measure::Summary;

/// The host's address on every link (the tap or the veth's host end).
pub const HOST: [u8; 4] = [10, 0, 2, 1];
/// The workload's address.
pub const WORKLOAD: [u8; 4] = [10, 0, 2, 2];
/// The sink, source and echo ports.
pub const PORTS: (u16, u16, u16) = (5001, 5002, 5003);
/// How long a connection or transfer may take (the guest's network stack
/// runs in emulated kernel code on kvm_pvm hosts: ~0.1-0.3 MiB/s).
const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// How much to measure.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Plan {
    /// MiB per transfer.
    pub mib: usize,
    /// Transfers each way.
    pub reps: usize,
    /// 1-byte round trips.
    pub round_trips: usize,
}

impl Default for Plan {
    /// compare's: 2 MiB once each way, 100 round trips (a few minutes per
    /// VM path where the guest kernel runs emulated).
    fn default() -> Plan {
        Plan {
            mib: 2,
            reps: 1,
            round_trips: 100,
        }
    }
}

/// The workload's shell commands (busybox), the same on every path.
pub fn workload(mib: usize) -> String {
    let (sink, source, echo) = PORTS;
    format!(
        "dd if=/dev/zero of=/tmp/blob bs=1048576 count={mib} 2>/dev/null; \
         (while :; do nc -l -p {sink} >/dev/null; done) & \
         (while :; do nc -l -p {source} </tmp/blob; done) & \
         nc -ll -p {echo} -e cat &"
    )
}

/// What was measured on one path.
#[derive(Clone, Debug, Serialize)]
pub struct Network {
    /// The link: "virtio-net on a tap", "veth pair".
    pub link: String,
    /// What was moved.
    pub plan: Plan,
    /// Spawn until the echo server answered, s (boot included).
    pub ready_s: f64,
    /// Host → workload, MiB/s per transfer.
    pub to_workload_mibs: Summary,
    /// Workload → host, MiB/s per transfer.
    pub from_workload_mibs: Summary,
    /// 1-byte round trips, µs.
    pub round_trip_us: Summary,
    /// The 99th percentile round trip, µs.
    pub round_trip_p99_us: f64,
}

/// The row's cell: measured, or why not (from the host or the run).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkRow {
    /// Figures.
    Measured(Network),
    /// Why this path has none.
    NotMeasured(String),
}

impl NetworkRow {
    /// The table's cell.
    pub fn cell(&self) -> String {
        match self {
            NetworkRow::NotMeasured(why) => format!("not measured: {why}"),
            NetworkRow::Measured(n) => format!(
                "→ {:.2} / ← {:.2} MiB/s; round trip {} (p99 {}) ({}, {} MiB × {})",
                n.to_workload_mibs.median,
                n.from_workload_mibs.median,
                micros(n.round_trip_us.median),
                micros(n.round_trip_p99_us),
                n.link,
                n.plan.mib,
                n.plan.reps
            ),
        }
    }
}

/// A time in µs, as ms from 1 ms up.
fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((WORKLOAD, port))
}

/// Connects, retrying while the workload's listener restarts.
fn connect(port: u16, within: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if Instant::now() > deadline => return Err(format!("port {port}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Host → workload: `bytes` into the sink, until it closes after our EOF.
pub fn to_workload(bytes: usize) -> Result<Duration, String> {
    let mut c = connect(PORTS.0, Duration::from_secs(60))?;
    let start = Instant::now();
    let chunk = vec![0x5au8; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n])
            .map_err(|e| format!("sending: {e}"))?;
        left -= n;
    }
    c.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .map_err(|e| format!("waiting for the sink to close: {e}"))?;
    Ok(start.elapsed())
}

/// Workload → host: `bytes` from the source.
pub fn from_workload(bytes: usize) -> Result<Duration, String> {
    let mut c = connect(PORTS.1, Duration::from_secs(60))?;
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < bytes {
        match c.read(&mut buf) {
            Ok(0) => return Err(format!("the source closed after {got} of {bytes} bytes")),
            Ok(n) => got += n,
            Err(e) => return Err(format!("receiving after {got} bytes: {e}")),
        }
    }
    Ok(start.elapsed())
}

/// `n` 1-byte round trips through the echo server, µs each (after 10
/// unmeasured ones).
pub fn round_trips(n: usize) -> Result<Vec<f64>, String> {
    let mut c = connect(PORTS.2, Duration::from_secs(60))?;
    c.set_nodelay(true).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    let mut once = || -> Result<f64, String> {
        let start = Instant::now();
        c.write_all(b"x").map_err(|e| e.to_string())?;
        c.read_exact(&mut byte)
            .map_err(|e| format!("no echo within 10 s: {e}"))?;
        Ok(start.elapsed().as_secs_f64() * 1e6)
    };
    for _ in 0..10 {
        once()?;
    }
    (0..n).map(|_| once()).collect()
}

/// Runs `plan` against a started session (in its namespace): waits for
/// the echo server, then the transfers and round trips.
pub fn measure(s: &mut Session, plan: Plan, ready_within: Duration) -> Result<Network, String> {
    let ready_s = s.wait_ready(ready_within)?;
    let bytes = plan.mib << 20;
    let rate = |d: Duration| plan.mib as f64 / d.as_secs_f64();
    let mut to = Vec::new();
    let mut from = Vec::new();
    for _ in 0..plan.reps.max(1) {
        to.push(rate(
            to_workload(bytes).map_err(|e| format!("host → workload: {e}"))?,
        ));
    }
    for _ in 0..plan.reps.max(1) {
        from.push(rate(
            from_workload(bytes).map_err(|e| format!("workload → host: {e}"))?,
        ));
    }
    let mut rtt = round_trips(plan.round_trips.max(1)).map_err(|e| format!("round trips: {e}"))?;
    rtt.sort_by(f64::total_cmp);
    let p99 = crate::lab::measure::distribution::percentile(&rtt, 0.99);
    let none = || "nothing measured".to_string();
    Ok(Network {
        link: s.link.clone(),
        plan,
        ready_s,
        to_workload_mibs: Summary::of(&to).ok_or_else(none)?,
        from_workload_mibs: Summary::of(&from).ok_or_else(none)?,
        round_trip_us: Summary::of(&rtt).ok_or_else(none)?,
        round_trip_p99_us: p99,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_serves_the_three_ports_from_a_file_of_the_size() {
        let w = workload(3);
        assert!(w.contains("count=3 "), "{w}");
        for p in ["-p 5001", "-p 5002 </tmp/blob", "-ll -p 5003 -e cat"] {
            assert!(w.contains(p), "{p}: {w}");
        }
        // One line, ending in a background job: a shell prompt or
        // `sh -c "... exec sleep"` can follow it.
        assert!(!w.contains('\n') && w.ends_with('&'));
    }

    #[test]
    fn the_cell_says_both_ways_and_the_round_trip() {
        let s = |v: f64| Summary::of(&[v]).unwrap();
        let row = NetworkRow::Measured(Network {
            link: "veth pair".into(),
            plan: Plan {
                mib: 4,
                reps: 1,
                round_trips: 10,
            },
            ready_s: 0.1,
            to_workload_mibs: s(1427.0),
            from_workload_mibs: s(168.25),
            round_trip_us: s(41.0),
            round_trip_p99_us: 80.0,
        });
        assert_eq!(
            row.cell(),
            "→ 1427.00 / ← 168.25 MiB/s; round trip 41 µs (p99 80 µs) (veth pair, 4 MiB × 1)"
        );
        assert_eq!(micros(6502.4), "6.5 ms");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["measured"]["link"], "veth pair");
        let no = NetworkRow::NotMeasured("why".into());
        assert_eq!(no.cell(), "not measured: why");
        assert_eq!(serde_json::to_value(&no).unwrap()["not_measured"], "why");
    }
}
