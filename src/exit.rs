//! How a VM ends, and the process exit code for each ending.
//!
//! Modelled on `docker run`: the guest's own status passes through (0-119),
//! tinyvmm's own failures use 120-126, a signal gives 128+N. The table is in
//! the README.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

/// Exit code: guest kernel panic detected.
pub const EXIT_GUEST_PANIC: u8 = 120;
/// Exit code: guest triple fault (`KVM_EXIT_SHUTDOWN`).
pub const EXIT_TRIPLE_FAULT: u8 = 121;
/// Exit code: KVM could not run the guest (internal error, failed entry, unhandled exit).
pub const EXIT_KVM_RUN: u8 = 122;
/// Exit code: `/dev/kvm` unavailable or a KVM call failed.
pub const EXIT_KVM_UNAVAILABLE: u8 = 123;
/// Exit code: a vCPU thread did not leave `KVM_RUN` within its deadline
/// after the VM ended; the VMM exits without it.
pub const EXIT_VCPU_STUCK: u8 = 124;
/// Exit code: the user ended the VM with Ctrl-A x (as Ctrl-C, 128 + SIGINT).
pub const EXIT_CONSOLE_ESCAPE: u8 = 130;
/// Exit code: bad command line or configuration.
pub const EXIT_BAD_CONFIG: u8 = 125;
/// Exit code: kernel or initrd unusable.
pub const EXIT_BAD_IMAGE: u8 = 126;
/// Highest status a guest can pass through the debug-exit device.
pub const GUEST_STATUS_MAX: u8 = 119;

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest wrote a status to the debug-exit device.
    GuestStatus(u8),
    /// The guest reset or powered off (i8042 reset, KVM system event).
    Reset,
    /// The guest kernel panicked (detected on the console before the reset).
    Panic,
    /// Triple fault: the CPU shut down.
    TripleFault,
    /// KVM could not run the guest; the text says what KVM reported.
    KvmRun(String),
    /// A KVM ioctl failed while running.
    KvmCall(String),
    /// The VMM received a signal (SIGINT, SIGTERM, ...).
    Signal(i32),
    /// The user typed Ctrl-A x on the console.
    ConsoleEscape,
    /// These vCPUs did not stop when told to (the VM's other ending is lost).
    VcpuStuck(Vec<u8>),
    /// `--snapshot-on-marker`: the VM was saved in this directory and stopped.
    Snapshotted(String),
}

impl VmEnd {
    /// The process exit code for this ending (see the README's table).
    pub fn code(&self) -> u8 {
        match self {
            VmEnd::GuestStatus(s) => (*s).min(GUEST_STATUS_MAX),
            VmEnd::Reset | VmEnd::Snapshotted(_) => 0,
            VmEnd::Panic => EXIT_GUEST_PANIC,
            VmEnd::TripleFault => EXIT_TRIPLE_FAULT,
            VmEnd::KvmRun(_) => EXIT_KVM_RUN,
            VmEnd::KvmCall(_) => EXIT_KVM_UNAVAILABLE,
            VmEnd::Signal(n) => (128 + *n).clamp(0, 255) as u8,
            VmEnd::VcpuStuck(_) => EXIT_VCPU_STUCK,
            VmEnd::ConsoleEscape => EXIT_CONSOLE_ESCAPE,
        }
    }

    /// A one-line description for stderr, or `None` for an ordinary ending.
    pub fn describe(&self) -> Option<String> {
        match self {
            VmEnd::GuestStatus(s) if *s > GUEST_STATUS_MAX => Some(format!(
                "guest status {s} is above {GUEST_STATUS_MAX}; exiting with {GUEST_STATUS_MAX}"
            )),
            VmEnd::GuestStatus(_) | VmEnd::Reset => None,
            VmEnd::Panic => Some("guest kernel panic".into()),
            VmEnd::TripleFault => Some("guest triple fault (KVM_EXIT_SHUTDOWN)".into()),
            VmEnd::KvmRun(why) => Some(format!("KVM could not run the guest: {why}")),
            VmEnd::KvmCall(why) => Some(format!("KVM call failed: {why}")),
            VmEnd::Signal(n) => Some(format!("stopped by signal {n}")),
            VmEnd::ConsoleEscape => Some("ended from the console (Ctrl-A x)".into()),
            VmEnd::Snapshotted(dir) => Some(format!(
                "snapshot saved in {dir}; the VM is stopped (`tinyvmm restore {dir}` resumes it)"
            )),
            VmEnd::VcpuStuck(ids) => Some(format!(
                "vCPU(s) {ids:?} did not stop when told to; exiting with {EXIT_VCPU_STUCK}"
            )),
        }
    }
}

/// The one place a VM's ending is decided: the first reason wins, and the
/// main loop is woken through an eventfd. vCPU threads and devices call
/// `request`; nobody calls `process::exit` from a vCPU thread.
#[derive(Debug)]
pub struct ExitSignal {
    reason: Mutex<Option<VmEnd>>,
    requested: AtomicBool,
    evt: EventFd,
}

impl ExitSignal {
    /// A fresh signal with its eventfd.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSignal {
            reason: Mutex::new(None),
            requested: AtomicBool::new(false),
            evt: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        })
    }

    /// Records `why` unless a reason is already set, and wakes the main loop.
    pub fn request(&self, why: VmEnd) {
        let mut reason = crate::sync::lock(&self.reason);
        if reason.is_none() {
            *reason = Some(why);
        }
        self.requested.store(true, Ordering::Release);
        // An eventfd write only fails if the counter would overflow, which
        // cannot happen with one write per exit request.
        let _ = self.evt.write(1);
    }

    /// The recorded reason, if any.
    pub fn reason(&self) -> Option<VmEnd> {
        crate::sync::lock(&self.reason).clone()
    }

    /// Whether an ending was requested (cheap: vCPU loops poll it after
    /// every exit so the guest stops as soon as its fate is decided).
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The eventfd the main loop watches.
    pub fn event(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(VmEnd::GuestStatus(0).code(), 0);
        assert_eq!(VmEnd::GuestStatus(42).code(), 42);
        assert_eq!(VmEnd::GuestStatus(200).code(), 119);
        assert_eq!(VmEnd::Reset.code(), 0);
        assert_eq!(VmEnd::Panic.code(), 120);
        assert_eq!(VmEnd::TripleFault.code(), 121);
        assert_eq!(VmEnd::KvmRun("x".into()).code(), 122);
        assert_eq!(VmEnd::KvmCall("x".into()).code(), 123);
        assert_eq!(VmEnd::Signal(libc::SIGINT).code(), 130);
        assert_eq!(VmEnd::Signal(libc::SIGTERM).code(), 143);
        assert!(VmEnd::Reset.describe().is_none());
        assert!(VmEnd::GuestStatus(200).describe().unwrap().contains("119"));
    }

    #[test]
    fn first_exit_request_wins_and_wakes_the_loop() {
        let s = ExitSignal::new().unwrap();
        assert_eq!(s.reason(), None);
        assert!(!s.requested());
        s.request(VmEnd::TripleFault);
        s.request(VmEnd::Reset);
        assert_eq!(s.reason(), Some(VmEnd::TripleFault));
        assert!(s.requested());
        assert_eq!(s.event().read().unwrap(), 2);
    }
}
