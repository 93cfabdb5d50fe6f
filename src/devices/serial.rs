//! The 8250/16550 UART at 0x3f8 (COM1, Linux's ttyS0), from vm-superio.
//!
//! Each guest access to a UART register is one VM exit. Output goes to the
//! shared output path (dropped and counted if stdout cannot keep up: a UART
//! has no flow control); input from stdin fills the 64-byte receive FIFO and
//! no more (the bound CVE-2020-27173 was about).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::output::OutputHandle;

/// An interrupt line backed by an eventfd registered as a KVM irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Serial counters, and a wake-up for stdin when the guest drains the FIFO.
pub struct SerialCounters {
    /// Bytes the guest wrote to THR.
    pub out_bytes: AtomicU64,
    /// Fires when the receive FIFO becomes empty.
    pub fifo_drained: EventFd,
}

impl SerialEvents for SerialCounters {
    fn buffer_read(&self) {}
    fn out_byte(&self) {
        self.out_bytes.fetch_add(1, Ordering::Relaxed);
    }
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.fifo_drained.write(1);
    }
}

/// vm-superio's UART with our interrupt, counters and output.
pub type Uart = Serial<IrqTrigger, Arc<SerialCounters>, OutputHandle>;

/// The UART as a bus device (offsets 0-7 are its registers).
pub struct SerialDevice(pub Uart);

impl SerialDevice {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: EventFd, out: OutputHandle) -> std::io::Result<(Self, Arc<SerialCounters>)> {
        let counters = Arc::new(SerialCounters {
            out_bytes: AtomicU64::new(0),
            fifo_drained: EventFd::new(
                vmm_sys_util::eventfd::EFD_NONBLOCK | vmm_sys_util::eventfd::EFD_CLOEXEC,
            )?,
        });
        let uart = Serial::with_events(IrqTrigger(irq), counters.clone(), out);
        Ok((SerialDevice(uart), counters))
    }

    /// Puts host input into the receive FIFO; returns how much fit.
    pub fn enqueue_input(&mut self, data: &[u8]) -> usize {
        let room = self.0.fifo_capacity().min(data.len());
        if room == 0 {
            return 0;
        }
        self.0.enqueue_raw_bytes(&data[..room]).unwrap_or(0)
    }

    /// Replaces the UART's registers and FIFO with a saved state (a
    /// restore), keeping its interrupt line, counters and output.
    pub fn restore_state(&mut self, state: &vm_superio::serial::SerialState) -> Result<(), String> {
        let irq = self
            .0
            .interrupt_evt()
            .0
            .try_clone()
            .map_err(|e| e.to_string())?;
        let events = self.0.events().clone();
        let out = self.0.writer().clone();
        self.0 = Serial::from_state(state, IrqTrigger(irq), events, out)
            .map_err(|e| format!("8250 state: {e:?}"))?;
        Ok(())
    }

    /// Free room in the receive FIFO.
    pub fn input_room(&self) -> usize {
        self.0.fifo_capacity()
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(off), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.0.read(off);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(off), Some(&value)) = (u8::try_from(offset), data.first()) {
            // Errors are an irqfd write failing; the byte was already counted.
            let _ = self.0.write(off, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::output::GuestOutput;
    use std::time::Duration;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn thr_writes_reach_the_output_and_raise_the_irq_when_enabled() {
        let out = GuestOutput::new(Box::new(std::io::sink()), 1024).unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let (mut dev, counters) =
            SerialDevice::new(irq.try_clone().unwrap(), out.handle()).unwrap();
        dev.write(1, &[0x02]); // IER: THR-empty interrupt
        for b in b"hi\n" {
            dev.write(0, &[*b]);
        }
        assert_eq!(counters.out_bytes.load(Ordering::Relaxed), 3);
        assert!(irq.read().unwrap() >= 1);
        assert_eq!(out.finish(Duration::from_secs(5)).written, 3);
    }

    #[test]
    fn input_fifo_holds_at_most_64_bytes() {
        let out = GuestOutput::new(Box::new(std::io::sink()), 1024).unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let (mut dev, counters) = SerialDevice::new(irq, out.handle()).unwrap();
        assert_eq!(dev.enqueue_input(&[b'a'; 1000]), 64);
        assert_eq!(dev.enqueue_input(b"more"), 0);
        assert_eq!(dev.input_room(), 0);
        let mut b = [0u8];
        for _ in 0..64 {
            dev.read(0, &mut b);
            assert_eq!(b[0], b'a');
        }
        assert_eq!(dev.input_room(), 64);
        assert!(counters.fifo_drained.read().unwrap() >= 1);
    }
}
