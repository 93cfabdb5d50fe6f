//! The virtio entropy device (virtio 1.2, 5.4; device id 4), Firecracker's
//! entropy device model: one request queue on which the driver posts empty
//! device-writable buffers, which the device fills with random bytes from
//! the host's getrandom(2) and hands back with the number of bytes written.
//! No feature bits beyond VIRTIO_F_VERSION_1, no configuration space.
//!
//! Linux drives it as `virtio_rng` under hw_random (`/dev/hwrng`) and
//! feeds what it reads to its entropy pool, so a guest whose CPU hides
//! RDRAND (the `minimal` CPU template) need not wait for entropy.
//!
//! What a hostile driver can do, and what happens:
//! - a chain with a device-readable buffer, a buffer outside RAM, a loop,
//!   a `next` past the table, too many descriptors: completed with used
//!   length 0 and counted (`bad_chains`); nothing is written;
//! - zero-length buffers: skipped; a chain of nothing else is completed
//!   with used length 0;
//! - huge buffers: at most `MAX_REQUEST_BYTES` are filled (the used length
//!   says how many), the rest is left as it was and the request counted
//!   (`capped`);
//! - many requests at once: one round of processing fills at most
//!   `ROUND_BUDGET` bytes, then the device yields to the event loop and
//!   resumes through its own eventfd (`budget_stops`), so other devices
//!   and the exit signal keep being served.
//!
//! Bytes move from getrandom(2) into a fixed 4 KiB scratch buffer and from
//! there into the guest's pages: no buffer grows with the guest's request.
//! There is no rate limit (Firecracker's is optional and off by default):
//! the device costs host CPU only for what the guest asks, within the caps
//! above. If the host's getrandom fails, the request gets the bytes filled
//! so far and the failure is counted (`host_errors`).

use std::io;

use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::queue::{self, Direction, Segment};
use super::{DeviceError, Queue, UsedQueues, VIRTIO_F_VERSION_1, VirtioDevice};
use virtio_queue::QueueT;

/// The virtio device id of an entropy source (5, "Device Types").
pub const DEVICE_ID: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
/// The one request queue's largest size.
pub const QUEUE_SIZES: [u16; 1] = [256];
/// Most bytes one request gets, however long its buffers are.
pub const MAX_REQUEST_BYTES: u32 = 64 << 10;
/// Most bytes one round of processing fills before yielding to the loop.
pub const ROUND_BUDGET: u64 = 1 << 20;
/// Bytes drawn from the host per getrandom(2) call.
const CHUNK: usize = 4096;

/// Where random bytes come from: the host's getrandom(2), or (in tests) a
/// source that fails.
pub trait EntropySource: Send {
    /// Fills `buf` entirely, or fails.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

/// The host kernel's CSPRNG through getrandom(2) (the `getrandom` crate;
/// the syscall is allowed in every seccomp stage).
#[derive(Debug, Default)]
pub struct HostRandom;

impl EntropySource for HostRandom {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        getrandom::fill(buf).map_err(|e| io::Error::other(e.to_string()))
    }
}

/// What the device has done, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RngStats {
    /// Chains completed, good or bad.
    pub requests: u64,
    /// Random bytes written into guest buffers.
    pub bytes: u64,
    /// Requests longer than `MAX_REQUEST_BYTES`, filled only up to it.
    pub capped: u64,
    /// Chains refused (readable buffer, outside RAM, loop, too long...):
    /// completed with nothing written.
    pub bad_chains: u64,
    /// getrandom(2) failures (the request got what was filled before).
    pub host_errors: u64,
    /// Rounds that stopped on `ROUND_BUDGET` with requests left.
    pub budget_stops: u64,
}

/// A virtio entropy device.
pub struct Rng {
    source: Box<dyn EntropySource>,
    stats: RngStats,
    resume: EventFd,
}

impl Rng {
    /// A device drawing from the host's getrandom(2).
    pub fn new() -> io::Result<Rng> {
        Rng::with_source(Box::new(HostRandom))
    }

    /// A device drawing from `source`.
    pub fn with_source(source: Box<dyn EntropySource>) -> io::Result<Rng> {
        Ok(Rng {
            source,
            stats: RngStats::default(),
            resume: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        })
    }

    /// Fires when a round stopped on its budget with requests left.
    pub fn resume_event(&self) -> &EventFd {
        &self.resume
    }

    /// Counters so far.
    pub fn stats(&self) -> RngStats {
        self.stats
    }

    /// Fills the checked, device-writable `segments` front to back, at most
    /// `MAX_REQUEST_BYTES` in all; returns the bytes written.
    fn fill(&mut self, mem: &GuestMemoryMmap, segments: &[Segment]) -> u32 {
        let total = queue::total_len(segments);
        if total > MAX_REQUEST_BYTES {
            self.stats.capped += 1;
        }
        let mut left = total.min(MAX_REQUEST_BYTES);
        let mut written = 0u32;
        let mut scratch = [0u8; CHUNK];
        for seg in segments {
            let mut offset = 0u32;
            while offset < seg.len && left > 0 {
                let n = (seg.len - offset).min(left).min(CHUNK as u32);
                let buf = &mut scratch[..n as usize];
                if self.source.fill(buf).is_err() {
                    self.stats.host_errors += 1;
                    return written;
                }
                // In RAM: checked when the chain was taken, and RAM never moves.
                let at = seg.addr.unchecked_add(u64::from(offset));
                if mem.write_slice(buf, at).is_err() {
                    return written;
                }
                offset += n;
                left -= n;
                written += n;
            }
        }
        written
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // No configuration space (5.4.4).
        data.fill(0);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, _features: u64) {}
    fn reset(&mut self) {}
    fn process(
        &mut self,
        queues: &mut [Option<Queue>],
        mem: &GuestMemoryMmap,
    ) -> Result<UsedQueues, DeviceError> {
        let Some(Some(q)) = queues.get_mut(0) else {
            return Ok(0);
        };
        let qerr = |e| DeviceError::Queue(0, e);
        let mut used = false;
        let mut budget = ROUND_BUDGET;
        // At most one queue's worth of chains and ROUND_BUDGET bytes per
        // round: bounded work per wake-up.
        for _ in 0..q.size() {
            if budget < u64::from(MAX_REQUEST_BYTES) {
                if pending(q, mem).map_err(qerr)? {
                    // Come back through the loop for the rest.
                    self.stats.budget_stops += 1;
                    let _ = self.resume.write(1);
                }
                break;
            }
            let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
                break;
            };
            let head = chain.head_index();
            let written = match queue::buffers(chain, Direction::DeviceWrites, q.size(), mem) {
                Ok(segments) => self.fill(mem, &segments),
                Err(_) => {
                    self.stats.bad_chains += 1;
                    0
                }
            };
            self.stats.requests += 1;
            self.stats.bytes += u64::from(written);
            budget -= u64::from(written);
            q.add_used(mem, head, written).map_err(qerr)?;
            used = true;
        }
        Ok(if used { 1 } else { 0 })
    }
}

/// Whether the driver has made chains available that are not yet taken.
fn pending(q: &Queue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
    let avail = q.avail_idx(mem, std::sync::atomic::Ordering::Acquire)?;
    Ok(avail.0 != q.next_avail())
}

#[cfg(test)]
#[path = "rng_tests.rs"]
mod tests;
