//! The MMIO transport's state in a snapshot, and putting it back.
//!
//! A restored transport must be one the driver could have produced: the
//! saved state is untrusted input (a snapshot file can be edited), so it
//! goes back through the same checks the register writes get: a ready queue
//! is rebuilt from its registers (`build_queue`: size, alignment, rings in
//! guest RAM) and only its ring positions are taken from the file.

use serde::{Deserialize, Serialize};
use virtio_queue::QueueT;

use super::super::{VirtioDevice, status};
use super::{MmioTransport, QueueRegs};

/// One queue's registers and ring positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// QueueNum.
    pub num: u16,
    /// Descriptor table, driver (available) and device (used) rings.
    pub desc: u64,
    /// The available ring.
    pub driver: u64,
    /// The used ring.
    pub device: u64,
    /// QueueReady.
    pub ready: bool,
    /// Next available-ring index the device will read.
    pub next_avail: u16,
    /// Next used-ring index the device will write.
    pub next_used: u16,
}

/// The transport's registers and queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportSnapshot {
    /// The device id it was saved with (checked on restore).
    pub device_type: u32,
    /// Status register.
    pub status: u32,
    /// Feature selectors.
    pub device_features_sel: u32,
    /// Driver feature selector.
    pub driver_features_sel: u32,
    /// Accepted features.
    pub driver_features: u64,
    /// The driver wrote a feature word above 63.
    pub bad_feature_word: bool,
    /// QueueSel.
    pub queue_sel: u32,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// DRIVER_OK was ever set.
    pub ever_activated: bool,
    /// Each queue.
    pub queues: Vec<QueueSnapshot>,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// The state to save.
    pub fn save_state(&self) -> TransportSnapshot {
        TransportSnapshot {
            device_type: self.device.device_type(),
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            bad_feature_word: self.bad_feature_word,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            ever_activated: self.ever_activated,
            queues: self
                .regs
                .iter()
                .zip(&self.queues)
                .map(|(r, q)| QueueSnapshot {
                    num: r.num,
                    desc: r.desc,
                    driver: r.driver,
                    device: r.device,
                    ready: r.ready,
                    next_avail: q.as_ref().map_or(0, |q| q.next_avail()),
                    next_used: q.as_ref().map_or(0, |q| q.next_used()),
                })
                .collect(),
        }
    }

    /// Puts a saved state back into a fresh transport (same device type,
    /// same number of queues), checking it as register writes are checked.
    /// A live device is activated again, as DRIVER_OK would.
    pub fn restore_state(&mut self, s: &TransportSnapshot) -> Result<(), String> {
        if s.device_type != self.device.device_type() || s.queues.len() != self.regs.len() {
            return Err(format!(
                "virtio device type {} with {} queues, this one is type {} with {}",
                s.device_type,
                s.queues.len(),
                self.device.device_type(),
                self.regs.len()
            ));
        }
        let known = status::ACKNOWLEDGE
            | status::DRIVER
            | status::FEATURES_OK
            | status::DRIVER_OK
            | status::DEVICE_NEEDS_RESET
            | status::FAILED;
        if s.status & !known != 0 || s.driver_features & !self.device.features() != 0 {
            return Err(format!(
                "virtio status {:#x} or features {:#x} this device cannot have",
                s.status, s.driver_features
            ));
        }
        self.status = s.status;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.bad_feature_word = s.bad_feature_word;
        self.queue_sel = s.queue_sel;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        self.ever_activated = s.ever_activated;
        let max = self.device.queue_max_sizes().to_vec();
        for (i, q) in s.queues.iter().enumerate() {
            if !q.num.is_power_of_two() || q.num > max[i] {
                return Err(format!(
                    "virtqueue {i}: size {} (at most {})",
                    q.num, max[i]
                ));
            }
            self.regs[i] = QueueRegs {
                num: q.num,
                desc: q.desc,
                driver: q.driver,
                device: q.device,
                ready: false,
            };
            self.queues[i] = None;
            if q.ready {
                let mut queue = self.build_queue(i).ok_or_else(|| {
                    format!("virtqueue {i}: its rings are not valid in guest RAM")
                })?;
                queue.set_next_avail(q.next_avail);
                queue.set_next_used(q.next_used);
                self.regs[i].ready = true;
                self.queues[i] = Some(queue);
            }
        }
        if self.status & status::DRIVER_OK != 0 {
            self.device.activate(self.driver_features);
            let _ = self.activate.write(1);
        }
        Ok(())
    }
}
