//! `tinyvmm compare`: the same workload on every path (tinyvmm + tiny
//! guest, tinyvmm + Linux with an initramfs or a disk root, QEMU microvm +
//! Linux, crun, runc, and crun's own bundle as a micro-VM under tinyvmm
//! and QEMU: `bundle_paths.rs`), measured
//! the same way (`crate::lab::measure`), reported as the VMs-vs-containers
//! table.
//!
//! Per path, the same for VMs and containers: `--runs` timed runs (Linux
//! paths: `--linux-runs`), untraced; then up to three traced runs whose
//! processes are read at their exit (memory, isolation; tracing stops a
//! process at exec, which would skew startup); then `--density K`
//! instances start at once; then two more instances measure what
//! survives one (`persistence.rs`); then one instance on a network in a
//! private namespace measures throughput and round trips (`network.rs`).

pub mod bundle_paths;
pub mod describe;
pub mod disk;
pub mod host;
pub mod markdown;
pub mod netns;
pub mod network;
pub mod paths;
pub mod peers;
pub mod persistence;
pub mod plot;
pub mod restored;
pub mod results;
pub mod summary;
pub mod workload;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use paths::{Context, PathId, Prepared, Workload};
use results::{PathResult, Report};

use crate::exit::EXIT_BAD_CONFIG;
use crate::lab::measure::{self, RunRecord};

/// Traced runs that give a path its memory and isolation figures.
const TRACED_RUNS: usize = 3;

/// `tinyvmm compare` options.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Timed runs per path (tiny guest, crun, runc).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub runs: usize,
    /// Timed runs per Linux-guest path [default: the smaller of --runs and 2;
    /// a Linux boot takes 30-60 s where KVM emulates guest kernel mode].
    #[arg(long, value_name = "N")]
    pub linux_runs: Option<usize>,
    /// Instances started at once for the density figure (0: skip).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub density: usize,
    /// Instances at once for Linux-guest paths [default: the smaller of --density and 2].
    #[arg(long, value_name = "K")]
    pub linux_density: Option<usize>,
    /// Paths to measure, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PATH,...")]
    pub paths: Vec<PathId>,
    /// Workload: user-mode loop iterations.
    #[arg(long = "loop", default_value_t = 0, value_name = "N")]
    pub loop_iters: u64,
    /// Workload: MiB of memory to touch.
    #[arg(long, default_value_t = 0, value_name = "MIB")]
    pub touch: u64,
    /// Workload: exit status (0-119).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=119))]
    pub exit: u8,
    /// Guest memory of the VM paths.
    #[arg(long, default_value = "128M", value_name = "SIZE")]
    pub memory: String,
    /// kernels/build.sh's output (vmlinux, initramfs.cpio, rootfs/)
    /// [default: $TINYVMM_KERNEL_DIR, else target/kernels next to this executable].
    #[arg(long, value_name = "DIR")]
    pub kernels: Option<PathBuf>,
    /// The tinyvmm executable to measure [default: `tinyvmm` beside this executable].
    #[arg(long, value_name = "PATH")]
    pub tinyvmm: Option<PathBuf>,
    /// Seconds before a Linux boot is given up.
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub linux_timeout: u64,
    /// The Firecracker executable [default: `firecracker` in PATH].
    #[arg(long, value_name = "PATH")]
    pub firecracker: Option<PathBuf>,
    /// The Cloud Hypervisor executable [default: `cloud-hypervisor` in PATH].
    #[arg(long, value_name = "PATH")]
    pub cloud_hypervisor: Option<PathBuf>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also draw startup and footprint per path as an SVG chart.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// An output file could not be written.
    #[error("writing {0}: {1}")]
    Output(PathBuf, String),
}

/// Runs `tinyvmm compare`; returns the exit code (0 every present path
/// ran, 1 a path failed every run, 125 bad arguments).
pub fn run(args: &CompareArgs) -> u8 {
    match compare(args) {
        Ok(report) => {
            let dead = report
                .paths
                .iter()
                .any(|p| p.absent.is_none() && p.startup.is_none());
            u8::from(dead)
        }
        Err(e @ CompareError::Usage(_)) => {
            eprintln!("tinyvmm compare: {e}");
            EXIT_BAD_CONFIG
        }
        Err(e) => {
            eprintln!("tinyvmm compare: {e}");
            1
        }
    }
}

fn context(args: &CompareArgs) -> Result<Context, CompareError> {
    let usage = |m: String| CompareError::Usage(m);
    if args.runs == 0 || args.linux_runs == Some(0) {
        return Err(usage("--runs and --linux-runs must be at least 1".into()));
    }
    let memory = crate::config::parse_memory(&args.memory).map_err(|e| usage(e.to_string()))?;
    let tinyvmm = match &args.tinyvmm {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| usage(format!("own executable: {e}")))?
            .with_file_name("tinyvmm"),
    };
    let scratch = std::env::temp_dir().join(format!("tinyvmm-compare-{}", std::process::id()));
    let kernels = args
        .kernels
        .clone()
        .unwrap_or_else(|| crate::kernel_dir::kernel_dir_for(&tinyvmm));
    Ok(Context {
        tinyvmm,
        kernels,
        memory: (memory, args.memory.clone()),
        workload: Workload {
            loop_iters: args.loop_iters,
            touch_mib: args.touch,
            exit: args.exit,
        },
        pvm: crate::host::kvm_emulates_guest_kernel(),
        scratch,
        linux_timeout: Duration::from_secs(args.linux_timeout),
        firecracker: args.firecracker.clone(),
        cloud_hypervisor: args.cloud_hypervisor.clone(),
    })
}

/// Runs the comparison, prints the table, writes `--json` and `--plot`.
pub fn compare(args: &CompareArgs) -> Result<Report, CompareError> {
    let ctx = context(args)?;
    let selected: Vec<PathId> = if args.paths.is_empty() {
        PathId::ALL.to_vec()
    } else {
        PathId::ALL
            .into_iter()
            .filter(|p| args.paths.contains(p))
            .collect()
    };
    let host = host::Host::detect();
    let mut progress = Progress::new(args.quiet);
    let mut counter = 0;
    let mut results = Vec::new();
    for id in selected {
        progress.show(&format!("{}: preparing", id.label()));
        results.push(match paths::prepare(id, &ctx) {
            Ok(p) => measure_path(&p, args, &ctx, &mut progress, &mut counter),
            Err(reason) => PathResult::absent(id, reason),
        });
    }
    progress.clear();
    let _ = std::fs::remove_dir_all(&ctx.scratch);
    let report = Report {
        schema_version: results::SCHEMA_VERSION,
        host,
        workload: ctx.workload,
        paths: results,
    };
    print!("{}", markdown::render(&report));
    if let Some(file) = &args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CompareError::Output(file.clone(), e.to_string()))?;
        std::fs::write(file, text + "\n")
            .map_err(|e| CompareError::Output(file.clone(), e.to_string()))?;
    }
    if let Some(file) = &args.plot {
        plot::write_svg(file, &report).map_err(|e| CompareError::Output(file.clone(), e))?;
    }
    Ok(report)
}

/// Launches `specs` together; each failure to spawn becomes a failure line.
fn launch_batch(
    p: &Prepared,
    ns: &[usize],
    trace: bool,
    failures: &mut Vec<String>,
) -> Vec<RunRecord> {
    let specs: Vec<_> = ns.iter().map(|&n| p.spec(n, trace)).collect();
    let out = measure::launch_all(&specs).unwrap_or_else(|e| {
        failures.push(format!("launch: {e}"));
        Vec::new()
    });
    for &n in ns {
        p.cleanup(n);
    }
    out
}

fn measure_path(
    p: &Prepared,
    args: &CompareArgs,
    ctx: &Context,
    progress: &mut Progress,
    counter: &mut usize,
) -> PathResult {
    let id = p.id;
    let (runs, k) = if id.is_linux() {
        (
            args.linux_runs.unwrap_or(args.runs.min(2)),
            args.linux_density.unwrap_or(args.density.min(2)),
        )
    } else {
        (args.runs, args.density)
    };
    let expected = if id.is_peer_vmm() {
        0
    } else {
        i32::from(ctx.workload.exit)
    };
    let hint = if id.is_linux() && ctx.pvm {
        " (a Linux boot takes a minute or more here)"
    } else {
        ""
    };
    let mut next = || {
        *counter += 1;
        *counter
    };
    let mut failures = Vec::new();
    let mut timed = Vec::new();
    for r in 1..=runs {
        progress.show(&format!("{}: run {r}/{runs}{hint}", id.label()));
        // Timed runs are never traced, for every path: tracing stops the
        // process at exec and costs a VMM ~10 ms to its marker here.
        let batch = launch_batch(p, &[next()], false, &mut failures);
        for rec in batch {
            if !summary::run_ok(&rec, expected) {
                failures.push(summary::failure_line(r, &rec));
            }
            timed.push(rec);
        }
    }
    let mut traced: Vec<RunRecord> = Vec::new();
    {
        let extra = runs.min(TRACED_RUNS);
        for r in 1..=extra {
            progress.show(&format!(
                "{}: traced run {r}/{extra} (memory, isolation)",
                id.label()
            ));
            traced.extend(launch_batch(p, &[next()], true, &mut failures));
        }
    }
    let ok = |rs: &[RunRecord]| -> Vec<RunRecord> {
        rs.iter()
            .filter(|r| summary::run_ok(r, expected))
            .cloned()
            .collect()
    };
    let ok_timed = ok(&timed);
    let ok_traced = ok(&traced);
    let density = (k > 0).then(|| {
        progress.show(&format!("{}: density, {k} at once{hint}", id.label()));
        let ns: Vec<usize> = (0..k).map(|_| next()).collect();
        summary::density(&launch_batch(p, &ns, true, &mut failures), expected)
    });
    progress.show(&format!(
        "{}: persistence (one instance writes, the next reads){hint}",
        id.label()
    ));
    let persistence_measured = persistence::probe(p, ctx)
        .map_err(|why| failures.push(format!("persistence not measured: {why}")))
        .ok()
        .flatten();
    progress.show(&format!(
        "{}: network (throughput each way, round trips){hint}",
        id.label()
    ));
    let network = Some(netns::probe(p, ctx, network::Plan::default()).0);
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    PathResult {
        path: id,
        label: id.label(),
        absent: None,
        command: Some(p.command_line()),
        runs,
        failures,
        startup: summary::startup(&ok_timed.iter().collect::<Vec<_>>()),
        footprint: summary::footprint(&ok_traced.iter().collect::<Vec<_>>()),
        size: Some(results::Size {
            image_bytes: p.image.0,
            image: p.image.1.clone(),
            launcher: p.binary.0.display().to_string(),
            launcher_bytes: p.binary.1,
            launcher_contains: p.binary_contents(),
        }),
        density,
        isolation: ok_traced.last().and_then(|r| {
            summary::isolation(
                id,
                &r.processes,
                measure::isolation::host_syscalls(),
                host_kernel.trim(),
                host::kvm_module(),
            )
        }),
        persistence: Some(p.persistence()),
        persistence_measured,
        network,
        how: Some(p.how()),
    }
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per step otherwise.
struct Progress {
    quiet: bool,
    tty: bool,
    shown: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, msg: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[Kcompare: {msg}");
        } else {
            let _ = writeln!(err, "compare: {msg}");
        }
        let _ = err.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.tty && self.shown && !self.quiet {
            eprint!("\r\x1b[K");
        }
    }
}
