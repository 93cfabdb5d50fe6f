//! The i8042 keyboard controller, reduced to what a VMM needs: command 0xfe
//! on port 0x64 pulses the CPU reset line, which Linux uses for `reboot=k`.
//! We turn that reset into a clean VM exit (vm-superio's `I8042Device`).

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use super::bus::BusDevice;
use crate::exit::{ExitSignal, VmEnd};

/// The reset line: ends the VM.
pub struct ResetLine(pub Arc<ExitSignal>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(VmEnd::Reset);
        Ok(())
    }
}

/// The controller on ports 0x60-0x64 (offset 4 is the command port).
pub struct I8042(pub I8042Device<ResetLine>);

impl I8042 {
    /// A controller whose reset ends the VM through `exit`.
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        I8042(I8042Device::new(ResetLine(exit)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = self.0.read(offset as u8);
        data.fill(0);
        data[0] = value;
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&value) = data.first() {
            let Ok(()) = self.0.write(offset as u8, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_ends_the_vm_cleanly() {
        let sig = Arc::new(ExitSignal::new().unwrap());
        let mut dev = I8042::new(sig.clone());
        dev.write(0, &[0xfe]);
        dev.write(4, &[0xaa]);
        assert_eq!(sig.reason(), None);
        dev.write(4, &[0xfe]);
        assert_eq!(sig.reason(), Some(VmEnd::Reset));
    }
}
