//! Seccomp sandbox: per-thread system-call allow lists (rust-vmm's
//! seccompiler), installed before the first `KVM_RUN`.
//!
//! - The VMM filter goes on the main thread at the start of `tinyvmm run`,
//!   before the VM is built; every thread created later inherits it.
//! - vCPU threads add a much narrower filter of their own before entering
//!   the guest: `KVM_RUN` and the two ioctls used to report a failure,
//!   eventfd writes, locks, memory management, signal return, exit.
//!
//! A forbidden call traps (SIGSYS): our handler prints the system-call
//! number and the thread's name, then exits with 159 (128 + SIGSYS), the
//! same code a plain kill by SIGSYS would give.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iowr_nr};

/// Whether and how the sandbox is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sandbox {
    /// Filters on (the default).
    #[default]
    On,
    /// `--no-seccomp`: no filters (debugging only).
    Off,
    /// Filters on, and vCPU 0 makes a forbidden call once its filter is in
    /// (hidden `--seccomp-test-violation`, for the test that proves the
    /// filter bites).
    TestViolation,
}

/// Exit code after a forbidden system call: 128 + SIGSYS.
pub const EXIT_SECCOMP: u8 = 128 + libc::SIGSYS as u8;

const KVMIO: u32 = 0xAE;
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_bindings::kvm_translation);

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

/// System calls of the main thread and its helper threads: building a VM
/// (open the kernel, mmap guest RAM, KVM ioctls), the event loop, the
/// console threads, thread start and exit, terminal ioctls.
const VMM_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_pread64,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_ioctl,
    libc::SYS_access,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // `--stats`: which guest RAM pages are resident (host::process).
    libc::SYS_mincore,
    libc::SYS_brk,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    libc::SYS_seccomp,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_futex,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_prlimit64,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// System calls a vCPU thread may make once its filter is in (ioctl is
/// narrowed to the requests below).
const VCPU_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_close,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

fn allow_all(calls: &[i64]) -> BTreeMap<i64, Vec<SeccompRule>> {
    calls.iter().map(|&nr| (nr, vec![])).collect()
}

fn build(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(err)?;
    filter.try_into().map_err(err)
}

/// The main thread's filter.
pub fn vmm_filter() -> Result<BpfProgram, SeccompError> {
    build(allow_all(VMM_SYSCALLS))
}

/// The vCPU threads' filter: `KVM_RUN`, and `KVM_GET_REGS`/`KVM_TRANSLATE`
/// to report an emulation failure; nothing else reaches the kernel's ioctl.
pub fn vcpu_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules = allow_all(VCPU_SYSCALLS);
    let ioctl = [KVM_RUN(), KVM_GET_REGS(), KVM_TRANSLATE()]
        .iter()
        .map(|&req| {
            let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req);
            SeccompRule::new(vec![cond.map_err(err)?]).map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl);
    // Debug builds of std check an fd is open before closing it (the vCPU
    // fd is closed on this thread): fcntl(fd, F_GETFD) only.
    let getfd = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::F_GETFD as u64,
    )
    .map_err(err)?;
    rules.insert(
        libc::SYS_fcntl,
        vec![SeccompRule::new(vec![getfd]).map_err(err)?],
    );
    build(rules)
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
    put(b" thread; exiting with 159\n");
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

static VMM_FILTER: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the SIGSYS handler and the VMM filter on this (the main)
/// thread, once per process: later calls return the first result.
pub fn install_vmm_filter() -> Result<(), SeccompError> {
    VMM_FILTER
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
                .map_err(|e| SeccompError::Handler(e.errno()).to_string())?;
            let prog = vmm_filter().map_err(|e| e.to_string())?;
            seccompiler::apply_filter(&prog).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(SeccompError::Filter)
}

/// Installs the vCPU filter on the calling thread.
pub fn install_vcpu_filter() -> Result<(), SeccompError> {
    let prog = vcpu_filter()?;
    THREAD_ROLE.with(|r| r.set("vCPU"));
    seccompiler::apply_filter(&prog).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_name_the_kvm_ioctls() {
        assert!(!vmm_filter().unwrap().is_empty());
        assert!(!vcpu_filter().unwrap().is_empty());
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
        assert_eq!(KVM_TRANSLATE(), 0xc018_ae85);
    }

    #[test]
    fn vcpu_list_is_a_subset_of_the_vmm_list() {
        // A vCPU thread inherits the VMM filter; every call it needs must
        // pass both.
        for nr in VCPU_SYSCALLS {
            assert!(VMM_SYSCALLS.contains(nr), "syscall {nr}");
        }
        assert!(!VCPU_SYSCALLS.contains(&libc::SYS_openat));
        assert!(!VCPU_SYSCALLS.contains(&libc::SYS_execve));
        assert!(!VMM_SYSCALLS.contains(&libc::SYS_execve));
        assert!(!VMM_SYSCALLS.contains(&libc::SYS_socket));
        assert!(!VMM_SYSCALLS.contains(&libc::SYS_ptrace));
    }

    #[test]
    fn a_filtered_thread_is_stopped_by_a_forbidden_call_in_a_child_process() {
        // Install the vCPU filter in a forked child and make a forbidden call:
        // the child must end with our code (159), not go on. Everything that
        // allocates happens before fork.
        let prog = vcpu_filter().unwrap();
        // SAFETY: fork in a test; the child only makes async-signal-safe
        // calls (sigaction, prctl, seccomp, syscall, _exit) and no allocation.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys).is_ok()
                && seccompiler::apply_filter(&prog).is_ok();
            // SAFETY: getppid takes no arguments; it is not on the vCPU list.
            unsafe { libc::syscall(libc::SYS_getppid) };
            // SAFETY: _exit ends the child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), i32::from(EXIT_SECCOMP));
    }
}
