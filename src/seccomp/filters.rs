//! The three allow-lists and the BPF programs built from them:
//! 1. `build_filter`: every thread while the VM is built (sockets: only
//!    the AF_INET datagram one a `--net` tap set-up needs);
//! 2. `run_filter`: every thread once the VM is built and before the first
//!    `KVM_RUN`: no opening files, no processes, sockets or exec, `ioctl`
//!    only for the terminal requests, the KVM requests the vCPUs use and
//!    a tap's TUNSETOFFLOAD,
//!    no new executable memory;
//! 3. `vcpu_filter`: added by each vCPU thread on top: `KVM_RUN` and little else.
//!
//! Filters stack: a call must pass every filter a thread has.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iowr_nr};

use super::{SeccompError, err};

const KVMIO: u32 = 0xAE;
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);
ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_bindings::kvm_translation);
// Reading state for a snapshot (kvm/state.rs): vCPU requests on the vCPU
// threads, VM requests on the main thread. Reads only: no KVM_SET_*.
// (KVM_GET_SREGS, above, serves the profiler too.)
ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_bindings::kvm_msrs);
ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_bindings::kvm_lapic_state);
ioctl_iowr_nr!(KVM_GET_CPUID2, KVMIO, 0x91, kvm_bindings::kvm_cpuid2);
ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_bindings::kvm_mp_state);
ioctl_ior_nr!(
    KVM_GET_VCPU_EVENTS,
    KVMIO,
    0x9f,
    kvm_bindings::kvm_vcpu_events
);
ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_bindings::kvm_debugregs);
ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_bindings::kvm_xsave);
ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_bindings::kvm_xcrs);
ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_bindings::kvm_irqchip);
ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_bindings::kvm_clock_data);
ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_bindings::kvm_pit_state2);

/// The state reads a snapshot makes while the VM runs: KVM_RUN (with
/// immediate_exit, to complete an exit) and the KVM_GET_* of kvm/state.rs.
fn snapshot_ioctls() -> [u64; 14] {
    [
        KVM_GET_SREGS(),
        KVM_GET_MSRS(),
        KVM_GET_LAPIC(),
        KVM_GET_CPUID2(),
        KVM_GET_MP_STATE(),
        KVM_GET_VCPU_EVENTS(),
        KVM_GET_DEBUGREGS(),
        KVM_GET_TSC_KHZ(),
        KVM_GET_XSAVE(),
        KVM_GET_XCRS(),
        KVM_GET_IRQCHIP(),
        KVM_GET_CLOCK(),
        KVM_GET_PIT2(),
        KVM_GET_REGS(),
    ]
    .map(u64::from)
}

/// Terminal requests the run stage allows: read and restore the settings
/// (tcgetattr/tcsetattr) and the window size. Not TIOCSTI, which would let
/// a compromised VMM type into the user's shell.
pub const TERMINAL_IOCTLS: [u64; 5] = [
    libc::TCGETS,
    libc::TCSETS,
    libc::TCSETSW,
    libc::TCSETSF,
    libc::TIOCGWINSZ,
];

/// Stage 1, the build: system calls of the main thread and its helper
/// threads while the VM is built (open the kernel and initrd, mmap guest
/// RAM, KVM ioctls, create eventfds and threads).
pub const BUILD_SYSCALLS: &[i64] = &[
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
    libc::SYS_preadv,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_flock,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    // A snapshot directory is created during the build.
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
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
    // Dropping capabilities and switching user at the end of the build.
    libc::SYS_capset,
    libc::SYS_setgroups,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
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
    // --vsock: bind and listen on PATH; a stale socket there is found by a
    // refused connect and removed (vsock/host.rs). `socket` itself is
    // allowed only for Unix stream sockets (`unix_stream_socket`).
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_connect,
    libc::SYS_unlink,
    // ... and what the run stage adds for it (filters stack: every call
    // the run stage allows must pass this filter too).
    libc::SYS_accept4,
    libc::SYS_shutdown,
    // The vsock device's REQUEST timer: made here, set at run time.
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Stage 2, the run: the event loop, the output and stdin threads, the
/// kick and exit signals, memory for the allocator, and what a vCPU thread
/// does before its own filter goes in (install it: `prctl` for
/// NO_NEW_PRIVS, `seccomp`). `ioctl`, `mmap`, `mprotect`, `fcntl` and `prctl`
/// are narrowed by argument in `run_filter`.
pub const RUN_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_lseek,
    // Disk images (opened during the build): requests and flushes.
    libc::SYS_preadv,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    // A snapshot: rewriting its files (opened during the build), and the
    // disks' identity.
    libc::SYS_ftruncate,
    libc::SYS_fstat,
    // --vsock: host clients on the listener, connections to PATH_<port>
    // for the guest (`socket` only as `unix_stream_socket` allows),
    // half-closes.
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_shutdown,
    // --vsock: its REQUEST timer (made during the build) is set and stopped.
    libc::SYS_timerfd_settime,
    libc::SYS_close,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mincore,
    libc::SYS_brk,
    libc::SYS_seccomp,
    libc::SYS_sched_yield,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_futex,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// System calls a vCPU thread may make once its filter is in (ioctl is
/// narrowed to the requests below).
pub const VCPU_SYSCALLS: &[i64] = &[
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

/// Stage 1: every thread while the VM is built.
pub fn build_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules = allow_all(BUILD_SYSCALLS);
    // `--net`: one kind of socket, AF_INET datagram, the handle for the
    // netdevice(7) ioctls that find a tap and set a created one's address.
    let inet_dgram = SeccompRule::new(vec![
        arg_eq(0, SeccompCmpArgLen::Dword, libc::AF_INET as u64)?,
        arg_eq(
            1,
            SeccompCmpArgLen::Dword,
            (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64,
        )?,
    ])
    .map_err(err)?;
    // `--vsock`: Unix stream sockets (std's bind and connect), and the
    // run stage's non-blocking ones: filters stack, so a socket the run
    // filter allows must pass this one too (without it, every guest
    // connection to `PATH_<port>` ended the VMM with SIGSYS).
    let mut socket = vec![inet_dgram];
    socket.extend(unix_stream_socket(libc::SOCK_CLOEXEC)?);
    socket.extend(unix_stream_socket(RUN_SOCKET_FLAGS)?);
    rules.insert(libc::SYS_socket, socket);
    build(rules)
}

/// The flags of the vsock device's run-time sockets (`vsock/host.rs`).
const RUN_SOCKET_FLAGS: i32 = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;

/// `socket(AF_UNIX, SOCK_STREAM | flags, 0)` and no other socket: the
/// vsock device's Unix sockets (std's bind and connect at build, non-blocking
/// connections at run time), never a network socket.
fn unix_stream_socket(flags: i32) -> Result<Vec<SeccompRule>, SeccompError> {
    let conds = vec![
        arg_eq(0, SeccompCmpArgLen::Dword, libc::AF_UNIX as u64)?,
        arg_eq(
            1,
            SeccompCmpArgLen::Dword,
            (libc::SOCK_STREAM | flags) as u64,
        )?,
        arg_eq(2, SeccompCmpArgLen::Dword, 0)?,
    ];
    Ok(vec![SeccompRule::new(conds).map_err(err)?])
}

/// `arg` (0-based) equals `value`.
fn arg_eq(arg: u8, len: SeccompCmpArgLen, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, len, SeccompCmpOp::Eq, value).map_err(err)
}

/// One rule per value of argument `arg`.
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    values
        .iter()
        .map(|&v| SeccompRule::new(vec![arg_eq(arg, SeccompCmpArgLen::Dword, v)?]).map_err(err))
        .collect()
}

/// `prot` (argument `arg`) without PROT_EXEC.
fn no_exec(arg: u8) -> Result<Vec<SeccompRule>, SeccompError> {
    let cond = SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )
    .map_err(err)?;
    Ok(vec![SeccompRule::new(vec![cond]).map_err(err)?])
}

/// Stage 2: every thread from the end of the build on.
pub fn run_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules = allow_all(RUN_SYSCALLS);
    let mut ioctls: Vec<u64> = TERMINAL_IOCTLS.to_vec();
    ioctls.extend([KVM_RUN(), KVM_GET_REGS(), KVM_GET_SREGS(), KVM_TRANSLATE()].map(u64::from));
    // virtio-net: the tap's offloads, set once the guest's driver is live.
    ioctls.push(libc::TUNSETOFFLOAD);
    ioctls.extend(snapshot_ioctls());
    rules.insert(libc::SYS_ioctl, one_of(1, &ioctls)?);
    rules.insert(libc::SYS_mmap, no_exec(2)?);
    rules.insert(libc::SYS_mprotect, no_exec(2)?);
    rules.insert(libc::SYS_socket, unix_stream_socket(RUN_SOCKET_FLAGS)?);
    let fcntl = [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_SETFL].map(|c| c as u64);
    rules.insert(libc::SYS_fcntl, one_of(1, &fcntl)?);
    rules.insert(
        libc::SYS_prctl,
        one_of(0, &[libc::PR_SET_NO_NEW_PRIVS as u64])?,
    );
    build(rules)
}

/// The vCPU threads' filter: `KVM_RUN`, `KVM_GET_REGS`/`KVM_TRANSLATE`
/// to report an emulation failure, and `KVM_GET_REGS`/`KVM_GET_SREGS` for
/// the profiler's samples; nothing else reaches the kernel's ioctl.
pub fn vcpu_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules = allow_all(VCPU_SYSCALLS);
    // KVM's three, and restoring the terminal from the SIGSYS handler
    // (glibc's tcsetattr issues TCSETS, then TCGETS to check it).
    let mut ioctl = one_of(
        1,
        &[KVM_RUN(), KVM_GET_REGS(), KVM_GET_SREGS(), KVM_TRANSLATE()].map(u64::from),
    )?;
    ioctl.extend(one_of(1, &snapshot_ioctls())?);
    ioctl.extend(one_of(1, &[libc::TCSETS, libc::TCGETS])?);
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

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
