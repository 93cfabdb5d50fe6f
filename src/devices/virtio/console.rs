//! The virtio console (virtio 1.2, 5.3), device id 3, as Linux's `hvc0`.
//!
//! One port (no VIRTIO_CONSOLE_F_MULTIPORT), so two queues (5.3.2):
//! - receiveq (0): the driver posts empty device-writable buffers; host
//!   stdin is copied into them. Input waits in a small bounded buffer, and
//!   stdin is read only as fast as it empties (`ConsoleInput`).
//! - transmitq (1): the driver posts device-readable buffers of output; they
//!   go to stdout through `OutputHandle::try_push`. When the output buffer is
//!   full the chain is held, not completed, until the output thread signals
//!   space: back-pressure, so nothing is lost and memory stays bounded. The
//!   driver sees its buffer come back only once every byte was taken.
//!
//! With VIRTIO_CONSOLE_F_SIZE (5.3.3) the configuration space (5.3.4) gives
//! the host terminal's columns and rows.
//!
//! Input is held until the guest has first written to the transmitq. Linux
//! posts its receive buffers before it connects the port to hvc0 and
//! discards whatever arrives in between (`in_intr` -> `discard_port_data`
//! in drivers/char/virtio_console.c); without VIRTIO_CONSOLE_F_MULTIPORT
//! the device is never told when the port opens, and the guest's first
//! output is the first sign that it did. Typed-ahead or piped input thus
//! survives the boot.

use std::collections::VecDeque;
use std::io;

use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::mmio::MmioTransport;
use super::queue::{self, Direction, Segment};
use super::{DeviceError, Queue, UsedQueues, VIRTIO_F_VERSION_1, VirtioDevice};
use crate::devices::output::OutputHandle;
use crate::devices::stdin::ConsoleInput;
use virtio_queue::QueueT;

/// The virtio device id of a console (5, table "Device Types").
pub const DEVICE_ID: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
/// Feature bit 0: the configuration space holds the console size (5.3.3).
pub const VIRTIO_CONSOLE_F_SIZE: u64 = 1 << 0;
/// Queue index of port 0's receiveq (host to guest).
pub const RECEIVEQ: usize = 0;
/// Queue index of port 0's transmitq (guest to host).
pub const TRANSMITQ: usize = 1;
/// QueueNumMax of each queue. Linux fills the whole receiveq with one page
/// each, so it is kept small; the transmitq may hold more output in flight.
pub const QUEUE_SIZES: [u16; 2] = [64, 256];
/// Host input buffered for the guest, at most (stdin waits beyond that).
pub const INPUT_CAPACITY: usize = 4096;
/// Output bytes moved per round of processing before yielding to the loop.
pub const TX_BUDGET: usize = 1 << 20;
/// Bytes copied out of guest memory at a time.
const CHUNK: usize = 16 << 10;

/// Counters, for tests and `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleStats {
    /// Bytes taken from the guest to stdout.
    pub tx_bytes: u64,
    /// Bytes given to the guest from stdin.
    pub rx_bytes: u64,
    /// Chains completed unused because they were malformed.
    pub bad_chains: u64,
    /// Times the transmitq stopped because stdout was behind.
    pub tx_stalls: u64,
}

/// A transmit chain being copied out, held until all of it is taken.
struct PendingTx {
    head: u16,
    segments: Vec<Segment>,
    index: usize,
    offset: u32,
}

/// How far one round of transmitting got.
enum TxProgress {
    /// The chain was copied entirely.
    Done,
    /// The output buffer is full: wait for its space event.
    Blocked,
    /// This round's budget is spent: come back through `resume`.
    Budget,
}

/// The console device.
pub struct Console {
    output: OutputHandle,
    input: VecDeque<u8>,
    input_drained: EventFd,
    resume: EventFd,
    size: Option<(u16, u16)>,
    tx: Option<PendingTx>,
    guest_wrote: bool,
    scratch: Vec<u8>,
    stats: ConsoleStats,
}

impl Console {
    /// A console writing to `output`; `size` is (columns, rows) of the host
    /// terminal, offered with VIRTIO_CONSOLE_F_SIZE when known.
    pub fn new(output: OutputHandle, size: Option<(u16, u16)>) -> io::Result<Self> {
        Ok(Console {
            output,
            input: VecDeque::with_capacity(INPUT_CAPACITY),
            input_drained: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            resume: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            size,
            tx: None,
            guest_wrote: false,
            scratch: vec![0; CHUNK],
            stats: ConsoleStats::default(),
        })
    }

    /// Fires when buffered input went to the guest (stdin may resume).
    pub fn input_drained(&self) -> &EventFd {
        &self.input_drained
    }

    /// Fires when a round stopped on its budget with work left.
    pub fn resume_event(&self) -> &EventFd {
        &self.resume
    }

    /// Counters so far.
    pub fn stats(&self) -> ConsoleStats {
        self.stats
    }

    /// Whether a transmit chain is held waiting for stdout.
    pub fn tx_held(&self) -> bool {
        self.tx.is_some()
    }

    /// Lets input flow before the guest's first output: for a guest known
    /// to have its port open (and for tests).
    pub fn open_input(&mut self) {
        self.guest_wrote = true;
    }

    /// Room left in the input buffer.
    pub fn input_room(&self) -> usize {
        INPUT_CAPACITY - self.input.len()
    }

    /// Buffers what fits of `data` for the guest; returns how much.
    pub fn queue_input(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.input_room());
        self.input.extend(&data[..n]);
        n
    }

    /// Copies buffered input into the driver's receive buffers.
    fn fill_rx(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, DeviceError> {
        let qerr = |e| DeviceError::Queue(RECEIVEQ, e);
        if !self.guest_wrote {
            return Ok(false);
        }
        let before = self.input.len();
        let mut used = false;
        for _ in 0..q.size() {
            if self.input.is_empty() {
                break;
            }
            let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
                break;
            };
            let head = chain.head_index();
            let written = match queue::buffers(chain, Direction::DeviceWrites, q.size(), mem) {
                Ok(segments) => self.write_input(&segments, mem)?,
                Err(_) => {
                    self.stats.bad_chains += 1;
                    0
                }
            };
            q.add_used(mem, head, written).map_err(qerr)?;
            used = true;
        }
        if self.input.len() < before {
            let _ = self.input_drained.write(1);
        }
        Ok(used)
    }

    fn write_input(
        &mut self,
        segments: &[Segment],
        mem: &GuestMemoryMmap,
    ) -> Result<u32, DeviceError> {
        let mut written = 0u32;
        for seg in segments {
            let n = (seg.len as usize).min(self.input.len());
            if n == 0 {
                break;
            }
            let data = self.input.make_contiguous();
            mem.write_slice(&data[..n], seg.addr)?;
            self.input.drain(..n);
            written += n as u32;
            self.stats.rx_bytes += n as u64;
        }
        Ok(written)
    }

    /// Sends the driver's transmit buffers to stdout, holding the current
    /// chain when stdout is behind.
    fn drain_tx(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, DeviceError> {
        let qerr = |e| DeviceError::Queue(TRANSMITQ, e);
        let mut used = false;
        let mut chains = 0;
        let mut budget = TX_BUDGET;
        loop {
            if self.tx.is_none() {
                if chains == q.size() {
                    break;
                }
                let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
                    break;
                };
                chains += 1;
                self.guest_wrote = true;
                let head = chain.head_index();
                match queue::buffers(chain, Direction::DeviceReads, q.size(), mem) {
                    Ok(segments) => {
                        self.tx = Some(PendingTx {
                            head,
                            segments,
                            index: 0,
                            offset: 0,
                        })
                    }
                    Err(_) => {
                        self.stats.bad_chains += 1;
                        q.add_used(mem, head, 0).map_err(qerr)?;
                        used = true;
                        continue;
                    }
                }
            }
            match self.write_output(mem, &mut budget)? {
                TxProgress::Done => {
                    if let Some(tx) = self.tx.take() {
                        // Used length: bytes the device wrote into the buffers.
                        q.add_used(mem, tx.head, 0).map_err(qerr)?;
                        used = true;
                    }
                }
                TxProgress::Blocked => {
                    self.stats.tx_stalls += 1;
                    break;
                }
                TxProgress::Budget => {
                    let _ = self.resume.write(1);
                    break;
                }
            }
        }
        Ok(used)
    }

    fn write_output(
        &mut self,
        mem: &GuestMemoryMmap,
        budget: &mut usize,
    ) -> Result<TxProgress, DeviceError> {
        let Some(tx) = self.tx.as_mut() else {
            return Ok(TxProgress::Done);
        };
        while let Some(&seg) = tx.segments.get(tx.index) {
            let left = (seg.len - tx.offset) as usize;
            if left == 0 {
                tx.index += 1;
                tx.offset = 0;
                continue;
            }
            if *budget == 0 {
                return Ok(TxProgress::Budget);
            }
            let n = left.min(CHUNK).min(*budget).min(self.output.free());
            if n == 0 {
                return Ok(TxProgress::Blocked);
            }
            // In RAM: checked when the chain was taken, and RAM never moves.
            let addr = seg.addr.unchecked_add(u64::from(tx.offset));
            mem.read_slice(&mut self.scratch[..n], addr)?;
            let took = self.output.try_push(&self.scratch[..n]);
            tx.offset += took as u32;
            *budget -= took;
            self.stats.tx_bytes += took as u64;
            if took < n {
                return Ok(TxProgress::Blocked);
            }
        }
        Ok(TxProgress::Done)
    }

    /// The configuration space (5.3.4): le16 cols, le16 rows, le32
    /// max_nr_ports (MULTIPORT only), le32 emerg_wr (EMERG_WRITE only).
    fn config_bytes(&self) -> [u8; 12] {
        let (cols, rows) = self.size.unwrap_or((0, 0));
        let mut c = [0u8; 12];
        c[0..2].copy_from_slice(&cols.to_le_bytes());
        c[2..4].copy_from_slice(&rows.to_le_bytes());
        c
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        let size = if self.size.is_some() {
            VIRTIO_CONSOLE_F_SIZE
        } else {
            0
        };
        VIRTIO_F_VERSION_1 | size
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| config.get(a)).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // cols/rows are read-only; emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE,
        // which is not offered. The write is ignored.
    }
    fn activate(&mut self, _features: u64) {}
    fn reset(&mut self) {
        // The driver took its buffers back: a held chain is gone. Typed
        // input stays buffered for the next driver.
        self.tx = None;
        self.guest_wrote = false;
    }
    fn process(
        &mut self,
        queues: &mut [Option<Queue>],
        mem: &GuestMemoryMmap,
    ) -> Result<UsedQueues, DeviceError> {
        // Transmit first: the guest's first output opens the input path.
        let mut used = 0;
        if let Some(Some(q)) = queues.get_mut(TRANSMITQ) {
            if self.drain_tx(q, mem)? {
                used |= 1 << TRANSMITQ;
            }
        }
        if let Some(Some(q)) = queues.get_mut(RECEIVEQ) {
            if self.fill_rx(q, mem)? {
                used |= 1 << RECEIVEQ;
            }
        }
        Ok(used)
    }
}

/// stdin feeds the console through its transport: input is buffered, then
/// delivered at once if the guest has receive buffers posted.
impl ConsoleInput for MmioTransport<Console> {
    fn room(&self) -> usize {
        self.device().input_room()
    }
    fn push(&mut self, data: &[u8]) -> usize {
        let n = self.device_mut().queue_input(data);
        self.process();
        n
    }
}

/// The host terminal's (columns, rows) if stdin is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data; all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into `ws`, which lives across the
    // call; it fails harmlessly with ENOTTY when fd 0 is not a terminal.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

#[path = "console_state.rs"]
pub mod state;

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;
