//! The port-I/O and MMIO buses: which device answers which address.
//!
//! A vCPU exit names an address; the bus finds the device whose range holds
//! it and passes the offset into that range. Nothing there: reads return
//! all-ones (as on a PC with nothing on the bus), writes are dropped, and the
//! caller counts the access.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on a bus. `offset` is relative to the start of its range.
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else drives it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors inserting a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already taken.
    #[error("bus range {0:#x}+{1:#x} overlaps another device")]
    Overlap(u64, u64),
    /// Zero-length or wrapping range.
    #[error("bus range {0:#x}+{1:#x} is empty or wraps")]
    BadRange(u64, u64),
}

/// The two buses a vCPU exit can land on.
#[derive(Default)]
pub struct IoBuses {
    /// Port I/O (`in`/`out`).
    pub pio: Bus,
    /// Memory-mapped I/O (accesses to guest-physical addresses with no RAM).
    pub mmio: Bus,
}

/// An address space of non-overlapping device ranges.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, (u64, SharedDevice)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::BadRange(base, len))?;
        let before = self.ranges.range(..end).next_back();
        if let Some((&b, &(l, _))) = before {
            if b + l > base {
                return Err(BusError::Overlap(base, len));
            }
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Option<(u64, &SharedDevice)> {
        let (&base, (range_len, dev)) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(len as u64)? <= *range_len).then_some((offset, dev))
    }

    /// Reads from the device at `addr`; `false` (and all-ones) if there is none.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((offset, dev)) => {
                crate::sync::lock(dev).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes to the device at `addr`; `false` if there is none.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((offset, dev)) => {
                crate::sync::lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_with_offsets() {
        let dev = Arc::new(Mutex::new(Recorder(vec![])));
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        assert!(bus.write(0x3f9, &[7]));
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b, [5]);
        assert_eq!(dev.lock().unwrap().0, vec![(1, vec![7])]);
    }

    #[test]
    fn unknown_addresses_read_all_ones_and_report_a_miss() {
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, Arc::new(Mutex::new(Recorder(vec![]))))
            .unwrap();
        let mut b = [0u8; 4];
        assert!(!bus.read(0x3f7, &mut b));
        assert_eq!(b, [0xff; 4]);
        assert!(!bus.write(0x400, &[1]));
        // An access that starts inside but runs past the range is a miss too.
        assert!(!bus.read(0x3fe, &mut b));
        assert!(!bus.read(u64::MAX, &mut b));
    }

    #[test]
    fn overlapping_and_empty_ranges_are_refused() {
        let d = || -> SharedDevice { Arc::new(Mutex::new(Recorder(vec![]))) };
        let mut bus = Bus::new();
        bus.insert(0x100, 0x10, d()).unwrap();
        assert_eq!(bus.insert(0x10f, 1, d()), Err(BusError::Overlap(0x10f, 1)));
        assert_eq!(
            bus.insert(0xf8, 0x10, d()),
            Err(BusError::Overlap(0xf8, 0x10))
        );
        assert!(bus.insert(0x110, 1, d()).is_ok());
        assert!(bus.insert(0xf0, 0x10, d()).is_ok());
        assert_eq!(bus.insert(5, 0, d()), Err(BusError::BadRange(5, 0)));
        assert_eq!(
            bus.insert(u64::MAX, 2, d()),
            Err(BusError::BadRange(u64::MAX, 2))
        );
    }
}
