//! Process signals: SIGINT/SIGTERM/SIGHUP end the VM cleanly, and a
//! real-time signal kicks vCPU threads out of `KVM_RUN`.
//!
//! A signal handler may only do async-signal-safe work, so ours stores the
//! signal number and writes to the exit eventfd; the main loop does the rest.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

static EXIT_FD: AtomicI32 = AtomicI32::new(-1);
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Signals that end the VM with 128+N.
pub const EXIT_SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_exit_signal(num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    PENDING.store(num, Ordering::SeqCst);
    let fd = EXIT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `one` is 8 readable bytes,
        // which is what an eventfd takes. A failure is harmless: the main
        // loop also polls `pending()`.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

extern "C" fn on_kick(_num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    // Nothing to do: delivery alone makes KVM_RUN return EINTR.
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

/// Installs the handlers. Call once, before vCPU threads start.
pub fn install() -> std::io::Result<()> {
    for sig in EXIT_SIGNALS {
        register_signal_handler(sig, on_exit_signal)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
    }
    register_signal_handler(kick_signal(), on_kick)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// Points the handler at the current VM's exit eventfd (-1: none).
pub fn set_exit_fd(fd: RawFd) {
    EXIT_FD.store(fd, Ordering::SeqCst);
}

/// The last exit signal received, if any.
pub fn pending() -> Option<c_int> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Asks the kernel to send us SIGTERM when our parent dies, so no orphaned
/// VMM keeps running (prctl(2), PR_SET_PDEATHSIG).
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
}
