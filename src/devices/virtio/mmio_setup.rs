//! The driver's set-up sequence on the MMIO transport (virtio 1.2, 3.1.1
//! "Driver Requirements: Device Initialization", and 4.2.3): the status
//! state machine, feature negotiation and queue configuration. Each step is
//! checked, since the driver may be hostile; a refused write leaves the
//! state as it was and is counted.

use vm_memory::GuestAddress;

use super::super::{Queue, VIRTIO_F_VERSION_1, VirtioDevice, status};
use super::{MmioTransport, regs};
use virtio_queue::QueueT;

impl<D: VirtioDevice> MmioTransport<D> {
    /// DriverFeatures is writable between DRIVER and FEATURES_OK (3.1.1 step 4).
    pub(super) fn write_driver_features(&mut self, value: u32) {
        if self.status != status::ACKNOWLEDGE | status::DRIVER {
            self.refusals.register += 1;
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
            }
            // No feature above bit 63 is offered: accepting one is an error
            // that FEATURES_OK will refuse.
            _ => self.bad_feature_word |= value != 0,
        }
    }

    /// Queue registers: only after FEATURES_OK, before DRIVER_OK, on a
    /// queue that exists and is not ready (4.2.2.3, 3.1.1 step 7).
    pub(super) fn write_queue_reg(&mut self, offset: u64, value: u32) {
        let setting_up = self.status & !status::DEVICE_NEEDS_RESET
            == status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        let Some(i) = self.selected().filter(|_| setting_up) else {
            self.refusals.register += 1;
            return;
        };
        if offset == regs::QUEUE_READY {
            return self.write_queue_ready(i, value);
        }
        let r = &mut self.regs[i];
        if r.ready {
            self.refusals.register += 1;
            return;
        }
        let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            regs::QUEUE_NUM => {
                let max = self.device.queue_max_sizes()[i];
                match u16::try_from(value) {
                    Ok(n) if n.is_power_of_two() && n <= max => r.num = n,
                    _ => self.refusals.register += 1,
                }
            }
            regs::QUEUE_DESC_LOW => r.desc = low(r.desc),
            regs::QUEUE_DESC_HIGH => r.desc = high(r.desc),
            regs::QUEUE_DRIVER_LOW => r.driver = low(r.driver),
            regs::QUEUE_DRIVER_HIGH => r.driver = high(r.driver),
            regs::QUEUE_DEVICE_LOW => r.device = low(r.device),
            regs::QUEUE_DEVICE_HIGH => r.device = high(r.device),
            _ => {}
        }
    }

    /// QueueReady = 1 builds the virtqueue if its layout is valid; 0 takes
    /// it down again (still only before DRIVER_OK).
    fn write_queue_ready(&mut self, i: usize, value: u32) {
        if value == 0 {
            self.regs[i].ready = false;
            self.queues[i] = None;
            return;
        }
        if self.regs[i].ready {
            return;
        }
        match self.build_queue(i) {
            Some(q) => {
                self.regs[i].ready = true;
                self.queues[i] = Some(q);
            }
            None => self.refusals.queue_ready += 1,
        }
    }

    /// A virtqueue from the registers, or `None` if the size is not a power
    /// of two within QueueNumMax, a ring is misaligned (2.7: descriptor
    /// table 16, available ring 2, used ring 4 bytes) or a ring is not
    /// entirely in guest RAM.
    pub(super) fn build_queue(&self, i: usize) -> Option<Queue> {
        let r = self.regs[i];
        let mut q = Queue::new(self.device.queue_max_sizes()[i]).ok()?;
        q.try_set_size(r.num).ok()?;
        q.try_set_desc_table_address(GuestAddress(r.desc)).ok()?;
        q.try_set_avail_ring_address(GuestAddress(r.driver)).ok()?;
        q.try_set_used_ring_address(GuestAddress(r.device)).ok()?;
        // virtio-queue treats an available ring at 0 as "never configured".
        if r.driver == 0 {
            return None;
        }
        q.set_ready(true);
        q.is_valid(&self.mem).then_some(q)
    }

    /// The status state machine (2.1, 3.1.1).
    pub(super) fn write_status(&mut self, value: u32) {
        if value == 0 {
            return self.reset();
        }
        // DEVICE_NEEDS_RESET is the device's bit: the driver cannot set or
        // clear it, but may write it back along with its own bits.
        let old = self.status & !status::DEVICE_NEEDS_RESET;
        let new = value & !status::DEVICE_NEEDS_RESET;
        if new & status::FAILED != 0 {
            // The driver gave up: accepted at any time; the device goes idle.
            self.status |= status::FAILED;
            return;
        }
        if new == old {
            return;
        }
        let expected = match old {
            0 => status::ACKNOWLEDGE,
            s if s == status::ACKNOWLEDGE => status::DRIVER,
            s if s == status::ACKNOWLEDGE | status::DRIVER => status::FEATURES_OK,
            s if s == status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK => {
                status::DRIVER_OK
            }
            _ => 0,
        };
        if expected == 0 || new != old | expected {
            self.refusals.status += 1;
            return;
        }
        if expected == status::FEATURES_OK && !self.features_acceptable() {
            // Not setting the bit is how a device says no (2.2.2): the
            // driver reads Status back and finds FEATURES_OK clear.
            self.refusals.status += 1;
            return;
        }
        self.status |= expected;
        if expected == status::DRIVER_OK {
            self.ever_activated = true;
            self.device.activate(self.driver_features);
            let _ = self.activate.write(1);
        }
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device.features();
        !self.bad_feature_word
            && self.driver_features & !offered == 0
            && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }
}
