//! Hands out what each device needs from the guest's address and interrupt
//! space: MMIO windows and GSIs (interrupt lines), from documented ranges,
//! with no overlap, and a clean error when a range is used up.
//!
//! Ranges (see `crate::arch::x86_64::layout`):
//! - MMIO windows: `[VIRTIO_MMIO_START, VIRTIO_MMIO_END)`, inside the
//!   32-bit MMIO gap, above the boot-marker and debug-exit pages.
//! - GSIs: `VIRTIO_FIRST_IRQ..=IRQ_MAX`, the IOAPIC pins the legacy devices
//!   (timer 0, COM1 4) do not use.

use crate::arch::x86_64::layout::{IRQ_MAX, VIRTIO_FIRST_IRQ, VIRTIO_MMIO_END, VIRTIO_MMIO_START};

/// A range that ran out, or a request that cannot be met.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    /// No room left for a window of this size.
    #[error(
        "no MMIO space left for a {size:#x}-byte window (device windows live in \
         {VIRTIO_MMIO_START:#x}-{VIRTIO_MMIO_END:#x})"
    )]
    MmioExhausted {
        /// The window size asked for.
        size: u64,
    },
    /// A window must be a non-zero power of two in size (and is aligned to it).
    #[error("an MMIO window of {0:#x} bytes is not a non-zero power of two")]
    BadSize(u64),
    /// Every GSI of the range is taken.
    #[error("no interrupt line left for another device (GSIs {VIRTIO_FIRST_IRQ}-{IRQ_MAX})")]
    GsiExhausted,
}

/// Bump allocators over the MMIO-window range and the GSI range.
#[derive(Debug)]
pub struct ResourceAllocator {
    next_mmio: u64,
    mmio_end: u64,
    next_gsi: u32,
    last_gsi: u32,
}

impl Default for ResourceAllocator {
    fn default() -> Self {
        ResourceAllocator::new(
            VIRTIO_MMIO_START,
            VIRTIO_MMIO_END,
            VIRTIO_FIRST_IRQ,
            IRQ_MAX,
        )
    }
}

impl ResourceAllocator {
    /// An allocator over `[mmio_start, mmio_end)` and GSIs `first_gsi..=last_gsi`.
    pub fn new(mmio_start: u64, mmio_end: u64, first_gsi: u32, last_gsi: u32) -> Self {
        ResourceAllocator {
            next_mmio: mmio_start,
            mmio_end,
            next_gsi: first_gsi,
            last_gsi,
        }
    }

    /// A window of `size` bytes (a power of two), aligned to its size.
    pub fn allocate_mmio(&mut self, size: u64) -> Result<u64, AllocError> {
        if size == 0 || !size.is_power_of_two() {
            return Err(AllocError::BadSize(size));
        }
        let base = self
            .next_mmio
            .checked_next_multiple_of(size)
            .ok_or(AllocError::MmioExhausted { size })?;
        let end = base
            .checked_add(size)
            .filter(|&end| end <= self.mmio_end)
            .ok_or(AllocError::MmioExhausted { size })?;
        self.next_mmio = end;
        Ok(base)
    }

    /// The next free GSI.
    pub fn allocate_gsi(&mut self) -> Result<u32, AllocError> {
        if self.next_gsi > self.last_gsi {
            return Err(AllocError::GsiExhausted);
        }
        self.next_gsi += 1;
        Ok(self.next_gsi - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_disjoint_and_in_range() {
        let mut a = ResourceAllocator::default();
        let mut got = Vec::new();
        for size in [0x1000, 0x1000, 0x4000, 0x1000, 0x2000] {
            let base = a.allocate_mmio(size).unwrap();
            assert_eq!(base % size, 0, "{base:#x} not aligned to {size:#x}");
            assert!(base >= VIRTIO_MMIO_START && base + size <= VIRTIO_MMIO_END);
            got.push((base, base + size));
        }
        for (i, x) in got.iter().enumerate() {
            for y in &got[i + 1..] {
                assert!(x.1 <= y.0 || y.1 <= x.0, "{x:x?} overlaps {y:x?}");
            }
        }
        assert_eq!(got[0].0, VIRTIO_MMIO_START);
    }

    #[test]
    fn mmio_exhaustion_is_an_error_not_an_overlap() {
        let mut a = ResourceAllocator::new(0x1_0000, 0x1_3000, 5, 6);
        assert_eq!(a.allocate_mmio(0x1000), Ok(0x1_0000));
        assert_eq!(a.allocate_mmio(0x1000), Ok(0x1_1000));
        assert_eq!(
            a.allocate_mmio(0x2000),
            Err(AllocError::MmioExhausted { size: 0x2000 })
        );
        assert_eq!(a.allocate_mmio(0x1000), Ok(0x1_2000));
        assert_eq!(
            a.allocate_mmio(0x1000),
            Err(AllocError::MmioExhausted { size: 0x1000 })
        );
        assert_eq!(a.allocate_mmio(0), Err(AllocError::BadSize(0)));
        assert_eq!(a.allocate_mmio(0x3000), Err(AllocError::BadSize(0x3000)));
        let mut top = ResourceAllocator::new(u64::MAX - 0xfff, u64::MAX, 5, 6);
        assert!(top.allocate_mmio(0x2000).is_err(), "wrapping is exhaustion");
    }

    #[test]
    fn gsis_are_handed_out_once_until_exhausted() {
        let mut a = ResourceAllocator::default();
        let all: Vec<u32> = std::iter::from_fn(|| a.allocate_gsi().ok()).collect();
        assert_eq!(all, (VIRTIO_FIRST_IRQ..=IRQ_MAX).collect::<Vec<_>>());
        assert_eq!(a.allocate_gsi(), Err(AllocError::GsiExhausted));
    }
}
