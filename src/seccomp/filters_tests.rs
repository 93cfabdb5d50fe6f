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
