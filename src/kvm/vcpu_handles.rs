//! The vCPU threads of a running VM: start one named thread per vCPU, hold
//! them at a gate until the main thread has put the run-time sandbox on
//! every thread, kick them out of `KVM_RUN`, and join them with a deadline,
//! collecting each vCPU's exit counters.
//!
//! A kick is the real-time signal of `crate::signals`: its delivery makes a
//! thread's `KVM_RUN` return `EINTR`, after which the loop sees `stop` (or
//! the VM's recorded ending) and returns. A signal that lands just before
//! the thread enters `KVM_RUN` is not seen by KVM, so the kick repeats
//! until the thread has finished or the deadline passes.

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::exit_stats::ExitStats;
use super::pause::Pause;
use super::vcpu::Vcpu;
use crate::devices::bus::IoBuses;
use crate::exit::{ExitSignal, VmEnd};
use crate::seccomp::Sandbox;
use crate::signals;
use crate::sync::lock;

/// How often a kick is repeated while a thread has not finished.
const KICK_INTERVAL: Duration = Duration::from_millis(1);

/// Where new vCPU threads wait: each arrives (after dropping its
/// capabilities), then waits until the main thread opens (run) or aborts.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, Option<bool>)>,
    changed: Condvar,
}

impl Gate {
    fn arrive_and_wait(&self) -> bool {
        let mut st = lock(&self.state);
        st.0 += 1;
        self.changed.notify_all();
        while st.1.is_none() {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.1 == Some(true)
    }

    fn wait_for(&self, threads: usize) {
        let mut st = lock(&self.state);
        while st.0 < threads {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self, run: bool) {
        lock(&self.state).1 = Some(run);
        self.changed.notify_all();
    }
}

/// The running vCPU threads.
pub struct VcpuHandles {
    stop: Arc<AtomicBool>,
    gate: Arc<Gate>,
    threads: Vec<(u8, JoinHandle<ExitStats>)>,
    sample_kicks: SampleKicks,
}

/// Kicks for the profiler's sampler thread: the kick signal to every vCPU
/// thread, without asking it to stop. `join` closes it before joining any
/// thread, so a kick never names a joined (reaped) thread.
#[derive(Clone, Default)]
pub struct SampleKicks(Arc<Mutex<Option<Vec<libc::pthread_t>>>>);

impl SampleKicks {
    /// Kicks every vCPU thread once; `false` once the threads are being joined.
    pub fn kick_all(&self) -> bool {
        let threads = lock(&self.0);
        let Some(threads) = threads.as_ref() else {
            return false;
        };
        for &t in threads {
            // SAFETY: `t` is a vCPU thread's pthread_t, put here by `start`
            // and removed (under this lock) by `join` before any thread is
            // joined, so the thread is live or finished but not reaped; the
            // kick handler is installed before vCPUs start and only stores
            // to this thread's own kvm_run.
            unsafe { libc::pthread_kill(t, signals::kick_signal()) };
        }
        true
    }
}

/// What joining the vCPU threads found.
#[derive(Debug, Default)]
pub struct Joined {
    /// Each finished vCPU's exit counters, by vCPU id.
    pub per_vcpu: Vec<(u8, ExitStats)>,
    /// vCPUs whose thread had not finished by the deadline. They are left
    /// running; the process ends them when it exits.
    pub stuck: Vec<u8>,
    /// vCPUs whose thread panicked (their counters are lost).
    pub panicked: Vec<u8>,
}

impl Joined {
    /// The counters of every vCPU, merged.
    pub fn merged(&self) -> ExitStats {
        let mut all = ExitStats::default();
        for (_, s) in &self.per_vcpu {
            all.merge(s);
        }
        all
    }
}

impl VcpuHandles {
    /// Starts one thread per vCPU, named `vcpu<N>`. Each drops its
    /// capabilities, then waits at the gate; once every thread is there
    /// (`wait_all_ready`) and the main thread opens it (`release`), each runs
    /// `Vcpu::run`. If a thread cannot be started, the gate aborts and the
    /// ones already started are joined before the error is returned.
    pub fn start(
        vcpus: Vec<Vcpu>,
        buses: Arc<IoBuses>,
        exit: Arc<ExitSignal>,
        pause: Arc<Pause>,
        sandbox: Sandbox,
    ) -> std::io::Result<VcpuHandles> {
        let mut handles = VcpuHandles {
            stop: Arc::new(AtomicBool::new(false)),
            gate: Arc::new(Gate::default()),
            threads: Vec::with_capacity(vcpus.len()),
            sample_kicks: SampleKicks::default(),
        };
        for vcpu in vcpus {
            let id = vcpu.id;
            let (buses, exit, stop) = (buses.clone(), exit.clone(), handles.stop.clone());
            let gate = handles.gate.clone();
            let pause = pause.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    if let Err(e) = crate::privileges::drop_thread_capabilities() {
                        exit.request(VmEnd::KvmCall(format!(
                            "vCPU {id}: dropping capabilities: {e}"
                        )));
                    }
                    if !gate.arrive_and_wait() {
                        return ExitStats::default();
                    }
                    vcpu.run(&buses, &exit, &stop, &pause, sandbox)
                });
            match spawned {
                Ok(thread) => handles.threads.push((id, thread)),
                Err(e) => {
                    handles.gate.open(false);
                    handles.join(Duration::from_secs(1));
                    return Err(e);
                }
            }
        }
        *lock(&handles.sample_kicks.0) = Some(
            handles
                .threads
                .iter()
                .map(|(_, t)| t.as_pthread_t())
                .collect(),
        );
        Ok(handles)
    }

    /// Kicks for a profiler: they end when `join` begins.
    pub fn sample_kicks(&self) -> SampleKicks {
        self.sample_kicks.clone()
    }

    /// Waits until every vCPU thread has started and dropped its
    /// capabilities: from then on they all carry this thread's filters
    /// only, so a filter synchronised to all threads reaches them.
    pub fn wait_all_ready(&self) {
        self.gate.wait_for(self.threads.len());
    }

    /// Lets the vCPUs run (`true`) or end without running (`false`).
    pub fn release(&self, run: bool) {
        self.gate.open(run);
    }

    /// Number of vCPU threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Tells every vCPU to stop and kicks each unfinished thread once.
    pub fn kick(&self) {
        self.stop.store(true, Ordering::Release);
        self.interrupt();
    }

    /// Interrupts `KVM_RUN` on each unfinished thread once, without telling
    /// it to stop (a pause request is then seen: kvm/pause.rs).
    pub fn interrupt(&self) {
        for (_, thread) in &self.threads {
            if !thread.is_finished() {
                // SAFETY: `thread` has not been joined (we own its handle),
                // so its pthread_t names a live or not-yet-reaped thread;
                // the kick signal's handler is installed by `signals::install`
                // before any vCPU starts and does nothing.
                unsafe { libc::pthread_kill(thread.as_pthread_t(), signals::kick_signal()) };
            }
        }
    }

    /// Stops every vCPU: kicks until each thread has finished or `deadline`
    /// has passed, then joins the finished ones.
    pub fn join(self, deadline: Duration) -> Joined {
        *lock(&self.sample_kicks.0) = None; // no sample kick from now on
        self.gate.open(false); // threads still at the gate end without running
        let until = Instant::now() + deadline;
        loop {
            self.kick();
            let running = self.threads.iter().any(|(_, t)| !t.is_finished());
            if !running || Instant::now() >= until {
                break;
            }
            std::thread::sleep(KICK_INTERVAL);
        }
        let mut joined = Joined::default();
        for (id, thread) in self.threads {
            if !thread.is_finished() {
                joined.stuck.push(id);
                continue;
            }
            match thread.join() {
                Ok(stats) => joined.per_vcpu.push((id, stats)),
                Err(_) => joined.panicked.push(id),
            }
        }
        joined
    }
}
