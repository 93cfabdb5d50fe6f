//! The debug-exit register: the guest writes its status and the VM ends.
//!
//! At I/O port 0xf4 (where QEMU's `isa-debug-exit` sits) and at MMIO
//! 0xC000_1000 (Linux user space without `/dev/port` reaches it with
//! `devmem`). Unlike QEMU, which exits with `(v << 1) | 1`, a write of `v`
//! makes tinyvmm exit with `v` itself, so 0 means success.

use std::sync::Arc;

use super::bus::BusDevice;
use crate::exit::{ExitSignal, VmEnd};

/// The debug-exit device, the same on both buses.
pub struct DebugExit(pub Arc<ExitSignal>);

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 || data.is_empty() {
            return;
        }
        let mut bytes = [0u8; 8];
        let n = data.len().min(8);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u64::from_le_bytes(bytes);
        self.0.request(VmEnd::GuestStatus(value.min(255) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_ends_the_vm_with_that_status() {
        let sig = Arc::new(ExitSignal::new().unwrap());
        let mut dev = DebugExit(sig.clone());
        dev.write(4, &[9]);
        assert_eq!(sig.reason(), None, "only offset 0 is the register");
        dev.write(0, &[7, 0, 0, 0]);
        assert_eq!(sig.reason(), Some(VmEnd::GuestStatus(7)));
        let sig = Arc::new(ExitSignal::new().unwrap());
        DebugExit(sig.clone()).write(0, &0x1_0000u32.to_le_bytes());
        assert_eq!(sig.reason(), Some(VmEnd::GuestStatus(255)));
        assert_eq!(sig.reason().unwrap().code(), 119);
    }
}
