//! A disk's own I/O thread (`--disk ...,iothread=on`), Cloud Hypervisor's
//! model: the queue's ioeventfd is watched by a thread of the device's own
//! instead of the main thread's event loop. The thread runs an event
//! manager with one subscriber, the same `VirtioEvents` the loop would
//! run; completions go to the guest through the device's irqfd, as from
//! the loop. The transport stays behind its mutex, shared with the vCPU
//! threads (registers) and the main thread (`--stats`, snapshots).
//!
//! Life of the thread (`IoThreads`):
//! 1. `start` (before the run-time sandbox): the event manager is made on
//!    the main thread (epoll_create1 is a build-stage call), the thread is
//!    started, drops its capabilities and waits at its gate;
//! 2. `release`, once the run filter is on every thread: the thread adds
//!    its own, narrower filter (`seccomp::install_iothread_filter`) and
//!    serves the queue;
//! 3. `stop_and_join` at the VM's end.
//!
//! Quiescing, for snapshots: each round of work holds the thread's work
//! lock (`WorkGate`), taken before the transport's lock. The main thread
//! holds every work lock for the whole snapshot (`DeviceManager::quiesce`):
//! the request in flight finishes first, none starts until it lets go, and
//! a round that starts after an ending was recorded does nothing, as the
//! event loop does no work once the VM ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use crate::exit::{ExitSignal, VmEnd};
use crate::seccomp::Sandbox;
use crate::sync::lock;

/// Held while the thread works on its device; the snapshot holds it to
/// keep the device still.
pub type WorkGate = Arc<Mutex<()>>;

/// A subscriber to run on a thread of its own, named `name`.
pub struct IoThreadSpec {
    /// The thread's name (`blk-vda`...).
    pub name: String,
    /// The device's work (its `VirtioEvents`).
    pub events: Box<dyn MutEventSubscriber + Send>,
    /// Its work lock, also kept by the device manager.
    pub gate: WorkGate,
}

type Manager = EventManager<Box<dyn MutEventSubscriber + Send>>;

/// Runs `inner` under the work lock, and not at all once the VM ends.
struct Gated {
    inner: Box<dyn MutEventSubscriber + Send>,
    gate: WorkGate,
    exit: Arc<ExitSignal>,
    done: Arc<AtomicBool>,
}

impl MutEventSubscriber for Gated {
    fn init(&mut self, ops: &mut EventOps) {
        self.inner.init(ops);
    }
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let _working = lock(&self.gate);
        if self.exit.reason().is_some() {
            self.done.store(true, Ordering::Release);
            return;
        }
        self.inner.process(events, ops);
    }
}

/// Ends the thread's loop when `stop_and_join` signals.
struct StopWatcher {
    stop: EventFd,
    done: Arc<AtomicBool>,
}

impl MutEventSubscriber for StopWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.stop, EventSet::IN));
    }
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.stop.read();
        self.done.store(true, Ordering::Release);
    }
}

struct Running {
    name: String,
    stop: EventFd,
    release: SyncSender<bool>,
    thread: JoinHandle<()>,
}

/// The running I/O threads of one VM.
#[derive(Default)]
pub struct IoThreads {
    threads: Vec<Running>,
}

impl IoThreads {
    /// Starts one thread per spec; each waits for `release`. Errors name
    /// the thread; the ones already started are ended first.
    pub fn start(
        specs: Vec<IoThreadSpec>,
        exit: &Arc<ExitSignal>,
        sandbox: Sandbox,
    ) -> Result<IoThreads, String> {
        let mut started = IoThreads::default();
        for spec in specs {
            let name = spec.name.clone();
            match Self::start_one(spec, exit, sandbox) {
                Ok(r) => started.threads.push(r),
                Err(e) => {
                    started.release(false);
                    started.stop_and_join();
                    return Err(format!("the I/O thread {name}: {e}"));
                }
            }
        }
        Ok(started)
    }

    fn start_one(
        spec: IoThreadSpec,
        exit: &Arc<ExitSignal>,
        sandbox: Sandbox,
    ) -> std::io::Result<Running> {
        let done = Arc::new(AtomicBool::new(false));
        let stop = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
        let mut manager = Manager::new().map_err(std::io::Error::other)?;
        manager.add_subscriber(Box::new(StopWatcher {
            stop: stop.try_clone()?,
            done: done.clone(),
        }));
        manager.add_subscriber(Box::new(Gated {
            inner: spec.events,
            gate: spec.gate,
            exit: exit.clone(),
            done: done.clone(),
        }));
        let (release, gate) = sync_channel::<bool>(1);
        let exit = exit.clone();
        let name = spec.name.clone();
        let thread = crate::privileges::spawn_unprivileged(&spec.name, move || {
            if !gate.recv().unwrap_or(false) {
                return;
            }
            if sandbox != Sandbox::Off {
                if let Err(e) = crate::seccomp::install_iothread_filter() {
                    exit.request(VmEnd::KvmCall(format!("the I/O thread {name}: {e}")));
                    return;
                }
            }
            while !done.load(Ordering::Acquire) {
                if let Err(e) = manager.run() {
                    exit.request(VmEnd::KvmCall(format!("the I/O thread {name}: {e}")));
                    return;
                }
            }
        })?;
        Ok(Running {
            name: spec.name,
            stop,
            release,
            thread,
        })
    }

    /// Lets the threads serve their devices (`true`, once the run-time
    /// sandbox is on every thread) or end at once (`false`).
    pub fn release(&self, run: bool) {
        for t in &self.threads {
            let _ = t.release.try_send(run);
        }
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Ends every thread (after the request it is working on) and waits
    /// for it. A thread still at its gate is let go without running.
    pub fn stop_and_join(&mut self) {
        self.release(false);
        for t in &self.threads {
            let _ = t.stop.write(1);
        }
        for t in self.threads.drain(..) {
            if t.thread.join().is_err() {
                crate::say!("tinyvmm: the I/O thread {} panicked", t.name);
            }
        }
    }
}

impl Drop for IoThreads {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
