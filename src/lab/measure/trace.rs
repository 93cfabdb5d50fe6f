//! Reading a process's memory figures at the moment it exits, with ptrace(2).
//!
//! A process's peak RSS (`VmHWM`), its mappings and its namespaces vanish
//! when it exits: a zombie has no memory map left to read. ptrace can stop
//! a process *in* its exit, before the kernel tears its memory down
//! (`PTRACE_O_TRACEEXIT`: the stop comes in `do_exit()` before `exit_mm()`),
//! which is when every figure is final. With `PTRACE_O_TRACEFORK` and
//! `PTRACE_O_TRACEVFORK` the children it forks are traced too (a container
//! runtime forks the container's process). Threads are traced only on
//! request (`PTRACE_O_TRACECLONE`): a Go program such as runc forks from
//! any of its threads, so following its children needs every thread, while
//! a VMM forks nothing and its vCPU threads are better left alone.
//! Facts are read at every traced thread's exit stop and kept per process
//! (the last reading wins: `VmHWM` only grows); a thread reads its whole
//! process's memory through `/proc/<tid>/`, so the figures do not depend
//! on which thread happens to stop last.
//!
//! The launched process asks to be traced itself (`PTRACE_TRACEME` between
//! fork and exec), so nothing it does after exec escapes: the kernel stops
//! it with SIGTRAP right after exec, and the tracer sets the options there.

use std::io;

use serde::Serialize;

use super::isolation::namespaces_apart_from_us;
use crate::host::procfs::{self, MemSizes, ProcStatus};

/// Options every tracee gets: follow forks and vforks, stop at exec and
/// exit, and kill the tracees if the tracer dies (no orphan left stopped).
pub const TRACE_OPTIONS: libc::c_int = libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACEEXIT
    | libc::PTRACE_O_EXITKILL;

/// What a traced process looked like when it exited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcRecord {
    /// Its PID (in our PID namespace).
    pub pid: i32,
    /// Whether it is the launched process itself (not a descendant).
    pub root: bool,
    /// Its `/proc/<pid>/status` fields.
    pub status: ProcStatus,
    /// RSS and PSS over all its mappings (`smaps_rollup`).
    pub mem: Option<MemSizes>,
    /// The guest-RAM mapping's RSS and PSS, for a VMM.
    pub guest: Option<MemSizes>,
    /// Namespace kinds in which it differs from the measuring process.
    pub namespaces_apart: Vec<String>,
}

impl ProcRecord {
    /// Peak RSS outside guest RAM, KiB: the process's own cost.
    pub fn own_peak_kib(&self) -> u64 {
        let hwm = self.status.vm_hwm_kib.unwrap_or(0);
        hwm.saturating_sub(self.guest.map_or(0, |g| g.rss_kib))
    }

    /// Whether this is the workload script (`tinyvmm-workload`; the kernel
    /// keeps 15 bytes of a command name).
    pub fn is_workload(&self) -> bool {
        self.status.name.starts_with("tinyvmm-workloa")
    }
}

/// Reads everything about the process of thread `tid`, stopped in its
/// exit; `root` is the launched process's PID.
pub fn read_exit_facts(tid: i32, root: i32, guest_size: Option<u64>) -> ProcRecord {
    let status = procfs::read(tid, "status")
        .map(|t| procfs::parse_status(&t))
        .unwrap_or_default();
    let pid = status.tgid.unwrap_or(tid);
    let mem = procfs::read(tid, "smaps_rollup").and_then(|t| procfs::parse_smaps_rollup(&t));
    let guest = match guest_size {
        Some(size) if pid == root => {
            procfs::read(tid, "smaps").and_then(|t| anon_mapping_of_size(&t, size))
        }
        _ => None,
    };
    ProcRecord {
        pid,
        root: pid == root,
        status,
        mem,
        guest,
        namespaces_apart: namespaces_apart_from_us(tid),
    }
}

/// In the text of `/proc/<pid>/smaps`, the resident and proportional size
/// of the anonymous mapping of exactly `size_bytes`: a VMM's guest RAM
/// (tinyvmm and QEMU both map guest memory as one private anonymous
/// region of the guest's size when it fits below the 3 GiB MMIO gap). Of
/// several such mappings, the one with the most resident pages.
pub fn anon_mapping_of_size(smaps: &str, size_bytes: u64) -> Option<MemSizes> {
    let all = procfs::mappings(smaps);
    // Guest RAM that its VMM marked MADV_DONTFORK (tinyvmm does; so does
    // QEMU): every such anonymous mapping, however the kernel split or
    // merged them (RAM above 3 GiB is two mappings). The flag also keeps
    // the kernel from merging guest RAM with the VMM's own heap mappings.
    let guest: Vec<_> = all.iter().filter(|m| m.anonymous && m.dont_fork).collect();
    if !guest.is_empty() {
        return Some(MemSizes {
            rss_kib: guest.iter().map(|m| m.rss_kib).sum(),
            pss_kib: guest.iter().map(|m| m.pss_kib).sum(),
        });
    }
    // Otherwise: the anonymous mapping of exactly the guest's size.
    all.into_iter()
        .filter(|m| m.anonymous && m.size_kib == size_bytes / 1024)
        .max_by_key(|m| m.rss_kib)
        .map(|m| MemSizes {
            rss_kib: m.rss_kib,
            pss_kib: m.pss_kib,
        })
}

/// `PTRACE_TRACEME`: called in the child between fork and exec.
pub fn trace_me() -> io::Result<()> {
    // SAFETY: PTRACE_TRACEME takes no pointers; it only marks this process
    // as traced by its parent. Async-signal-safe (a plain system call).
    let r = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `TRACE_OPTIONS` on a stopped tracee, plus `PTRACE_O_TRACECLONE`
/// when `threads`.
pub fn set_options(pid: i32, threads: bool) -> io::Result<()> {
    let options = TRACE_OPTIONS
        | if threads {
            libc::PTRACE_O_TRACECLONE
        } else {
            0
        };
    // SAFETY: PTRACE_SETOPTIONS passes the options as an integer in `data`;
    // no memory is read or written.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options as libc::c_long) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resumes a stopped tracee, delivering `signal` (0: none).
pub fn resume(pid: i32, signal: i32) {
    // SAFETY: PTRACE_CONT passes the signal number as an integer; no memory
    // is touched. Failure (the tracee was killed meanwhile) is harmless:
    // its death is reported by the next wait.
    unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal as libc::c_long) };
}

/// The ID of the child or thread a tracee just created (after a
/// fork/vfork/clone event stop).
pub fn new_child(pid: i32) -> Option<i32> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one `unsigned long` to `data`,
    // which points to `msg`, live for the call.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid,
            0,
            &mut msg as *mut libc::c_ulong,
        )
    };
    (r != -1).then_some(msg as i32)
}

/// A decoded `wait4` status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEvent {
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// A ptrace event stop (`PTRACE_EVENT_*`).
    Event(i32),
    /// Stopped for a signal (`signal-delivery-stop`) or a group stop.
    Stopped(i32),
    /// Anything else (continued).
    Other,
}

/// Decodes a status word from wait(2).
pub fn decode(status: i32) -> WaitEvent {
    if libc::WIFEXITED(status) {
        WaitEvent::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WaitEvent::Signaled(libc::WTERMSIG(status))
    } else if libc::WIFSTOPPED(status) {
        match (status >> 16) & 0xff {
            0 => WaitEvent::Stopped(libc::WSTOPSIG(status)),
            event => WaitEvent::Event(event),
        }
    } else {
        WaitEvent::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::host::procfs::SMAPS;

    #[test]
    fn guest_mappings_marked_dontfork_win_whatever_their_size() {
        // RAM split around the MMIO gap: two mappings, neither of the
        // guest's size; both marked `dc`.
        let smaps = "\
7f00-7f10 rw-p 00000000 00:00 0
Size:            3145728 kB
Rss:                1024 kB
Pss:                1024 kB
VmFlags: rd wr mr mw me dc ac sd
7f20-7f30 rw-p 00000000 00:00 0
Size:            1048576 kB
Rss:                  64 kB
Pss:                  64 kB
VmFlags: rd wr mr mw me dc ac sd
7f40-7f50 rw-p 00000000 00:00 0
Size:            4194304 kB
Rss:                9999 kB
Pss:                9999 kB
VmFlags: rd wr mr mw me ac sd
";
        let m = anon_mapping_of_size(smaps, 4 << 30).unwrap();
        assert_eq!((m.rss_kib, m.pss_kib), (1088, 1088));
    }

    #[test]
    fn guest_mapping_is_the_anonymous_one_of_guest_size() {
        let m = anon_mapping_of_size(SMAPS, 128 << 20).unwrap();
        assert_eq!((m.rss_kib, m.pss_kib), (2048, 2048));
        assert_eq!(anon_mapping_of_size(SMAPS, 8 << 20).unwrap().rss_kib, 40);
        assert_eq!(anon_mapping_of_size(SMAPS, 256 << 20), None);
    }

    #[test]
    fn wait_statuses_decode() {
        assert_eq!(decode(3 << 8), WaitEvent::Exited(3));
        assert_eq!(decode(libc::SIGKILL), WaitEvent::Signaled(libc::SIGKILL));
        // Stopped by SIGSTOP: 0x7f | sig << 8.
        assert_eq!(
            decode(0x7f | (libc::SIGSTOP << 8)),
            WaitEvent::Stopped(libc::SIGSTOP)
        );
        // Exit event: SIGTRAP | PTRACE_EVENT_EXIT << 8, shifted by 8.
        let s = 0x7f | ((libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8)) << 8);
        assert_eq!(decode(s), WaitEvent::Event(libc::PTRACE_EVENT_EXIT));
    }

    #[test]
    fn own_peak_excludes_guest_ram() {
        let mut r = ProcRecord {
            pid: 1,
            root: true,
            status: ProcStatus {
                name: "tinyvmm".into(),
                vm_hwm_kib: Some(5000),
                ..ProcStatus::default()
            },
            mem: None,
            guest: Some(MemSizes {
                rss_kib: 3000,
                pss_kib: 3000,
            }),
            namespaces_apart: vec![],
        };
        assert_eq!(r.own_peak_kib(), 2000);
        assert!(!r.is_workload());
        r.status.name = "tinyvmm-workloa".into();
        assert!(r.is_workload());
    }
}
