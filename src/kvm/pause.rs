//! Pausing every vCPU of a running VM at an instruction boundary, for a
//! snapshot, and letting them go on (or end) afterwards.
//!
//! The main thread (or a device, on a vCPU thread) calls `request`; each
//! vCPU's run loop sees it before it enters `KVM_RUN` again (the main thread
//! kicks the threads that are inside) and calls `park`, which
//! 1. completes an MMIO or port exit KVM is still in the middle of: KVM
//!    finishes the instruction on the next `KVM_RUN`, and with
//!    `immediate_exit` set that call returns `EINTR` straight after (KVM API
//!    5, "immediate_exit": what userspace must do before saving state);
//! 2. reads the vCPU's state (`super::state::save_vcpu`) on its own thread;
//! 3. waits until the main thread resumes the VM or it ends.
//!
//! The main thread collects the states with `wait_parked`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_cpuid_entry2;
use kvm_ioctls::VcpuFd;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::state::{VcpuState, save_vcpu};
use crate::sync::lock;

/// How often a parked vCPU looks whether the VM is ending.
const PARKED_POLL: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Parked {
    /// Each parked vCPU's state (or why it could not be read).
    states: Vec<Result<VcpuState, String>>,
    /// Bumped by every `resume`.
    generation: u64,
}

/// The pause switch shared by the main thread and the vCPU threads.
pub struct Pause {
    requested: AtomicBool,
    parked: Mutex<Parked>,
    changed: Condvar,
    /// Signalled by `request`, so the event loop wakes at once.
    wake: EventFd,
    msr_list: Vec<u32>,
    has_xcrs: bool,
}

impl Pause {
    /// A switch whose vCPUs save the MSRs of `msr_list` (KVM's list) and
    /// the XCRs when `has_xcrs` (KVM_CAP_XCRS).
    pub fn new(msr_list: Vec<u32>, has_xcrs: bool) -> std::io::Result<Self> {
        Ok(Pause {
            requested: AtomicBool::new(false),
            parked: Mutex::new(Parked::default()),
            changed: Condvar::new(),
            wake: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            msr_list,
            has_xcrs,
        })
    }

    /// Asks every vCPU to park at its next exit.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        let _ = self.wake.write(1);
    }

    /// Whether a pause is asked for.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The event that `request` signals.
    pub fn wake_event(&self) -> &EventFd {
        &self.wake
    }

    /// On a vCPU thread: complete the pending exit, save the state, wait
    /// until `resume` or `ending()` says the VM ends.
    /// `cpuid` is what the vCPU was given (saved as it is).
    pub fn park(
        &self,
        fd: &mut VcpuFd,
        id: u8,
        cpuid: &[kvm_cpuid_entry2],
        ending: impl Fn() -> bool,
    ) {
        let state = complete_pending_exit(fd).and_then(|()| {
            save_vcpu(fd, id, cpuid, &self.msr_list, self.has_xcrs).map_err(|e| e.to_string())
        });
        let mut parked = lock(&self.parked);
        let generation = parked.generation;
        parked.states.push(state);
        self.changed.notify_all();
        while parked.generation == generation && !ending() {
            parked = self
                .changed
                .wait_timeout(parked, PARKED_POLL)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// On the main thread: waits until `count` vCPUs have parked, calling
    /// `kick` (which interrupts `KVM_RUN`) every millisecond, for at most
    /// `deadline`. Returns their states, by vCPU id.
    pub fn wait_parked(
        &self,
        count: usize,
        deadline: Duration,
        kick: impl Fn(),
    ) -> Result<Vec<VcpuState>, String> {
        let until = Instant::now() + deadline;
        let mut parked = lock(&self.parked);
        while parked.states.len() < count {
            if Instant::now() >= until {
                return Err(format!(
                    "{} of {count} vCPUs paused within {} s",
                    parked.states.len(),
                    deadline.as_secs()
                ));
            }
            drop(parked);
            kick();
            parked = lock(&self.parked);
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let mut states = std::mem::take(&mut parked.states)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        states.sort_by_key(|s| s.id);
        Ok(states)
    }

    /// Lets the parked vCPUs run on.
    pub fn resume(&self) {
        let _ = self.wake.read();
        self.requested.store(false, Ordering::Release);
        let mut parked = lock(&self.parked);
        parked.states.clear();
        parked.generation += 1;
        self.changed.notify_all();
    }
}

/// One `KVM_RUN` with `immediate_exit` set: KVM completes an MMIO or port
/// access it handed to us (the instruction retires) and returns `EINTR`
/// without running the guest further.
fn complete_pending_exit(fd: &mut VcpuFd) -> Result<(), String> {
    fd.set_kvm_immediate_exit(1);
    let result = match fd.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(e) => Err(format!("completing the last exit: {e}")),
        Ok(exit) => Err(format!(
            "completing the last exit: KVM_RUN with immediate_exit returned {exit:?}"
        )),
    };
    fd.set_kvm_immediate_exit(0);
    result
}
