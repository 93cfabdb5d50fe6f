//! Seccomp sandbox: per-thread system-call allow lists (rust-vmm's
//! seccompiler) in two stages, as Firecracker does.
//!
//! 1. The build filter goes on the main thread at the start of `tinyvmm
//!    run`, before the VM is built; every thread created later inherits it.
//! 2. Once the VM is built, before the first `KVM_RUN`, the run filter goes
//!    on every thread at once (`SECCOMP_FILTER_FLAG_TSYNC`): nothing can
//!    open a file, start a process or thread, make a socket or exec; `ioctl`
//!    is narrowed to the terminal and the KVM requests used.
//! 3. Each vCPU thread then adds its own, narrower still (`KVM_RUN`).
//!
//! The lists are in `filters.rs`. A forbidden call traps (SIGSYS): our
//! handler restores the terminal, prints the call's number and name and
//! the thread's role, then exits with 159 (128 + SIGSYS), the code a plain
//! kill by SIGSYS would give.

pub mod filters;
pub mod names;

use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};

pub use filters::{build_filter, run_filter, vcpu_filter};

/// Whether and how the sandbox is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sandbox {
    /// Filters on (the default).
    #[default]
    On,
    /// `--no-seccomp`: no filters (debugging only).
    Off,
    /// Filters on, and one thread makes a forbidden call once its run-time
    /// filter is in (hidden `--seccomp-test-violation`, for the tests that
    /// prove each class of call is stopped in each thread).
    Test(Violation),
}

/// A forbidden call a test asks for, and which thread makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What is attempted.
    pub call: ForbiddenCall,
    /// From the main thread (event loop) or vCPU 0.
    pub on_vcpu: bool,
}

/// Classes of forbidden calls. Each is made with arguments that would fail
/// harmlessly if the filter let it through, so a broken filter shows as a
/// VMM that goes on running, not as damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForbiddenCall {
    /// `getppid`: on no list.
    Getppid,
    /// `openat` of a path that does not exist.
    Open,
    /// `socket(AF_UNIX)`.
    Socket,
    /// `clone` with flags the kernel refuses (a new process or thread).
    Clone,
    /// `execve` of a path that does not exist.
    Exec,
    /// `ioctl(-1, TIOCSTI)`: typing into a terminal.
    Tiocsti,
    /// `mprotect(NULL, 4096, PROT_READ | PROT_EXEC)`: new executable memory.
    MprotectExec,
}

impl Violation {
    /// Parses `CALL@THREAD`, e.g. `open@main`, `tiocsti@vcpu`.
    pub fn parse(text: &str) -> Option<Violation> {
        let (call, thread) = text.split_once('@')?;
        let call = match call {
            "getppid" => ForbiddenCall::Getppid,
            "open" => ForbiddenCall::Open,
            "socket" => ForbiddenCall::Socket,
            "clone" => ForbiddenCall::Clone,
            "exec" => ForbiddenCall::Exec,
            "tiocsti" => ForbiddenCall::Tiocsti,
            "mprotect-exec" => ForbiddenCall::MprotectExec,
            _ => return None,
        };
        let on_vcpu = match thread {
            "main" => false,
            "vcpu" => true,
            _ => return None,
        };
        Some(Violation { call, on_vcpu })
    }

    /// Makes the forbidden call (the filter is expected to end the process).
    pub fn attempt(self) {
        // SAFETY: each call gets arguments that make it fail without effect
        // if it is let through: a path that does not exist, an fd of -1,
        // clone flags the kernel rejects (CLONE_THREAD without
        // CLONE_SIGHAND: EINVAL), address 0 for mprotect. The socket, if
        // created, is closed.
        unsafe {
            match self.call {
                ForbiddenCall::Getppid => {
                    libc::syscall(libc::SYS_getppid);
                }
                ForbiddenCall::Open => {
                    libc::syscall(
                        libc::SYS_openat,
                        libc::AT_FDCWD,
                        c"/nonexistent-tinyvmm".as_ptr(),
                        0,
                    );
                }
                ForbiddenCall::Socket => {
                    let fd = libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    if fd >= 0 {
                        libc::close(fd as c_int);
                    }
                }
                ForbiddenCall::Clone => {
                    libc::syscall(libc::SYS_clone, libc::CLONE_THREAD, 0, 0, 0, 0);
                }
                ForbiddenCall::Exec => {
                    let argv: [*const libc::c_char; 1] = [std::ptr::null()];
                    libc::syscall(
                        libc::SYS_execve,
                        c"/nonexistent-tinyvmm".as_ptr(),
                        argv.as_ptr(),
                        argv.as_ptr(),
                    );
                }
                ForbiddenCall::Tiocsti => {
                    let byte = b'x';
                    libc::syscall(libc::SYS_ioctl, -1, libc::TIOCSTI, &byte as *const u8);
                }
                ForbiddenCall::MprotectExec => {
                    libc::syscall(
                        libc::SYS_mprotect,
                        0,
                        4096,
                        libc::PROT_READ | libc::PROT_EXEC,
                    );
                }
            }
        }
    }
}

/// Exit code after a forbidden system call: 128 + SIGSYS.
pub const EXIT_SECCOMP: u8 = 128 + libc::SIGSYS as u8;

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused the rules or the kernel refused the program.
    #[error("seccomp: {0}")]
    Filter(String),
    /// The SIGSYS handler could not be installed.
    #[error("seccomp: installing the SIGSYS handler: errno {0}")]
    Handler(i32),
}

fn err<E: std::fmt::Display>(e: E) -> SeccompError {
    SeccompError::Filter(e.to_string())
}

extern "C" fn on_sigsys(_num: c_int, info: *mut siginfo_t, _ctx: *mut c_void) {
    // Only async-signal-safe work here: format into a stack buffer, write(2), _exit(2).
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for
    // SIGSYS from seccomp, the syscall number is at offset 24 (si_syscall in
    // the _sigsys member of the union, see siginfo.h).
    let nr = unsafe { *(info as *const u8).add(24).cast::<c_int>() };
    let mut buf = [0u8; 128];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if len < buf.len() {
                buf[len] = b;
                len += 1;
            }
        }
    };
    put(b"tinyvmm: seccomp: forbidden system call ");
    let mut digits = [0u8; 12];
    let mut n = nr.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(&digits[i..]);
    // The thread's role, recorded before its filter went in: asking the
    // kernel (prctl) from here would itself be a forbidden call.
    put(b" in a ");
    put(THREAD_ROLE.with(|r| r.get()).as_bytes());
    put(b" thread: ");
    put(names::name(i64::from(nr)).as_bytes());
    put(b"; exiting with 159\n");
    // Give the user their terminal back before leaving (raw mode otherwise).
    crate::terminal::restore_saved();
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `buf[..len]` is initialised.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(i32::from(EXIT_SECCOMP));
    }
}

thread_local! {
    /// What kind of thread this is, for the SIGSYS report.
    static THREAD_ROLE: std::cell::Cell<&'static str> = const { std::cell::Cell::new("VMM") };
}

static BUILD_FILTER: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the SIGSYS handler and the build filter on this (the main)
/// thread, once per process: later calls return the first result.
pub fn install_build_filter() -> Result<(), SeccompError> {
    BUILD_FILTER
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
                .map_err(|e| SeccompError::Handler(e.errno()).to_string())?;
            let prog = build_filter().map_err(|e| e.to_string())?;
            seccompiler::apply_filter(&prog).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(SeccompError::Filter)
}

/// Installs the run filter on every thread of the process at once. Every
/// other thread must still carry only the filters this one has (vCPU
/// threads add theirs after this).
pub fn install_run_filter() -> Result<(), SeccompError> {
    let prog = run_filter()?;
    seccompiler::apply_filter_all_threads(&prog).map_err(err)
}

/// Installs the vCPU filter on the calling thread.
pub fn install_vcpu_filter() -> Result<(), SeccompError> {
    let prog = vcpu_filter()?;
    THREAD_ROLE.with(|r| r.set("vCPU"));
    seccompiler::apply_filter(&prog).map_err(err)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
