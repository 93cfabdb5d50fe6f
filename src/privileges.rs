//! Least privilege once the VM is built: running a VM needs no capability
//! (the VM, vCPU and device fds are already open), so every thread drops
//! all of them, and `--uid`/`--gid` switch to another user as Firecracker's
//! jailer does. capabilities(7), credentials(7).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Capabilities are numbered below this (CAP_LAST_CAP is 40 in Linux 6.x;
/// PR_CAPBSET_DROP answers EINVAL past the last one).
const CAP_LIMIT: libc::c_ulong = 64;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Set once a user switch is coming (`--uid`): threads then keep their
/// effective capabilities until it, because glibc switches every thread
/// and each needs CAP_SETUID/CAP_SETGID for that; the switch itself clears
/// them (credentials(7): leaving uid 0 empties the permitted set).
static SWITCH_PLANNED: AtomicBool = AtomicBool::new(false);

/// Says that `switch_user` will be called once the VM is built.
pub fn plan_user_switch() {
    SWITCH_PLANNED.store(true, Ordering::SeqCst);
}

/// Drops every capability of the calling thread: ambient, bounding (where
/// the thread may: a process without CAP_SETPCAP keeps its bounding set,
/// which it cannot use with NoNewPrivs set), then effective, permitted and
/// inheritable, unless a user switch is planned (which clears those).
/// Capabilities are per thread: each thread calls this.
pub fn drop_thread_capabilities() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    check(rc.into())?;
    for cap in 0..CAP_LIMIT {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) => break, // past the last capability
                Some(libc::EPERM) => break,  // no CAP_SETPCAP: nothing to drop with
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    if SWITCH_PLANNED.load(Ordering::SeqCst) {
        return Ok(());
    }
    clear_thread_capabilities()
}

/// Empties the calling thread's effective, permitted and inheritable sets.
pub fn clear_thread_capabilities() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and two data structs, which live
    // across the call and have the kernel's layout (repr(C)).
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) })
}

/// Starts a helper thread (console output, stdin pump) that drops its
/// capabilities first, and returns once it has: the thread is then fully
/// started (its start-up system calls made), so a seccomp filter later put
/// on every thread cannot catch it half-way through its start.
pub fn spawn_unprivileged<F, T>(name: &str, f: F) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (started, wait) = std::sync::mpsc::sync_channel(0);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = drop_thread_capabilities();
            let _ = started.send(());
            f()
        })?;
    let _ = wait.recv();
    Ok(thread)
}

/// Switches the whole process (glibc applies it to every thread) to `gid`
/// and `uid`, with no supplementary groups. Nothing to do for the current ids.
pub fn switch_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: getuid/getgid/setgroups/setresgid/setresuid take integers
    // and (setgroups) an empty list.
    unsafe {
        if libc::getgid() != gid || libc::getegid() != gid {
            check(libc::setgroups(0, std::ptr::null()).into())?;
            check(libc::setresgid(gid, gid, gid).into())?;
        }
        if libc::getuid() != uid || libc::geteuid() != uid {
            check(libc::setresuid(uid, uid, uid).into())?;
        }
    }
    Ok(())
}

/// The calling thread's effective capability mask (from /proc), for tests.
pub fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    crate::host::procfs::parse_status(&status).cap_eff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_drops_its_capabilities_has_none_left() {
        let caps = std::thread::spawn(|| {
            drop_thread_capabilities().unwrap();
            effective_capabilities()
        })
        .join()
        .unwrap();
        assert_eq!(caps, Some(0));
    }

    #[test]
    fn switching_to_the_current_user_is_a_no_op() {
        // SAFETY: getuid/getgid take no arguments.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        switch_user(uid, gid).unwrap();
    }
}
