//! Shared by the virtio tests: guest memory, an output sink, and a virtio
//! console brought up through its MMIO registers the way a driver would.
#![allow(dead_code)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tinyvmm::devices::bus::BusDevice;
use tinyvmm::devices::output::GuestOutput;
use tinyvmm::devices::virtio::console::Console;
use tinyvmm::devices::virtio::mmio::MmioTransport;
use tinyvmm::devices::virtio::regs;
use tinyvmm::devices::virtio::status::{ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Guest RAM of the tests: 4 MiB at 0.
pub const MEM_SIZE: u64 = 4 << 20;
/// Queue size the tests' driver chooses.
pub const QSIZE: u16 = 16;
/// Where the receiveq's descriptor table and available ring are.
pub const RXQ: u64 = 0x1_0000;
/// Where the transmitq's descriptor table and available ring are.
pub const TXQ: u64 = 0x2_0000;
/// Used rings sit apart from the mock's (which overlaps its available
/// ring for sizes over 8).
pub const USED_OFFSET: u64 = 0x800;
/// Buffers live from here on.
pub const BUFFERS: u64 = 0x10_0000;

/// Guest memory for one test.
pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// A stdout that keeps what it gets.
#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An output path to a `Sink` with `capacity` bytes of buffer.
pub fn output(capacity: usize) -> (GuestOutput, Sink) {
    let sink = Sink::default();
    (
        GuestOutput::new(Box::new(sink.clone()), capacity).unwrap(),
        sink,
    )
}

/// A 32-bit register write, as a vCPU would pass it on.
pub fn w(t: &mut MmioTransport<Console>, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

/// A 32-bit register read.
pub fn r(t: &mut MmioTransport<Console>, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn w64(t: &mut MmioTransport<Console>, low: u64, v: u64) {
    w(t, low, v as u32);
    w(t, low + 4, (v >> 32) as u32);
}

/// An unwired console transport over `mem` writing to `out`.
pub fn console(mem: &GuestMemoryMmap, out: &GuestOutput) -> MmioTransport<Console> {
    let e = || EventFd::new(EFD_NONBLOCK).unwrap();
    let dev = Console::new(out.handle(), None).unwrap();
    MmioTransport::new(dev, mem.clone(), e(), vec![e(), e()], e())
}

/// A console the driver has brought up: both queues of `QSIZE` at `RXQ` /
/// `TXQ` (MockSplitQueue layout for the descriptors and available ring),
/// DRIVER_OK set.
pub fn live_console(mem: &GuestMemoryMmap, out: &GuestOutput) -> MmioTransport<Console> {
    let mut t = console(mem, out);
    w(&mut t, regs::STATUS, ACKNOWLEDGE);
    w(&mut t, regs::STATUS, ACKNOWLEDGE | DRIVER);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 1);
    w(&mut t, regs::DRIVER_FEATURES, 1); // VIRTIO_F_VERSION_1
    w(&mut t, regs::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    for (i, base) in [(0, RXQ), (1, TXQ)] {
        w(&mut t, regs::QUEUE_SEL, i);
        w(&mut t, regs::QUEUE_NUM, u32::from(QSIZE));
        w64(&mut t, regs::QUEUE_DESC_LOW, base);
        w64(&mut t, regs::QUEUE_DRIVER_LOW, base + 16 * u64::from(QSIZE));
        w64(&mut t, regs::QUEUE_DEVICE_LOW, base + USED_OFFSET);
        w(&mut t, regs::QUEUE_READY, 1);
        assert_eq!(r(&mut t, regs::QUEUE_READY), 1);
    }
    w(
        &mut t,
        regs::STATUS,
        ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
    );
    assert!(t.is_live());
    // As if the guest had printed already: input flows from the start.
    t.device_mut().open_input();
    t
}

/// The used ring index of the queue at `base`.
pub fn used_idx(mem: &GuestMemoryMmap, base: u64) -> u16 {
    mem.read_obj(GuestAddress(base + USED_OFFSET + 2)).unwrap()
}

/// Sets the available index of the queue at `base` (the driver's "I have
/// made this many chains available").
pub fn set_avail_idx(mem: &GuestMemoryMmap, base: u64, idx: u16) {
    mem.write_obj(idx, GuestAddress(base + 16 * u64::from(QSIZE) + 2))
        .unwrap();
}
