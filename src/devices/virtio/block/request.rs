//! One virtio-blk request (virtio 1.2, 5.2.6): a 16-byte header the device
//! reads (`le32 type, le32 reserved, le64 sector`), data buffers, and a
//! status byte the device writes last. A hostile driver can get every part
//! wrong; each case ends in a status (or, with no writable byte to carry
//! one, a completion with nothing written), never a panic.

use vm_memory::{Address, Bytes, GuestMemoryMmap};

use super::disk::{DiskImage, ID_BYTES, SECTOR};
use crate::devices::virtio::queue::Segment;
use virtio_bindings::virtio_blk as blk;

/// Header bytes: type, reserved, sector.
pub const HEADER: u32 = 16;
/// Bytes per DISCARD / WRITE_ZEROES segment descriptor (5.2.6: le64 sector,
/// le32 num_sectors, le32 flags).
pub const RANGE: u32 = 16;
/// Most ranges one DISCARD or WRITE_ZEROES request may carry (config
/// `max_discard_seg` / `max_write_zeroes_seg`).
pub const MAX_RANGES: u32 = 16;

/// Request status (5.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// VIRTIO_BLK_S_OK.
    Ok = blk::VIRTIO_BLK_S_OK as isize,
    /// VIRTIO_BLK_S_IOERR: bad request or failed I/O.
    IoErr = blk::VIRTIO_BLK_S_IOERR as isize,
    /// VIRTIO_BLK_S_UNSUPP: a type this device does not do.
    Unsupp = blk::VIRTIO_BLK_S_UNSUPP as isize,
}

/// How a request went, for counters and the used length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The status written (`None`: there was no byte to write it to).
    pub status: Option<Status>,
    /// Bytes the device wrote into the driver's buffers, status included.
    pub written: u32,
    /// The request type, if the header could be read.
    pub kind: Option<u32>,
    /// Data bytes moved (read or written).
    pub bytes: u64,
}

/// Executes the request whose buffers are `readable` then `writable`.
pub fn execute(
    disk: &DiskImage,
    mem: &GuestMemoryMmap,
    readable: &[Segment],
    writable: &[Segment],
) -> Outcome {
    // The status is the last writable byte; without one nothing can be said.
    let Some((status_at, data_out)) = split_status(writable) else {
        return Outcome {
            status: None,
            written: 0,
            kind: None,
            bytes: 0,
        };
    };
    let finish = |status: Status, written: u32, kind: Option<u32>, bytes: u64| {
        let ok = mem.write_obj(status as u8, status_at).is_ok();
        Outcome {
            status: ok.then_some(status),
            written: written + u32::from(ok),
            kind,
            bytes,
        }
    };
    let Some((kind, sector, data_in)) = header(mem, readable) else {
        return finish(Status::IoErr, 0, None, 0);
    };
    let k = Some(kind);
    match kind {
        blk::VIRTIO_BLK_T_IN | blk::VIRTIO_BLK_T_OUT => {
            let write = kind == blk::VIRTIO_BLK_T_OUT;
            // OUT carries its data readable, IN writable; never both.
            let (data, other) = if write {
                (&data_in, &data_out)
            } else {
                (&data_out, &data_in)
            };
            if !other.is_empty() || (write && disk.readonly()) {
                return finish(Status::IoErr, 0, k, 0);
            }
            let len: u64 = data.iter().map(|s| u64::from(s.len)).sum();
            if len % SECTOR != 0 || !in_disk(disk, sector, len / SECTOR) {
                return finish(Status::IoErr, 0, k, 0);
            }
            match disk.transfer(mem, data, sector * SECTOR, write) {
                Ok(()) => finish(Status::Ok, if write { 0 } else { len as u32 }, k, len),
                Err(_) => finish(Status::IoErr, 0, k, 0),
            }
        }
        blk::VIRTIO_BLK_T_FLUSH => match disk.flush() {
            Ok(()) => finish(Status::Ok, 0, k, 0),
            Err(_) => finish(Status::IoErr, 0, k, 0),
        },
        blk::VIRTIO_BLK_T_GET_ID => {
            // Up to 20 bytes of ID into the first writable data buffer(s).
            let mut left = &disk.id()[..];
            let mut written = 0u32;
            for seg in &data_out {
                let n = left.len().min(seg.len as usize);
                if mem.write_slice(&left[..n], seg.addr).is_err() {
                    return finish(Status::IoErr, written, k, 0);
                }
                written += n as u32;
                left = &left[n..];
            }
            let status = if written as usize == ID_BYTES || (written > 0 && left.is_empty()) {
                Status::Ok
            } else {
                Status::IoErr
            };
            finish(status, written, k, 0)
        }
        blk::VIRTIO_BLK_T_DISCARD | blk::VIRTIO_BLK_T_WRITE_ZEROES => {
            if disk.readonly() || !data_out.is_empty() {
                return finish(Status::IoErr, 0, k, 0);
            }
            let zero = kind == blk::VIRTIO_BLK_T_WRITE_ZEROES;
            match ranges(mem, &data_in) {
                Some(ranges) if ranges.iter().all(|&(s, n, _)| in_disk(disk, s, n)) => {
                    let mut bytes = 0;
                    for (s, n, _) in ranges {
                        if disk.deallocate(s * SECTOR, n * SECTOR, zero).is_err() {
                            return finish(Status::IoErr, 0, k, bytes);
                        }
                        bytes += n * SECTOR;
                    }
                    finish(Status::Ok, 0, k, bytes)
                }
                _ => finish(Status::IoErr, 0, k, 0),
            }
        }
        _ => finish(Status::Unsupp, 0, k, 0),
    }
}

/// Whether sectors `[sector, sector + count)` are inside the disk (and the
/// sum does not overflow).
fn in_disk(disk: &DiskImage, sector: u64, count: u64) -> bool {
    sector
        .checked_add(count)
        .is_some_and(|end| end <= disk.sectors())
}

/// The last writable byte (the status) and the writable data before it.
fn split_status(writable: &[Segment]) -> Option<(vm_memory::GuestAddress, Vec<Segment>)> {
    let (last, before) = writable.split_last()?;
    let status_at = last.addr.unchecked_add(u64::from(last.len) - 1);
    let mut data = before.to_vec();
    if last.len > 1 {
        data.push(Segment {
            addr: last.addr,
            len: last.len - 1,
        });
    }
    Some((status_at, data))
}

/// The header from the first 16 readable bytes (which may span buffers),
/// and the readable data after it.
fn header(mem: &GuestMemoryMmap, readable: &[Segment]) -> Option<(u32, u64, Vec<Segment>)> {
    let mut head = [0u8; HEADER as usize];
    let mut got = 0usize;
    let mut rest = Vec::new();
    for seg in readable {
        let take = (HEADER as usize - got).min(seg.len as usize);
        if take > 0 {
            mem.read_slice(&mut head[got..got + take], seg.addr).ok()?;
            got += take;
        }
        if (take as u32) < seg.len {
            rest.push(Segment {
                addr: seg.addr.unchecked_add(take as u64),
                len: seg.len - take as u32,
            });
        }
    }
    if got < HEADER as usize {
        return None;
    }
    let kind = u32::from_le_bytes(head[0..4].try_into().ok()?);
    let sector = u64::from_le_bytes(head[8..16].try_into().ok()?);
    Some((kind, sector, rest))
}

/// The (sector, count, flags) ranges of a DISCARD or WRITE_ZEROES request:
/// whole 16-byte entries, 1 to MAX_RANGES of them.
fn ranges(mem: &GuestMemoryMmap, data: &[Segment]) -> Option<Vec<(u64, u64, u32)>> {
    let mut bytes = Vec::new();
    for seg in data {
        if bytes.len() + seg.len as usize > (RANGE * MAX_RANGES) as usize {
            return None;
        }
        let mut buf = vec![0u8; seg.len as usize];
        mem.read_slice(&mut buf, seg.addr).ok()?;
        bytes.extend_from_slice(&buf);
    }
    if bytes.is_empty() || bytes.len() % RANGE as usize != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(RANGE as usize)
            .map(|c| {
                let sector = u64::from_le_bytes(c[0..8].try_into().expect("8 bytes"));
                let count = u32::from_le_bytes(c[8..12].try_into().expect("4 bytes"));
                let flags = u32::from_le_bytes(c[12..16].try_into().expect("4 bytes"));
                (sector, u64::from(count), flags)
            })
            .collect(),
    )
}
