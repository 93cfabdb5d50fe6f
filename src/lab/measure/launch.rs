//! Launching a process the way every comparison path is measured: spawn,
//! watch its stdout for the marker line, wait for its exit, optionally
//! trace it (see `trace`) to read its memory figures as it exits.
//!
//! Times are taken with the monotonic clock (`Instant`), from just before
//! the spawn. "Marker" is when our reader saw the marker line on the
//! process's stdout (a pipe); "exit" is when the process's exit was seen:
//! its exit stop when traced, its reaping otherwise.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::cgroup::{MemoryCgroup, MemoryHierarchy};
use super::trace::{self, ProcRecord, WaitEvent};

/// How much of stdout/stderr a record keeps (the end, for error messages).
const TAIL_BYTES: usize = 2048;

/// One process to launch.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The stdout line (substring) that marks "the workload runs".
    pub marker: String,
    /// Guest RAM size, for a VMM: its mapping of that size is guest memory.
    pub guest_memory: Option<u64>,
    /// Run in the child between fork and exec (before tracing starts).
    pub pre_exec: Option<fn() -> io::Result<()>>,
    /// Trace the process tree to read memory figures at each exit.
    pub trace: bool,
    /// Trace every thread too (needed to follow a Go program's forks).
    pub trace_threads: bool,
    /// Kill the process after this long.
    pub timeout: Duration,
    /// Run the instance in a fresh memory cgroup of this name (see
    /// `super::cgroup`); the record gets the cgroup's peak charge.
    pub cgroup: Option<String>,
}

/// How a launched process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Ending {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Killed by us after the timeout.
    TimedOut,
}

/// What one launch measured.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// Spawn to marker line, if the marker was seen.
    pub marker: Option<Duration>,
    /// Spawn to exit.
    pub exit: Duration,
    /// How it ended.
    pub ending: Ending,
    /// Every traced process, as it exited (empty when not traced).
    pub processes: Vec<ProcRecord>,
    /// The launched process's peak RSS from wait4's rusage, KiB.
    pub root_maxrss_kib: Option<u64>,
    /// The end of its stdout.
    pub stdout_tail: String,
    /// The end of its stderr.
    pub stderr_tail: String,
    /// Peak memory the kernel charged to the instance's cgroup, KiB.
    pub charged_kib: Option<u64>,
}

/// Per-instance state while the launches run.
struct Live {
    pid: i32,
    /// The process as an fd (pidfd_open), for a kill that cannot hit a
    /// reused PID; `None` on kernels before 5.3.
    pidfd: Option<std::os::fd::OwnedFd>,
    start: Instant,
    exit: Option<Instant>,
    ending: Option<Ending>,
    maxrss: Option<u64>,
    options_set: bool,
    processes: HashMap<i32, ProcRecord>,
    marker: mpsc::Receiver<Instant>,
    cgroup: Option<Arc<MemoryCgroup>>,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

/// A traced descendant: which instance it belongs to, and whether its
/// first (auto-attach SIGSTOP) stop has been seen.
struct Tracee {
    instance: Option<usize>,
    first_stop_seen: bool,
}

/// Launches one process and measures it.
pub fn launch(spec: &LaunchSpec) -> io::Result<RunRecord> {
    Ok(launch_all(std::slice::from_ref(spec))?.remove(0))
}

/// Launches all `specs` at once (as fast as they can be spawned one after
/// the other) and measures each. Waits with `__WNOTHREAD`, so children of
/// other threads of this process are left alone; this thread must not have
/// other children meanwhile.
pub fn launch_all(specs: &[LaunchSpec]) -> io::Result<Vec<RunRecord>> {
    let mut live = Vec::with_capacity(specs.len());
    for spec in specs {
        live.push(spawn(spec)?);
    }
    let killed = super::watchdog::watchdog(
        specs
            .iter()
            .zip(&live)
            .map(|(s, l)| (l.start + s.timeout, l.pidfd.as_ref())),
    );
    wait_all(specs, &mut live);
    killed.0.store(true, Ordering::SeqCst);
    let timed_out = killed.1.load(Ordering::SeqCst);
    Ok(live.into_iter().map(|l| collect(l, timed_out)).collect())
}

fn spawn(spec: &LaunchSpec) -> io::Result<Live> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let hook = spec.pre_exec;
    let traced = spec.trace;
    let cgroup = spec.cgroup.as_deref().and_then(instance_cgroup);
    let cg = cgroup.clone();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes system calls (the hook's contract, and PTRACE_TRACEME); it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(cg) = &cg {
                cg.join_self()?;
            }
            if let Some(h) = hook {
                h()?;
            }
            if traced {
                trace::trace_me()?;
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", spec.program.display())))?;
    let (marker_tx, marker) = mpsc::channel();
    let (out_tx, out) = mpsc::channel();
    let (err_tx, err) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let want = spec.marker.clone();
    thread::spawn(move || read_stdout(stdout, &want, marker_tx, out_tx));
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = BufReader::new(stderr).read_to_end(&mut buf);
        let _ = err_tx.send(tail(&buf));
    });
    let pid = child.id() as i32;
    let pidfd = super::watchdog::pidfd_of(pid);
    Ok(Live {
        pid,
        pidfd,
        start,
        exit: None,
        ending: None,
        maxrss: None,
        options_set: !traced,
        processes: HashMap::new(),
        marker,
        cgroup,
        out,
        err,
    })
}

/// Reads lines, timestamps the first one containing `want`, keeps the tail.
fn read_stdout(
    stdout: impl Read,
    want: &str,
    marker: mpsc::Sender<Instant>,
    out: mpsc::Sender<String>,
) {
    let mut reader = BufReader::new(stdout);
    let mut all = Vec::new();
    let mut line = Vec::new();
    let mut seen = false;
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        if !seen && String::from_utf8_lossy(&line).contains(want) {
            let _ = marker.send(Instant::now());
            seen = true;
        }
        all.extend_from_slice(&line);
        if all.len() > 4 * TAIL_BYTES {
            all.drain(..all.len() - TAIL_BYTES);
        }
        line.clear();
    }
    let _ = out.send(tail(&all));
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The wait loop: reaps the launched processes, drives the tracees.
fn wait_all(specs: &[LaunchSpec], live: &mut [Live]) {
    let by_pid: HashMap<i32, usize> = live.iter().enumerate().map(|(i, l)| (l.pid, i)).collect();
    let mut tracees: HashMap<i32, Tracee> = HashMap::new();
    while live.iter().any(|l| l.ending.is_none()) {
        let mut status = 0;
        // SAFETY: rusage is plain data, zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes an int to `status` and a struct rusage to
        // `ru`, both live locals of the right types.
        let pid =
            unsafe { libc::wait4(-1, &mut status, libc::__WALL | libc::__WNOTHREAD, &mut ru) };
        let now = Instant::now();
        if pid < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break; // ECHILD: nothing left to wait for.
        }
        let root = by_pid.get(&pid).copied();
        let instance = root.or_else(|| tracees.get(&pid).and_then(|t| t.instance));
        let mut deliver = 0;
        match trace::decode(status) {
            end @ (WaitEvent::Exited(_) | WaitEvent::Signaled(_)) => {
                tracees.remove(&pid);
                if let Some(l) = root.map(|i| &mut live[i]) {
                    l.exit.get_or_insert(now);
                    l.maxrss = Some(ru.ru_maxrss as u64);
                    l.ending = Some(match end {
                        WaitEvent::Exited(c) => Ending::Exited(c),
                        WaitEvent::Signaled(s) => Ending::Signaled(s),
                        _ => unreachable!(),
                    });
                }
                continue;
            }
            WaitEvent::Event(libc::PTRACE_EVENT_EXIT) => {
                if let Some(i) = root {
                    live[i].exit.get_or_insert(now);
                }
                if let Some(i) = instance {
                    let rec = trace::read_exit_facts(pid, live[i].pid, specs[i].guest_memory);
                    live[i].processes.insert(rec.pid, rec);
                }
            }
            WaitEvent::Event(
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE,
            ) => {
                if let Some(child) = trace::new_child(pid) {
                    let t = tracees.entry(child).or_insert(Tracee {
                        instance: None,
                        first_stop_seen: false,
                    });
                    t.instance = instance;
                }
            }
            WaitEvent::Stopped(sig) => match root {
                Some(i) if !live[i].options_set && sig == libc::SIGTRAP => {
                    // The stop right after exec (PTRACE_TRACEME).
                    let _ = trace::set_options(pid, specs[i].trace_threads);
                    live[i].options_set = true;
                }
                Some(_) => deliver = sig,
                None => {
                    let t = tracees.entry(pid).or_insert(Tracee {
                        instance: None,
                        first_stop_seen: false,
                    });
                    if !t.first_stop_seen && sig == libc::SIGSTOP {
                        t.first_stop_seen = true; // auto-attach stop
                    } else {
                        deliver = sig;
                    }
                }
            },
            WaitEvent::Event(_) | WaitEvent::Other => {}
        }
        trace::resume(pid, deliver);
    }
}

fn collect(l: Live, timed_out: bool) -> RunRecord {
    // Output readers end when every holder of the pipes has exited; a
    // leftover descendant (of a killed run) may keep them open: wait 2 s in all.
    let deadline = Instant::now() + Duration::from_secs(2);
    let wait = || deadline.saturating_duration_since(Instant::now());
    let exit_at = l.exit.unwrap_or_else(Instant::now);
    let ending = match l.ending {
        Some(Ending::Signaled(libc::SIGKILL)) if timed_out => Ending::TimedOut,
        Some(e) => e,
        None => Ending::TimedOut,
    };
    RunRecord {
        marker: l.marker.recv_timeout(wait()).ok().map(|t| t - l.start),
        exit: exit_at - l.start,
        ending,
        processes: l.processes.into_values().collect(),
        root_maxrss_kib: l.maxrss,
        stdout_tail: l.out.recv_timeout(wait()).unwrap_or_default(),
        stderr_tail: l.err.recv_timeout(wait()).unwrap_or_default(),
        charged_kib: l.cgroup.and_then(|cg| {
            let peak = cg.peak_kib();
            cg.remove();
            peak
        }),
    }
}

/// A fresh memory cgroup `name` for one instance; `None` (said on stderr)
/// when this host has none to give, so the figure is reported missing.
fn instance_cgroup(name: &str) -> Option<Arc<MemoryCgroup>> {
    let hierarchy = MemoryHierarchy::detect()
        .map_err(|why| eprintln!("tinyvmm compare: no cgroup memory figure: {why}"))
        .ok()?;
    let stale = MemoryCgroup::create(&hierarchy, name);
    let cg = match stale {
        Ok(cg) => cg,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a killed earlier run with the same name: start afresh.
            let _ = std::fs::remove_dir(hierarchy_dir(&hierarchy, name));
            MemoryCgroup::create(&hierarchy, name).ok()?
        }
        Err(e) => {
            eprintln!("tinyvmm compare: cannot create memory cgroup {name}: {e}");
            return None;
        }
    };
    Some(Arc::new(cg))
}

fn hierarchy_dir(h: &MemoryHierarchy, name: &str) -> std::path::PathBuf {
    match h {
        MemoryHierarchy::V2(root) | MemoryHierarchy::V1(root) => root.join(name),
    }
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
