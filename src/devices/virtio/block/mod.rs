//! The virtio block device (virtio 1.2, 5.2; device id 2) on a host image
//! file: one request queue, capacity in 512-byte sectors, read-only disks
//! (VIRTIO_BLK_F_RO), FLUSH (fdatasync), GET_ID, and DISCARD and
//! WRITE_ZEROES as hole punching and zeroed ranges.
//!
//! - `disk.rs`: the image: open, lock, zero-copy I/O into guest pages.
//! - `request.rs`: one request, checked part by part.
//!
//! Requests run on the main thread's event loop, like every other
//! device's queues. A thread of the disk's own (Cloud Hypervisor's and
//! QEMU's iothread) was built and measured against it on our host and
//! gained nothing beyond noise while costing a thread per disk, a fourth
//! seccomp stage and a quiesce step for snapshots, so it was removed: the
//! numbers, and when to measure again, are in docs/disk.md.

pub mod disk;
pub mod request;

use virtio_bindings::virtio_blk as blk;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use self::disk::DiskImage;
use self::request::{MAX_RANGES, Outcome, Status};
use super::queue::{self, ChainError};
use super::{DeviceError, UsedQueues, VIRTIO_F_VERSION_1, VirtioDevice};

/// The virtio device id of a block device.
pub const DEVICE_ID: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
/// The one request queue's largest size.
pub const QUEUE_SIZES: [u16; 1] = [256];
/// Most data segments per request (config `seg_max`): the queue size less
/// the header and the status.
pub const SEG_MAX: u32 = QUEUE_SIZES[0] as u32 - 2;
/// Sectors one DISCARD or WRITE_ZEROES range may cover (config).
pub const MAX_DEALLOCATE_SECTORS: u32 = u32::MAX / 512;

/// What the device has done, for `--stats` and snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests completed, any status.
    pub requests: u64,
    /// Bytes read from the image into the guest.
    pub read_bytes: u64,
    /// Bytes written from the guest to the image.
    pub write_bytes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// Requests answered IOERR (bad or failed).
    pub io_errors: u64,
    /// Requests answered UNSUPP.
    pub unsupported: u64,
    /// Chains so broken no status could be written (completed empty).
    pub bad_chains: u64,
}

/// A virtio disk.
pub struct Block {
    disk: DiskImage,
    stats: BlockStats,
}

fn bit(b: u32) -> u64 {
    1 << b
}

impl Block {
    /// A device for the open image `disk`.
    pub fn new(disk: DiskImage) -> Block {
        Block {
            disk,
            stats: BlockStats::default(),
        }
    }

    /// The image behind the device.
    pub fn disk(&self) -> &DiskImage {
        &self.disk
    }

    /// Counters so far.
    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    /// The configuration space (5.2.4), through `write_zeroes_may_unmap`.
    fn config_bytes(&self) -> [u8; 60] {
        let mut c = [0u8; 60];
        let put32 =
            |c: &mut [u8; 60], at: usize, v: u32| c[at..at + 4].copy_from_slice(&v.to_le_bytes());
        c[0..8].copy_from_slice(&self.disk.sectors().to_le_bytes()); // capacity
        put32(&mut c, 12, SEG_MAX); // seg_max
        put32(&mut c, 20, disk::SECTOR as u32); // blk_size
        put32(&mut c, 36, MAX_DEALLOCATE_SECTORS); // max_discard_sectors
        put32(&mut c, 40, MAX_RANGES); // max_discard_seg
        put32(&mut c, 44, 1); // discard_sector_alignment
        put32(&mut c, 48, MAX_DEALLOCATE_SECTORS); // max_write_zeroes_sectors
        put32(&mut c, 52, MAX_RANGES); // max_write_zeroes_seg
        c[56] = 0; // write_zeroes_may_unmap: zeroes are written as zeroes
        c
    }

    fn count(&mut self, out: &Outcome) {
        self.stats.requests += 1;
        match (out.status, out.kind) {
            (None, _) => self.stats.bad_chains += 1,
            (Some(Status::IoErr), _) => self.stats.io_errors += 1,
            (Some(Status::Unsupp), _) => self.stats.unsupported += 1,
            (Some(Status::Ok), Some(blk::VIRTIO_BLK_T_IN)) => self.stats.read_bytes += out.bytes,
            (Some(Status::Ok), Some(blk::VIRTIO_BLK_T_OUT)) => self.stats.write_bytes += out.bytes,
            (Some(Status::Ok), Some(blk::VIRTIO_BLK_T_FLUSH)) => self.stats.flushes += 1,
            (Some(Status::Ok), _) => {}
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        let ro = if self.disk.readonly() {
            bit(blk::VIRTIO_BLK_F_RO)
        } else {
            0
        };
        let writes = if self.disk.readonly() {
            0
        } else {
            bit(blk::VIRTIO_BLK_F_DISCARD) | bit(blk::VIRTIO_BLK_F_WRITE_ZEROES)
        };
        VIRTIO_F_VERSION_1
            | ro
            | writes
            | bit(blk::VIRTIO_BLK_F_FLUSH)
            | bit(blk::VIRTIO_BLK_F_SEG_MAX)
            | bit(blk::VIRTIO_BLK_F_BLK_SIZE)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| config.get(a)).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // `writeback` needs VIRTIO_BLK_F_CONFIG_WCE, not offered: ignored.
    }
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
        // At most one queue's worth per round: bounded work per wake-up.
        for _ in 0..q.size() {
            let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
                break;
            };
            let head = chain.head_index();
            let out = match queue::request_buffers(chain, q.size(), mem) {
                Ok((readable, writable)) => request::execute(&self.disk, mem, &readable, &writable),
                Err(ChainError::Empty | ChainError::Truncated | ChainError::TooLong(_))
                | Err(ChainError::WrongDirection(_) | ChainError::OutOfRange { .. }) => Outcome {
                    status: None,
                    written: 0,
                    kind: None,
                    bytes: 0,
                },
            };
            self.count(&out);
            q.add_used(mem, head, out.written).map_err(qerr)?;
            used = true;
        }
        Ok(if used { 1 } else { 0 })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
