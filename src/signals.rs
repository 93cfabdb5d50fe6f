//! Process signals: SIGINT/SIGTERM/SIGHUP end the VM cleanly, and a
//! real-time signal kicks vCPU threads out of `KVM_RUN`.
//!
//! A signal handler may only do async-signal-safe work, so ours stores the
//! signal number and writes to the exit eventfd; the main loop does the rest.
//!
//! A kick must not be lost: a signal that lands after the vCPU loop looked
//! at its stop flag but before it entered `KVM_RUN` interrupts nothing. So
//! the kick handler also sets `immediate_exit` in the kicked thread's own
//! `kvm_run` (KVM API 5: "the next KVM_RUN returns EINTR at once"), through
//! a thread-local pointer that `with_kick_target` sets only for as long as
//! the vCPU fd is borrowed.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use std::cell::Cell;

use kvm_ioctls::VcpuFd;
use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

static EXIT_FD: AtomicI32 = AtomicI32::new(-1);
static PENDING: AtomicI32 = AtomicI32::new(0);
static SNAPSHOT_WANTED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU32 = AtomicU32::new(0);

/// Signals that end the VM with 128+N.
pub const EXIT_SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_exit_signal(num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    PENDING.store(num, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    let fd = EXIT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `one` is 8 readable bytes,
        // which is what an eventfd takes. A failure is harmless: the main
        // loop also polls `pending()`.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

extern "C" fn on_snapshot_signal(_num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    SNAPSHOT_WANTED.store(true, Ordering::SeqCst);
    let fd = EXIT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: as in `on_exit_signal`: an async-signal-safe write of 8
        // readable bytes to the eventfd; only wakes the main loop.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// `--snapshot-dir`: SIGUSR1 asks for a snapshot (the VM goes on).
pub fn install_snapshot_signal() -> std::io::Result<()> {
    register_signal_handler(libc::SIGUSR1, on_snapshot_signal)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// Whether SIGUSR1 came since the last call.
pub fn take_snapshot_request() -> bool {
    SNAPSHOT_WANTED.swap(false, Ordering::SeqCst)
}

thread_local! {
    /// This thread's vCPU `kvm_run.immediate_exit`, while `with_kick_target` runs.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    // Delivery makes a running KVM_RUN return EINTR; immediate_exit makes
    // the next one return at once, so a kick just before it is not lost.
    let target = IMMEDIATE_EXIT.with(Cell::get);
    if !target.is_null() {
        // SAFETY: the pointer is this thread's own (thread-local), set by
        // `with_kick_target` to a field of the kvm_run mapping of a VcpuFd
        // it holds a `&mut` borrow of, and reset to null before that
        // borrow ends (also on unwind); the handler runs on this thread, so
        // it sees null or a live mapping. A volatile byte store is
        // async-signal-safe.
        unsafe { target.write_volatile(1) };
    }
}

/// Runs `f` with `fd` as this thread's kick target: a kick then also sets
/// the vCPU's `immediate_exit`. The loop in `f` clears it after each EINTR.
pub fn with_kick_target<R>(fd: &mut VcpuFd, f: impl FnOnce(&mut VcpuFd) -> R) -> R {
    /// Clears the target when `with_kick_target` returns or unwinds.
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
        }
    }
    let field: *mut u8 = &mut fd.get_kvm_run().immediate_exit;
    IMMEDIATE_EXIT.with(|c| c.set(field));
    let _disarm = Disarm;
    f(fd)
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

/// How many exit signals arrived so far (`run --bundle` forwards the first
/// to the workload and stops the VM on the second).
pub fn count() -> u32 {
    COUNT.load(Ordering::SeqCst)
}

/// Asks the kernel to send us SIGTERM when our parent dies, so no orphaned
/// VMM keeps running (prctl(2), PR_SET_PDEATHSIG).
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
}
