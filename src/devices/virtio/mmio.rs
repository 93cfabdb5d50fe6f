//! The virtio-mmio transport, version 2 ("modern"), virtio 1.2 section 4.2.
//!
//! The guest finds the device at a 4 KiB window named on its command line
//! (`virtio_mmio.device=4K@0xd0000000:5`) and drives it through the
//! registers below. Every register write is checked against the spec, since
//! the driver may be hostile:
//! - the status only moves ACKNOWLEDGE -> DRIVER -> FEATURES_OK -> DRIVER_OK,
//!   one bit per write (3.1.1); writing 0 resets the device (2.4);
//! - FEATURES_OK is refused if the driver accepted a feature we did not offer
//!   or did not accept VIRTIO_F_VERSION_1 (2.2.2, 6.1);
//! - queue registers are writable only after FEATURES_OK, before DRIVER_OK,
//!   and while the selected queue is not ready (4.2.2.3); later writes are
//!   ignored, so a live ring cannot be moved under the device;
//! - QueueNum must be a non-zero power of two no larger than QueueNumMax
//!   (2.7); a queue becomes ready only if its three rings are aligned
//!   (2.7: 16, 2 and 4 bytes) and lie in guest RAM.
//!
//! Queue notifications normally never reach this code: KVM signals an
//! ioeventfd for a write of a valid queue index to QueueNotify, and the main
//! thread does the work. A write that does reach us (an invalid index, or no
//! ioeventfd) is range-checked and turned into the same eventfd signal.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::regs::{self, MAGIC_VALUE, MMIO_VERSION, VENDOR_TVMM};
use super::{DeviceError, INT_CONFIG, INT_VRING, Queue, VirtioDevice, status};
use crate::devices::bus::BusDevice;
use virtio_queue::QueueT;

/// The Queue* register values of one queue, as the driver wrote them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct QueueRegs {
    num: u16,
    desc: u64,
    driver: u64,
    device: u64,
    ready: bool,
}

/// Counts of what the transport refused; a well-behaved driver leaves all 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Status writes out of order, or FEATURES_OK with bad features.
    pub status: u64,
    /// Writes to queue or feature registers at the wrong time or with bad values.
    pub register: u64,
    /// QueueReady = 1 refused: bad size, misaligned rings or rings outside RAM.
    pub queue_ready: u64,
    /// Accesses that were not 32-bit and aligned, or past the register file.
    pub access: u64,
}

/// Traffic through the transport, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Queue notifications from the guest (ioeventfd signals: each one a
    /// VM exit that KVM completes without leaving the kernel).
    pub notifications: u64,
    /// Interrupts raised through the irqfd.
    pub interrupts: u64,
    /// What the register file refused.
    pub refusals: Refusals,
}

/// One virtio device behind its MMIO register window.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    mem: GuestMemoryMmap,
    irq: EventFd,
    notify: Vec<EventFd>,
    activate: EventFd,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    bad_feature_word: bool,
    queue_sel: u32,
    regs: Vec<QueueRegs>,
    queues: Vec<Option<Queue>>,
    interrupt_status: u32,
    config_generation: u32,
    ever_activated: bool,
    refusals: Refusals,
    notifications: u64,
    interrupts: u64,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Wraps `device`. `irq` is its interrupt (a KVM irqfd); `notify[n]` is
    /// queue n's notification eventfd (a KVM ioeventfd); `activate` fires
    /// when the driver sets DRIVER_OK. All three are watched by `events`.
    pub fn new(
        device: D,
        mem: GuestMemoryMmap,
        irq: EventFd,
        notify: Vec<EventFd>,
        activate: EventFd,
    ) -> Self {
        let n = device.queue_max_sizes().len();
        let mut t = MmioTransport {
            device,
            mem,
            irq,
            notify,
            activate,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            bad_feature_word: false,
            queue_sel: 0,
            regs: vec![QueueRegs::default(); n],
            queues: (0..n).map(|_| None).collect(),
            interrupt_status: 0,
            config_generation: 0,
            ever_activated: false,
            refusals: Refusals::default(),
            notifications: 0,
            interrupts: 0,
        };
        t.reset();
        t
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (e.g. to give it input).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The status register as the driver sees it.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// DRIVER_OK is set and the device has not failed: queues are processed.
    pub fn is_live(&self) -> bool {
        self.status & (status::DRIVER_OK | status::DEVICE_NEEDS_RESET | status::FAILED)
            == status::DRIVER_OK
    }

    /// Whether the driver ever set DRIVER_OK since the VM started.
    pub fn ever_activated(&self) -> bool {
        self.ever_activated
    }

    /// The features the driver accepted (final once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// What was refused so far.
    pub fn refusals(&self) -> Refusals {
        self.refusals
    }

    /// Counts `n` queue notifications (the event loop read them from the
    /// ioeventfds).
    pub fn note_notifications(&mut self, n: u64) {
        self.notifications += n;
    }

    /// Traffic so far.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            notifications: self.notifications,
            interrupts: self.interrupts,
            refusals: self.refusals,
        }
    }

    /// The virtqueues (for tests and statistics).
    pub fn queues(&self) -> &[Option<Queue>] {
        &self.queues
    }

    /// Runs the device's pending work if it is live, raises the interrupt
    /// when buffers were used, and sets DEVICE_NEEDS_RESET on an error.
    /// Called on the main thread for every notification or device event.
    pub fn process(&mut self) {
        if !self.is_live() {
            return;
        }
        match self.device.process(&mut self.queues, &self.mem) {
            Ok(0) => {}
            Ok(used) => {
                let wanted = (0..self.queues.len())
                    .filter(|&i| used & (1 << i) != 0)
                    .any(|i| self.wants_interrupt(i));
                if wanted {
                    self.raise(INT_VRING);
                }
            }
            Err(e) => self.needs_reset(&e),
        }
    }

    /// The device hit an error: DEVICE_NEEDS_RESET, and a configuration
    /// change interrupt so the driver notices (2.1.2).
    pub fn needs_reset(&mut self, why: &DeviceError) {
        if self.status & status::DEVICE_NEEDS_RESET == 0 {
            // A guest can reset the device and break it again in a loop.
            static LINES: crate::log::Limit = crate::log::Limit::new(5);
            let kind = self.device.device_type();
            LINES.line(|| format!("tinyvmm: virtio device {kind} needs a reset: {why}"));
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        if self.status & status::DRIVER_OK != 0 {
            self.raise(INT_CONFIG);
        }
    }

    /// The configuration space changed (e.g. the terminal was resized).
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.is_live() {
            self.raise(INT_CONFIG);
        }
    }

    fn raise(&mut self, why: u32) {
        self.interrupt_status |= why;
        self.interrupts += 1;
        // Fails only if the counter would overflow; the line is pending anyway.
        let _ = self.irq.write(1);
    }

    /// The driver may suppress used-buffer interrupts with the available
    /// ring's VRING_AVAIL_F_NO_INTERRUPT flag (2.7.7; no EVENT_IDX here).
    fn wants_interrupt(&self, index: usize) -> bool {
        let Some(q) = &self.queues[index] else {
            return false;
        };
        let flags: u16 = self.mem.read_obj(GuestAddress(q.avail_ring())).unwrap_or(0);
        u16::from_le(flags) & virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT as u16 == 0
    }

    /// Device reset (writing 0 to Status, 2.4): back to the power-on state.
    fn reset(&mut self) {
        self.device.reset();
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.bad_feature_word = false;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        for (r, &max) in self.regs.iter_mut().zip(self.device.queue_max_sizes()) {
            *r = QueueRegs {
                num: max,
                ..Default::default()
            };
        }
        self.queues.iter_mut().for_each(|q| *q = None);
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let features = self.device.features();
        match offset {
            regs::MAGIC => MAGIC_VALUE,
            regs::VERSION => MMIO_VERSION,
            regs::DEVICE_ID => self.device.device_type(),
            regs::VENDOR_ID => VENDOR_TVMM,
            regs::DEVICE_FEATURES => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            regs::QUEUE_NUM_MAX => self
                .selected()
                .map_or(0, |i| u32::from(self.device.queue_max_sizes()[i])),
            regs::QUEUE_READY => self.selected().map_or(0, |i| u32::from(self.regs[i].ready)),
            regs::INTERRUPT_STATUS => self.interrupt_status,
            regs::STATUS => self.status,
            // No shared memory regions: a length of all-ones (4.2.2).
            regs::SHM_LEN_LOW | regs::SHM_LEN_HIGH => u32::MAX,
            regs::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            regs::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            regs::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            regs::DRIVER_FEATURES => self.write_driver_features(value),
            regs::QUEUE_SEL => self.queue_sel = value,
            regs::QUEUE_NUM
            | regs::QUEUE_READY
            | regs::QUEUE_DESC_LOW
            | regs::QUEUE_DESC_HIGH
            | regs::QUEUE_DRIVER_LOW
            | regs::QUEUE_DRIVER_HIGH
            | regs::QUEUE_DEVICE_LOW
            | regs::QUEUE_DEVICE_HIGH => self.write_queue_reg(offset, value),
            regs::QUEUE_NOTIFY => match self.notify.get(value as usize) {
                Some(evt) => {
                    let _ = evt.write(1);
                }
                None => self.refusals.register += 1,
            },
            regs::INTERRUPT_ACK => self.interrupt_status &= !value,
            regs::STATUS => self.write_status(value),
            regs::SHM_SEL => {}
            _ => self.refusals.access += 1,
        }
    }

    /// The selected queue, if QueueSel names one (QueueSel is range-checked
    /// here, on every use).
    fn selected(&self) -> Option<usize> {
        let i = self.queue_sel as usize;
        (i < self.regs.len()).then_some(i)
    }
}

impl<D: VirtioDevice> BusDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= regs::CONFIG {
            return self.device.read_config(offset - regs::CONFIG, data);
        }
        // 4.2.2.2: the driver MUST use 32-bit wide, aligned accesses here.
        if data.len() == 4 && offset % 4 == 0 {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        } else {
            self.refusals.access += 1;
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= regs::CONFIG {
            return self.device.write_config(offset - regs::CONFIG, data);
        }
        match <[u8; 4]>::try_from(data) {
            Ok(word) if offset % 4 == 0 => self.write_reg(offset, u32::from_le_bytes(word)),
            _ => self.refusals.access += 1,
        }
    }
}

#[path = "mmio_setup.rs"]
mod setup;

#[path = "mmio_state.rs"]
pub mod state;

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
