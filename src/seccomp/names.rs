//! Names of the system calls a forbidden-call report can name: those on any
//! of our lists and those a compromised VMM would reach for first. The
//! number is always printed; the name where we know it.

/// `(number, name)` for x86_64.
const NAMES: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_open, "open"),
    (libc::SYS_close, "close"),
    (libc::SYS_mmap, "mmap"),
    (libc::SYS_mprotect, "mprotect"),
    (libc::SYS_munmap, "munmap"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_access, "access"),
    (libc::SYS_pipe, "pipe"),
    (libc::SYS_dup, "dup"),
    (libc::SYS_getpid, "getpid"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_clone, "clone"),
    (libc::SYS_fork, "fork"),
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_kill, "kill"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_chdir, "chdir"),
    (libc::SYS_rename, "rename"),
    (libc::SYS_mkdir, "mkdir"),
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_chmod, "chmod"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_getppid, "getppid"),
    (libc::SYS_setuid, "setuid"),
    (libc::SYS_getuid, "getuid"),
    (libc::SYS_getgid, "getgid"),
    (libc::SYS_geteuid, "geteuid"),
    (libc::SYS_getegid, "getegid"),
    (libc::SYS_setresuid, "setresuid"),
    (libc::SYS_setresgid, "setresgid"),
    (libc::SYS_setgroups, "setgroups"),
    (libc::SYS_setgid, "setgid"),
    (libc::SYS_capset, "capset"),
    (libc::SYS_prctl, "prctl"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_getdents64, "getdents64"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_pipe2, "pipe2"),
    (libc::SYS_eventfd2, "eventfd2"),
    (libc::SYS_epoll_create1, "epoll_create1"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_memfd_create, "memfd_create"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_openat2, "openat2"),
    (libc::SYS_rt_sigaction, "rt_sigaction"),
    (libc::SYS_sched_getaffinity, "sched_getaffinity"),
    (libc::SYS_prlimit64, "prlimit64"),
];

/// The name of system call `nr`, or `"?"`.
pub fn name(nr: i64) -> &'static str {
    NAMES
        .iter()
        .find(|&&(n, _)| n == nr)
        .map_or("?", |&(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_named_and_unknown_ones_say_so() {
        assert_eq!(name(libc::SYS_openat), "openat");
        assert_eq!(name(libc::SYS_getppid), "getppid");
        assert_eq!(name(100_000), "?");
        let mut seen = std::collections::HashSet::new();
        assert!(
            NAMES.iter().all(|(n, _)| seen.insert(*n)),
            "a number is listed twice"
        );
    }
}
