//! The launch watchdog: kills every launched process still running at the
//! latest deadline. It kills through pidfds, which name the processes
//! themselves: one reaped early (while others still run) may have its PID
//! reused, and a kill by PID could then hit a stranger; a signal through
//! the pidfd of a reaped process fails harmlessly (ESRCH).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Watches `(deadline, pidfd)` per process. Returns (a flag to set once
/// every process is reaped, which stops the watchdog; whether it killed).
pub fn watchdog<'a>(
    processes: impl Iterator<Item = (Instant, Option<&'a OwnedFd>)>,
) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let mut deadline = Instant::now();
    let mut pidfds: Vec<OwnedFd> = Vec::new();
    for (until, fd) in processes {
        deadline = deadline.max(until);
        pidfds.extend(fd.and_then(|fd| fd.try_clone().ok()));
    }
    let (d, k) = (done.clone(), killed.clone());
    thread::spawn(move || {
        while !d.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                k.store(true, Ordering::SeqCst);
                for fd in &pidfds {
                    kill(fd.as_fd());
                }
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    (done, killed)
}

/// SIGKILL through a pidfd.
fn kill(pidfd: BorrowedFd<'_>) {
    // SAFETY: pidfd_send_signal takes an fd that stays open across the
    // call, a signal number, a null siginfo and no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// A pidfd for our unreaped child `pid` (`None` before Linux 5.3).
pub fn pidfd_of(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and no flags; a non-negative result
    // is a new fd that nobody else owns.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        (fd >= 0).then(|| std::os::fd::FromRawFd::from_raw_fd(fd as i32))
    }
}
