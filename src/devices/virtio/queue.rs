//! Taking descriptor chains off a virtqueue without trusting the driver
//! (virtio 1.2, 2.7: split virtqueues).
//!
//! A chain is a linked list of descriptors in guest memory, each naming a
//! buffer (address, length) and whether the device reads or writes it
//! (2.7.5). A hostile driver can make the list loop, point `next` past the
//! table, nest indirect tables (2.7.5.3.1 forbids it), name buffers outside
//! RAM, make the total length overflow 2^32 (2.7.5.2 forbids it), or mark a
//! buffer the wrong way. `virtio-queue`'s iterator already stops on loops
//! (it allows at most queue-size steps), bad indices, bad indirect tables and
//! overflow, but it stops silently; `buffers` tells such a cut-short chain
//! from a complete one, and checks each buffer against guest RAM and the
//! expected direction before the device touches any of them.

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// A descriptor chain as `virtio-queue` hands it out.
pub type Chain<'m> = DescriptorChain<&'m GuestMemoryMmap>;

/// Which way the device moves data through a chain's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The device reads the buffers (device-readable, e.g. a transmitq).
    DeviceReads,
    /// The device writes the buffers (device-writable, `VRING_DESC_F_WRITE`,
    /// e.g. a receiveq).
    DeviceWrites,
}

/// What is wrong with a chain. The device completes such a chain without
/// using its buffers (used length 0) and carries on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// No descriptor at all: the head index is past the table, or the head
    /// is an indirect descriptor whose table is unusable.
    #[error("the chain has no usable descriptor")]
    Empty,
    /// The chain stopped before a descriptor without NEXT: it loops, a
    /// `next` is past the table, an indirect table is nested or bad, or the
    /// total length passes 2^32.
    #[error(
        "the chain is cut short (loop, bad next index, bad or nested indirect table, or over 4 GiB)"
    )]
    Truncated,
    /// More descriptors than the queue size (2.7.5.3.1: a driver MUST NOT).
    #[error("the chain has more than {0} descriptors")]
    TooLong(u16),
    /// A buffer marked for the other direction.
    #[error("a buffer is marked for the wrong direction (expected {0:?})")]
    WrongDirection(Direction),
    /// A buffer not entirely in guest RAM (or whose end overflows).
    #[error("buffer {addr:#x}+{len:#x} is not in guest RAM")]
    OutOfRange {
        /// Guest-physical start.
        addr: u64,
        /// Length in bytes.
        len: u32,
    },
}

/// One checked buffer: `len` bytes of guest RAM at `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// The next chain the driver made available, or `None` if there is none.
/// An error means the ring itself is broken (the available index moved by
/// more than the queue size, 2.7.6, or the ring cannot be read): the device
/// then needs a reset, since there is no chain to complete.
pub fn pop<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
) -> Result<Option<Chain<'m>>, virtio_queue::Error> {
    Ok(queue.iter(mem)?.next())
}

/// Walks `chain` and returns its buffers, each checked to lie in guest RAM
/// and to go in `direction`; at most `max_descs` descriptors are read, so the
/// work is bounded whatever the driver wrote. Zero-length buffers are
/// skipped.
pub fn buffers(
    chain: Chain<'_>,
    direction: Direction,
    max_descs: u16,
    mem: &GuestMemoryMmap,
) -> Result<Vec<Segment>, ChainError> {
    let mut segments = Vec::new();
    let mut seen: u16 = 0;
    let mut last_had_next = false;
    for desc in chain {
        if seen == max_descs {
            return Err(ChainError::TooLong(max_descs));
        }
        seen += 1;
        last_had_next = desc.has_next();
        let writes = desc.is_write_only();
        if writes != (direction == Direction::DeviceWrites) {
            return Err(ChainError::WrongDirection(direction));
        }
        if desc.len() == 0 {
            continue;
        }
        // check_range fails for a range that leaves RAM, crosses into the
        // MMIO gap or wraps around the address space.
        if !GuestMemoryBackend::check_range(mem, desc.addr(), desc.len() as usize) {
            return Err(ChainError::OutOfRange {
                addr: desc.addr().0,
                len: desc.len(),
            });
        }
        segments.push(Segment {
            addr: desc.addr(),
            len: desc.len(),
        });
    }
    match (seen, last_had_next) {
        (0, _) => Err(ChainError::Empty),
        (_, true) => Err(ChainError::Truncated),
        _ => Ok(segments),
    }
}

/// Walks `chain` as a request whose device-readable buffers come first and
/// device-writable ones after (2.7.4.2: a driver MUST place them so), as a
/// block request does: returns (readable, writable), each checked to lie in
/// guest RAM; at most `max_descs` descriptors are read. A readable buffer
/// after a writable one is a `WrongDirection` error. Zero-length buffers
/// are skipped.
pub fn request_buffers(
    chain: Chain<'_>,
    max_descs: u16,
    mem: &GuestMemoryMmap,
) -> Result<(Vec<Segment>, Vec<Segment>), ChainError> {
    let (mut readable, mut writable) = (Vec::new(), Vec::new());
    let mut seen: u16 = 0;
    let mut last_had_next = false;
    for desc in chain {
        if seen == max_descs {
            return Err(ChainError::TooLong(max_descs));
        }
        seen += 1;
        last_had_next = desc.has_next();
        if !desc.is_write_only() && !writable.is_empty() {
            return Err(ChainError::WrongDirection(Direction::DeviceWrites));
        }
        if desc.len() == 0 {
            continue;
        }
        if !GuestMemoryBackend::check_range(mem, desc.addr(), desc.len() as usize) {
            return Err(ChainError::OutOfRange {
                addr: desc.addr().0,
                len: desc.len(),
            });
        }
        let seg = Segment {
            addr: desc.addr(),
            len: desc.len(),
        };
        if desc.is_write_only() {
            writable.push(seg);
        } else {
            readable.push(seg);
        }
    }
    match (seen, last_had_next) {
        (0, _) => Err(ChainError::Empty),
        (_, true) => Err(ChainError::Truncated),
        _ => Ok((readable, writable)),
    }
}

/// Total length of checked segments (at most 2^32 - 1: the iterator stops
/// a chain whose total would overflow).
pub fn total_len(segments: &[Segment]) -> u32 {
    segments
        .iter()
        .fold(0u32, |sum, s| sum.saturating_add(s.len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{RawDescriptor, split::Descriptor};
    use virtio_queue::mock::MockSplitQueue;

    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn walk(descs: &[(u64, u32, u16, u16)], dir: Direction) -> Result<Vec<Segment>, ChainError> {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .map(|&(a, l, f, n)| RawDescriptor::from(Descriptor::new(a, l, f, n)))
            .collect();
        vq.add_desc_chains(&raw, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let chain = pop(&mut q, &m).unwrap().unwrap();
        buffers(chain, dir, 16, &m)
    }

    #[test]
    fn a_good_chain_yields_its_buffers_in_order() {
        let segs = walk(
            &[
                (0x8000, 10, NEXT, 1),
                (0x9000, 0, NEXT, 2),
                (0xa000, 20, 0, 0),
            ],
            Direction::DeviceReads,
        )
        .unwrap();
        assert_eq!(segs.len(), 2, "the empty buffer is skipped");
        assert_eq!(total_len(&segs), 30);
    }

    #[test]
    fn bad_chains_are_named() {
        let r = Direction::DeviceReads;
        assert_eq!(
            walk(&[(0x8000, 8, WRITE, 0)], r),
            Err(ChainError::WrongDirection(r))
        );
        assert_eq!(
            walk(&[(0x8000, 8, 0, 0)], Direction::DeviceWrites),
            Err(ChainError::WrongDirection(Direction::DeviceWrites))
        );
        assert!(matches!(
            walk(&[(0xf_fff0, 0x20, 0, 0)], r),
            Err(ChainError::OutOfRange { .. })
        ));
        assert!(matches!(
            walk(&[(u64::MAX - 4, 8, 0, 0)], r),
            Err(ChainError::OutOfRange { .. })
        ));
        // 0 -> 1 -> 0 -> ...: the iterator gives up after 16 steps.
        assert_eq!(
            walk(&[(0x8000, 8, NEXT, 1), (0x9000, 8, NEXT, 0)], r),
            Err(ChainError::Truncated)
        );
        assert_eq!(
            walk(&[(0x8000, 8, NEXT, 99)], r),
            Err(ChainError::Truncated)
        );
    }
}
