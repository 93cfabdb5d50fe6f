//! Unit tests of the allow-lists and filters.

use super::*;

#[test]
fn filters_compile_and_name_the_kvm_ioctls() {
    assert!(!build_filter().unwrap().is_empty());
    assert!(!run_filter().unwrap().is_empty());
    assert!(!vcpu_filter().unwrap().is_empty());
    assert_eq!(KVM_RUN(), 0xae80);
    assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
    assert_eq!(KVM_TRANSLATE(), 0xc018_ae85);
    assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
}

#[test]
fn each_stage_is_narrower_than_the_one_before() {
    // A vCPU thread carries all three filters: what it needs must pass each.
    for nr in VCPU_SYSCALLS {
        let narrowed = [libc::SYS_mmap, libc::SYS_mprotect, libc::SYS_fcntl];
        assert!(
            RUN_SYSCALLS.contains(nr) || narrowed.contains(nr),
            "vCPU syscall {nr} not allowed at run time"
        );
        assert!(
            BUILD_SYSCALLS.contains(nr),
            "vCPU syscall {nr} not allowed at build"
        );
    }
    for nr in RUN_SYSCALLS {
        assert!(
            BUILD_SYSCALLS.contains(nr),
            "run syscall {nr} not allowed at build"
        );
    }
    // What the run stage takes away.
    for gone in [
        libc::SYS_openat,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_eventfd2,
        libc::SYS_pipe2,
        libc::SYS_dup,
        libc::SYS_rt_sigaction,
        libc::SYS_newfstatat,
    ] {
        assert!(
            !RUN_SYSCALLS.contains(&gone),
            "{gone} still allowed at run time"
        );
    }
    for never in [
        libc::SYS_execve,
        libc::SYS_socket,
        libc::SYS_ptrace,
        libc::SYS_fork,
    ] {
        assert!(!BUILD_SYSCALLS.contains(&never) && !RUN_SYSCALLS.contains(&never));
    }
    assert!(!TERMINAL_IOCTLS.contains(&libc::TIOCSTI));
}

#[test]
fn the_vsock_run_time_socket_calls_pass_the_build_and_run_filters_stacked() {
    // Filters stack: a run-time call must pass the build filter too. In a
    // forked child, both go on as in `tinyvmm run`, then the vsock device's
    // own run-time code makes its calls (a guest connecting to
    // `PATH_<port>`, a host client accepted, data both ways, a half-close).
    // A forbidden call kills the child with SIGSYS (no handler here).
    use crate::devices::virtio::vsock::host;
    let dir = std::env::temp_dir().join(format!("tinyvmm-seccomp-vsock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("v.sock");
    let guest_side = std::os::unix::net::UnixListener::bind(dir.join("v.sock_77")).unwrap();
    let config = host::VsockConfig {
        cid: 3,
        socket: base.clone(),
    };
    let listener = host::listen(&config).unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(&base).unwrap();
    std::io::Write::write_all(&mut client, b"c").unwrap();
    let (build, run) = (build_filter().unwrap(), run_filter().unwrap());
    // SAFETY: fork in a test; the child runs only the code under test (the
    // allocator's locks are reset for the child by glibc) and ends in _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = seccompiler::apply_filter(&build).is_ok()
            && seccompiler::apply_filter(&run).is_ok()
            && host::connect(&base, 77)
                .and_then(|s| host::write_fd(&s, b"x").map(|_| s))
                .and_then(|s| s.shutdown(std::net::Shutdown::Write))
                .is_ok()
            && matches!(host::accept(&listener), Ok(Some(s))
                if host::read_fd(&s, &mut [0u8; 1]).is_ok());
        // SAFETY: _exit ends the child.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(client);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let _ = std::fs::remove_dir_all(&dir);
    drop(guest_side);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child ended with status {status:#x} (SIGSYS is {})",
        libc::SIGSYS
    );
}
