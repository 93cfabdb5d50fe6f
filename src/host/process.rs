//! This process's own cost, measured from inside: CPU time, resident
//! memory split into "guest RAM" and "everything else" (what the VMM adds),
//! and the fd/thread/RSS census `--repeat` prints.
//!
//! The process's resident total comes from /proc/self/smaps_rollup (parsed
//! by `super::procfs`); guest RAM's share is counted page by page with
//! mincore(2) over guest RAM's host ranges. Counting by mapping does not
//! work: the kernel merges adjacent anonymous mappings into one VMA, so with
//! RAM split around the MMIO gap (above 3 GiB) the two guest mappings show
//! up in smaps as one range that is inside neither.

use std::time::Duration;

use super::procfs;

/// Resident memory of this process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resident {
    /// Guest RAM pages the guest (or the loader) has touched.
    pub guest: u64,
    /// Everything else: code, heap, stacks, libraries: the VMM's overhead.
    pub vmm: u64,
    /// The part of `vmm` no file backs (heap, stacks, anonymous mappings
    /// other than guest RAM): what each further instance adds. The rest
    /// of `vmm` is the executable's and libraries' pages, which are the
    /// host's page cache and shared by every process that maps them.
    pub vmm_private: u64,
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

/// Page size for mincore's one-byte-per-page vector.
const PAGE: u64 = 4096;
/// Pages asked about per mincore call (a 4 KiB vector: 16 MiB of memory).
const MINCORE_CHUNK_PAGES: usize = 4096;

/// Bytes of `[start, end)` of this process's address space that are
/// resident in RAM. A range that is not mapped counts as not resident.
pub fn resident_bytes(start: u64, end: u64) -> u64 {
    let mut vec = [0u8; MINCORE_CHUNK_PAGES];
    let mut resident = 0u64;
    let mut addr = start & !(PAGE - 1);
    while addr < end {
        let pages = ((end - addr).div_ceil(PAGE) as usize).min(MINCORE_CHUNK_PAGES);
        // SAFETY: mincore reads only page-table state of our own address
        // space and writes one byte per page into `vec`, which holds
        // MINCORE_CHUNK_PAGES >= `pages` bytes; `addr` is page-aligned. An
        // unmapped range is an ENOMEM error, not undefined behaviour.
        let rc = unsafe {
            libc::mincore(
                addr as *mut libc::c_void,
                pages * PAGE as usize,
                vec.as_mut_ptr(),
            )
        };
        if rc == 0 {
            resident += vec[..pages].iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE;
        }
        addr += pages as u64 * PAGE;
    }
    resident
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

/// /proc/self/smaps_rollup, opened while files may still be opened and
/// read again at exit, when the run-time sandbox allows no `open`.
pub struct RollupReader(std::fs::File);

impl RollupReader {
    /// Opens /proc/self/smaps_rollup (`None` if the kernel has none).
    pub fn open() -> Option<RollupReader> {
        std::fs::File::open("/proc/self/smaps_rollup")
            .ok()
            .map(RollupReader)
    }

    /// This process's resident memory, split into guest RAM (the host
    /// ranges `[start, end)` backing it) and the rest, read through the
    /// open file (only read and lseek: the kernel regenerates the text when
    /// it is read from offset 0).
    pub fn resident(&mut self, guest_ranges: &[(u64, u64)]) -> Resident {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::with_capacity(4096);
        let mut buf = [0u8; 1024];
        if self.0.seek(SeekFrom::Start(0)).is_ok() {
            while let Ok(n @ 1..) = self.0.read(&mut buf) {
                text.extend_from_slice(&buf[..n]);
            }
        }
        let rollup = String::from_utf8_lossy(&text);
        let total = procfs::parse_smaps_rollup(&rollup).map_or(0, |m| m.rss_kib * 1024);
        let anonymous = procfs::rollup_anonymous_kib(&rollup).map_or(0, |k| k * 1024);
        let guest = guest_ranges
            .iter()
            .map(|&(start, end)| resident_bytes(start, end))
            .sum();
        let vmm = total.saturating_sub(guest);
        Resident {
            guest,
            vmm,
            // Guest RAM is anonymous except on a restore, where it is a
            // private file mapping: then only its copied-on-write pages
            // are anonymous, and the subtraction saturates at the truth's
            // lower side (never above `vmm`).
            vmm_private: anonymous.saturating_sub(guest).min(vmm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An anonymous private mapping of `len` bytes, unmapped on drop.
    struct Anon(*mut u8, usize);
    impl Anon {
        fn new(len: usize) -> Anon {
            // SAFETY: a fresh anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            Anon(p.cast(), len)
        }
        fn range(&self) -> (u64, u64) {
            (self.0 as u64, self.0 as u64 + self.1 as u64)
        }
        fn touch(&self, bytes: usize) {
            for off in (0..bytes).step_by(4096) {
                // SAFETY: `off` < bytes <= len, inside our own mapping.
                unsafe { self.0.add(off).write_volatile(1) };
            }
        }
    }
    impl Drop for Anon {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping `new` made.
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    #[test]
    fn guest_pages_are_counted_by_residency_not_by_mapping() {
        // Two adjacent "guest" ranges, as RAM split around the MMIO gap is:
        // the kernel may merge them into one VMA; the split must not care.
        let low = Anon::new(32 << 20);
        let high = Anon::new(16 << 20);
        low.touch(3 << 20);
        high.touch(1 << 20);
        let mut reader = RollupReader::open().unwrap();
        let r = reader.resident(&[low.range(), high.range()]);
        let again = reader.resident(&[low.range(), high.range()]);
        assert_eq!(
            again.guest, r.guest,
            "a second read of the open file agrees"
        );
        assert!(
            (4 << 20..(4 << 20) + (256 << 10)).contains(&r.guest),
            "guest {}",
            r.guest
        );
        assert!(r.vmm > 0, "the test binary itself is resident");
        assert_eq!(
            resident_bytes(low.range().0, low.range().0 + (3 << 20)),
            3 << 20
        );
        let gone = low.range();
        drop(low);
        assert_eq!(
            resident_bytes(gone.0, gone.1),
            0,
            "an unmapped range counts 0"
        );
    }

    #[test]
    fn our_own_process_has_resident_memory_and_cpu_time() {
        let r = RollupReader::open().unwrap().resident(&[]);
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
