//! This process's own cost, measured from inside: CPU time, resident
//! memory split into "guest RAM" and "everything else" (what the VMM adds),
//! and the fd/thread/RSS census `--repeat` prints.
//!
//! Resident memory comes from /proc/self/smaps (parsed by `super::procfs`):
//! each mapping's `Rss:`, attributed to the guest when the mapping lies
//! inside one of guest RAM's host mappings.

use std::time::Duration;

use super::procfs;

/// Resident memory of this process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resident {
    /// Guest RAM pages the guest (or the loader) has touched.
    pub guest: u64,
    /// Everything else: code, heap, stacks, libraries: the VMM's overhead.
    pub vmm: u64,
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Splits the resident memory in `smaps` text between guest RAM (host
/// ranges `[start, end)`) and the rest.
pub fn split_resident(smaps: &str, guest_ranges: &[(u64, u64)]) -> Resident {
    let mut res = Resident::default();
    for m in procfs::mappings(smaps) {
        let in_guest = guest_ranges
            .iter()
            .any(|&(s, e)| m.start >= s && m.end <= e);
        let bytes = m.rss_kib * 1024;
        if in_guest {
            res.guest += bytes;
        } else {
            res.vmm += bytes;
        }
    }
    res
}

/// Process-wide counts that reveal leaks across repeated boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
    /// Resident set size in bytes.
    pub rss: u64,
}

impl std::fmt::Display for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fds {}, threads {}, rss {:.2} MiB",
            self.fds,
            self.threads,
            self.rss as f64 / f64::from(1 << 20)
        )
    }
}

/// Open fds, threads and RSS of this process now.
pub fn census() -> Census {
    let status = procfs::parse_status(&procfs::read_self("status").unwrap_or_default());
    Census {
        fds: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0),
        threads: status.threads.unwrap_or(0) as usize,
        rss: status.vm_rss_kib.unwrap_or(0) * 1024,
    }
}

/// This process's resident memory, split around guest RAM.
pub fn resident(guest_ranges: &[(u64, u64)]) -> Resident {
    procfs::read_self("smaps")
        .map(|s| split_resident(&s, guest_ranges))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r-xp 00000000 fd:00 123 /usr/bin/tinyvmm
Size:               1024 kB
Rss:                 600 kB
Pss:                 600 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0
Size:             131072 kB
Rss:                2048 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                  16 kB
";

    #[test]
    fn guest_mappings_are_counted_apart() {
        let r = split_resident(SMAPS, &[(0x7f00_0000_0000, 0x7f00_0800_0000)]);
        assert_eq!(r.guest, 2048 * 1024);
        assert_eq!(r.vmm, (600 + 16) * 1024);
        let none = split_resident(SMAPS, &[]);
        assert_eq!(none.guest, 0);
        assert_eq!(none.vmm, (600 + 2048 + 16) * 1024);
    }

    #[test]
    fn our_own_process_has_resident_memory_and_cpu_time() {
        let r = resident(&[]);
        assert!(r.vmm > 0);
        let t0 = process_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() > t0);
        let c = census();
        assert!(c.fds >= 3 && c.threads >= 1 && c.rss > 0, "{c}");
    }
}
