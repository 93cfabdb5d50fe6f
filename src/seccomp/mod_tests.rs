//! Unit tests of the sandbox: a filter really stops a forbidden call.

use super::*;

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

#[test]
fn violations_parse_as_call_at_thread() {
    let v = Violation::parse("open@main").unwrap();
    assert_eq!((v.call, v.on_vcpu), (ForbiddenCall::Open, false));
    assert_eq!(
        Violation::parse("tiocsti@vcpu").unwrap().call,
        ForbiddenCall::Tiocsti
    );
    assert!(Violation::parse("open").is_none());
    assert!(Violation::parse("open@gpu").is_none());
    assert!(Violation::parse("reboot@main").is_none());
}
