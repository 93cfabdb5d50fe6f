//! What one run measured (`RunReport`), and what `tinyvmm run` prints
//! about it on stderr. The `--stats` lines `tinyvmm: N VM exits; ...` and
//! `tinyvmm: resident memory at exit: VMM X MiB ...` keep their wording:
//! scripts and the tests read them.

use std::time::Duration;

use vm_memory::GuestMemoryMmap;

use crate::config::VmConfig;
use crate::devices::boot_timer::MarkerTime;
use crate::devices::output::OutputStats;
use crate::devices::virtio::block::BlockStats;
use crate::devices::virtio::console::ConsoleStats;
use crate::devices::virtio::mmio::TransportStats;
use crate::devices::virtio::net::NetStats;
use crate::devices::virtio::rng::RngStats;
use crate::devices::virtio::vsock::VsockStats;
use crate::exit::VmEnd;
use crate::host::process::Resident;
use crate::kvm::exit_stats::ExitStats;
use crate::say;

/// Guest RAM after its VM has ended. Dropping it unmaps the memory;
/// `keep_until_process_exit` leaves it mapped until the process exits, so
/// that a tool that reads this process at its exit (as `compare` does for
/// every VMM, QEMU included) still finds the guest's pages.
pub struct GuestRam(pub(super) GuestMemoryMmap);

impl GuestRam {
    /// Leaves guest RAM mapped until the process exits (the kernel frees
    /// it then). For the last VM a process runs.
    pub fn keep_until_process_exit(self) {
        std::mem::forget(self.0);
    }
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use vm_memory::GuestMemoryBackend;
        write!(f, "GuestRam({} regions)", self.0.num_regions())
    }
}

/// Everything measured about one run.
#[derive(Debug)]
pub struct RunReport {
    /// How the VM ended.
    pub exit: VmEnd,
    /// VM exits, merged over the vCPUs.
    pub stats: ExitStats,
    /// What happened to the console output.
    pub output: OutputStats,
    /// Boot markers hit: the first of each kind.
    pub markers: Vec<MarkerTime>,
    /// Marker writes by the guest in all.
    pub marker_writes: u64,
    /// Time spent in `Vmm::build`.
    pub build_time: Duration,
    /// Time from the start of `run` to the VM's end.
    pub run_time: Duration,
    /// Process CPU time (user + system) just before the first `KVM_RUN`.
    pub cpu_to_first_run: Duration,
    /// Wall time from `main` to the vCPU threads' start (for a restore:
    /// to the restored guest's first instruction).
    pub wall_to_first_run: Duration,
    /// Resident memory at the VM's end: guest RAM touched, and the VMM's own
    /// (measured only with `--stats`; zero otherwise).
    pub resident: Resident,
    /// Guest RAM, still mapped (the VM itself is gone).
    pub guest_ram: GuestRam,
    /// Each disk's image path and counters (device, transport), in attach order.
    pub disks: Vec<(String, BlockStats, TransportStats)>,
    /// Each network device's tap name, counters and transport counters.
    pub nets: Vec<(String, NetStats, TransportStats)>,
    /// The virtio console's counters and its transport's, when attached.
    pub virtio_console: Option<(ConsoleStats, TransportStats)>,
    /// The entropy device's counters and its transport's, when attached.
    pub rng: Option<(RngStats, TransportStats)>,
    /// The vsock device's counters and its transport's, when attached.
    pub vsock: Option<(VsockStats, TransportStats)>,
}

/// What `run` says on stderr about one finished VM.
pub fn print_report(config: &VmConfig, report: &RunReport) {
    // A bundle's workload status (0-255) is the exit code itself.
    let bundle_status = config.bundle.is_some() && matches!(report.exit, VmEnd::GuestStatus(_));
    if let Some(msg) = report.exit.describe().filter(|_| !bundle_status) {
        say!("tinyvmm: {msg}");
    }
    let out = report.output;
    if out.dropped_full > 0 || out.discarded > 0 {
        say!(
            "tinyvmm: guest console output: {} bytes written, {} dropped (stdout too slow for the 8250), {} discarded{}",
            out.written,
            out.dropped_full,
            out.discarded,
            if out.stdout_closed {
                " (stdout closed)"
            } else {
                ""
            }
        );
    }
    if config.stats {
        say!("{}", report.stats.report().trim_end());
        say!(
            "tinyvmm: build {:.3} ms, run {:.3} ms, CPU time before the first KVM_RUN {:.3} ms, wall time {:.3} ms",
            report.build_time.as_secs_f64() * 1e3,
            report.run_time.as_secs_f64() * 1e3,
            report.cpu_to_first_run.as_secs_f64() * 1e3,
            report.wall_to_first_run.as_secs_f64() * 1e3
        );
        say!(
            "tinyvmm: resident memory at exit: VMM {:.2} MiB (excluding guest RAM), guest RAM touched {:.2} MiB; \
             of the VMM's: {:.2} MiB private, {:.2} MiB file-backed (executable and libraries, shared between instances)",
            report.resident.vmm as f64 / (1 << 20) as f64,
            report.resident.guest as f64 / (1 << 20) as f64,
            report.resident.vmm_private as f64 / (1 << 20) as f64,
            (report.resident.vmm - report.resident.vmm_private) as f64 / (1 << 20) as f64
        );
        if let Some((console, transport)) = &report.virtio_console {
            say!("{}", virtio_console_report(console, transport).trim_end());
        }
        if report.marker_writes > report.markers.len() as u64 {
            say!(
                "tinyvmm: boot marker writes: {} (the first of each kind is kept)",
                report.marker_writes
            );
        }
        for (i, (path, d, t)) in report.disks.iter().enumerate() {
            say!(
                "tinyvmm: disk vd{} ({path}): {} requests, {} bytes read, {} bytes written, {} flushes, {} IOERR, {} UNSUPP, {} bad chains, {} notifications (ioeventfd), {} interrupts",
                char::from(b'a' + (i % 26) as u8),
                d.requests,
                d.read_bytes,
                d.write_bytes,
                d.flushes,
                d.io_errors,
                d.unsupported,
                d.bad_chains,
                t.notifications,
                t.interrupts
            );
        }
        if let Some((r, t)) = &report.rng {
            say!(
                "tinyvmm: virtio entropy: {} requests, {} bytes, {} capped at {} KiB, {} bad chains, {} host getrandom errors, {} budget stops, {} notifications",
                r.requests,
                r.bytes,
                r.capped,
                crate::devices::virtio::rng::MAX_REQUEST_BYTES >> 10,
                r.bad_chains,
                r.host_errors,
                r.budget_stops,
                t.notifications
            );
        }
        for (i, (tap, n, t)) in report.nets.iter().enumerate() {
            say!("{}", net_report(i, tap, n, t));
        }
        if let Some((v, t)) = &report.vsock {
            say!("{}", vsock_report(v, t));
        }
        for m in &report.markers {
            say!("{}", m.report());
        }
    }
}

/// The `--stats` line of the vsock device: traffic, then every drop.
pub fn vsock_report(v: &VsockStats, t: &TransportStats) -> String {
    format!(
        "tinyvmm: vsock: {} packets from the guest ({} bytes), {} to it ({} bytes), \
         {} host connections, {} guest connections, {} notifications, {} interrupts; \
         refused: {} no listener, {} at the limit, {} bad CONNECT lines, {} REQUEST timeouts; \
         dropped: {} bad chains, {} bad packets, {} wrong cid, {} credit violations, \
         {} resets not sent, {} accept errors; {} transport resets",
        v.tx_packets,
        v.tx_bytes,
        v.rx_packets,
        v.rx_bytes,
        v.host_connections,
        v.guest_connections,
        t.notifications,
        t.interrupts,
        v.refused_host,
        v.refused_limit,
        v.bad_connect_lines,
        v.request_timeouts,
        v.bad_chains,
        v.bad_packets,
        v.wrong_cid,
        v.credit_violations,
        v.dropped_rsts,
        v.accept_errors,
        v.transport_resets
    )
}

/// The `--stats` lines for the virtio console and its transport.
pub fn virtio_console_report(c: &ConsoleStats, t: &TransportStats) -> String {
    let r = t.refusals;
    format!(
        "tinyvmm: virtio console: {} bytes out, {} bytes in, {} notifications (ioeventfd), \
         {} interrupts, {} stalls on stdout, {} bad chains, refused writes: {} status, \
         {} register, {} queue-ready, {} access\n",
        c.tx_bytes,
        c.rx_bytes,
        t.notifications,
        t.interrupts,
        c.tx_stalls,
        c.bad_chains,
        r.status,
        r.register,
        r.queue_ready,
        r.access
    )
}

/// The `--stats` line of network device `index` on `tap`.
pub fn net_report(index: usize, tap: &str, n: &NetStats, t: &TransportStats) -> String {
    format!(
        "tinyvmm: net eth{index} (tap {tap}): rx {} frames {} bytes, tx {} frames {} bytes, \
         {} notifications (ioeventfd), {} interrupts, features {:#x}, tap offloads {:#x}; \
         dropped: rx {} (no buffer fits), tx {} bad length, {} bad header; {} rx waits for buffers, \
         {} tap errors, {} bad chains",
        n.rx_frames,
        n.rx_bytes,
        n.tx_frames,
        n.tx_bytes,
        t.notifications,
        t.interrupts,
        n.features,
        n.offloads,
        n.rx_dropped,
        n.tx_bad_length,
        n.tx_bad_header,
        n.rx_waits,
        n.tap_errors,
        n.bad_chains
    )
}
