//! The fourth allow-list: a disk's I/O thread (`--disk ...,iothread=on`,
//! `crate::devices::virtio::block::iothread`) adds it on top of the build
//! and run filters, as a vCPU thread adds its own.

use seccompiler::BpfProgram;

use super::{SeccompError, allow_all, build, no_exec, one_of};

/// System calls a disk's I/O thread may make once its filter is in: wait
/// on its eventfds (epoll), read them and signal the irqfd, the image's
/// requests (preadv/pwritev, pread64/pwrite64 for O_DIRECT's bounce
/// buffer, fdatasync, fallocate), locks and memory for the allocator.
pub const IOTHREAD_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_futex,
    libc::SYS_close,
    libc::SYS_munmap,
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

/// A disk I/O thread's filter (`IOTHREAD_SYSCALLS`): `mmap`/`mprotect`
/// without PROT_EXEC, `ioctl` only for the SIGSYS handler's terminal
/// restore, `fcntl` only F_GETFD (debug builds of std check an fd before
/// closing it).
pub fn iothread_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules = allow_all(IOTHREAD_SYSCALLS);
    rules.insert(libc::SYS_mmap, no_exec(2)?);
    rules.insert(libc::SYS_mprotect, no_exec(2)?);
    rules.insert(libc::SYS_ioctl, one_of(1, &[libc::TCSETS, libc::TCGETS])?);
    rules.insert(libc::SYS_fcntl, one_of(1, &[libc::F_GETFD as u64])?);
    build(rules)
}
