//! The device manager's half of a snapshot: the state of every device it
//! owns, saved in one `DevicesState` and put back into devices attached in
//! the same order (so they get the same windows and GSIs, which is
//! checked). The KVM half (irqchip, vCPUs) is `crate::kvm::state`.
//!
//! Saved: the 8250's registers and receive FIFO (vm-superio's
//! `SerialState`), the boot markers' write count, each virtio transport
//! (registers, queues, ring positions) and device (the console's input,
//! size and held output; each disk's identity; each network device's tap
//! and MAC; the socket device's cid and
//! path, its connections dropped with a transport reset on restore; the
//! entropy device has nothing beyond its transport). Not saved, because there is
//! nothing to save: the debug-exit register (stateless) and the i8042
//! (vm-superio keeps only its reset line and exposes no state; a guest that
//! reads the controller after a restore sees its power-on values).

use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;
use vm_superio::serial::SerialState;

use super::{DeviceManager, VirtioHandle};
use crate::devices::virtio::console::state::ConsoleSnapshot;
use crate::devices::virtio::mmio::state::TransportSnapshot;
use crate::devices::virtio::net::state::NetSnapshot;
use crate::devices::virtio::vsock::VsockSnapshot;
use crate::snapshot::disk::{self, DiskIdentity};
use crate::sync::lock;

/// The 8250's registers (vm-superio's `SerialState`, which has no serde).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSnapshot {
    /// DLL, DLM, IER, IIR, LCR, LSR, MCR, MSR, SCR.
    pub regs: [u8; 9],
    /// Receive FIFO.
    pub in_buffer: Vec<u8>,
}

/// What a virtio slot held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VirtioKindSnapshot {
    /// The console and its state.
    Console(ConsoleSnapshot),
    /// A disk: which image.
    Block(DiskIdentity),
    /// The entropy device (no state of its own beyond its transport).
    Rng,
    /// The socket device: its configuration (connections are not saved).
    Vsock(VsockSnapshot),
    /// A network device: its tap and MAC.
    Net(NetSnapshot),
}

/// One virtio device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioSnapshot {
    /// Window base.
    pub base: u64,
    /// Interrupt line.
    pub gsi: u32,
    /// The transport.
    pub transport: TransportSnapshot,
    /// The device.
    pub device: VirtioKindSnapshot,
}

/// Every device's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesState {
    /// The 8250, when present.
    pub serial: Option<SerialSnapshot>,
    /// Boot-marker writes so far.
    pub marker_writes: u64,
    /// Virtio devices in attach order.
    pub virtio: Vec<VirtioSnapshot>,
}

fn serial_snapshot(s: SerialState) -> SerialSnapshot {
    SerialSnapshot {
        regs: [
            s.baud_divisor_low,
            s.baud_divisor_high,
            s.interrupt_enable,
            s.interrupt_identification,
            s.line_control,
            s.line_status,
            s.modem_control,
            s.modem_status,
            s.scratch,
        ],
        in_buffer: s.in_buffer,
    }
}

fn serial_state(s: &SerialSnapshot) -> SerialState {
    let r = s.regs;
    SerialState {
        baud_divisor_low: r[0],
        baud_divisor_high: r[1],
        interrupt_enable: r[2],
        interrupt_identification: r[3],
        line_control: r[4],
        line_status: r[5],
        modem_control: r[6],
        modem_status: r[7],
        scratch: r[8],
        in_buffer: s.in_buffer.clone(),
    }
}

impl DeviceManager {
    /// Every device's state. Called with the vCPUs paused, on the event
    /// loop's thread, so no device is mid-request. Disks are flushed first.
    pub fn save_state(&self) -> std::io::Result<DevicesState> {
        let legacy = self.legacy.as_ref();
        let serial = legacy
            .and_then(|l| l.serial.as_ref())
            .map(|s| serial_snapshot(lock(s).0.state()));
        let mut virtio = Vec::new();
        for slot in &self.virtio {
            let (transport, device) = match &slot.handle {
                VirtioHandle::Console(c) => {
                    let c = lock(c);
                    (
                        c.save_state(),
                        VirtioKindSnapshot::Console(c.device().save_state()),
                    )
                }
                VirtioHandle::Net(n) => {
                    let n = lock(n);
                    (
                        n.save_state(),
                        VirtioKindSnapshot::Net(n.device().save_state()),
                    )
                }
                VirtioHandle::Vsock(v) => {
                    let v = lock(v);
                    (
                        v.save_state(),
                        VirtioKindSnapshot::Vsock(v.device().save_state()),
                    )
                }
                VirtioHandle::Block(b) => {
                    let b = lock(b);
                    (
                        b.save_state(),
                        VirtioKindSnapshot::Block(disk::identity(b.device().disk())?),
                    )
                }
                VirtioHandle::Rng(r) => (lock(r).save_state(), VirtioKindSnapshot::Rng),
            };
            virtio.push(VirtioSnapshot {
                base: slot.base,
                gsi: slot.gsi,
                transport,
                device,
            });
        }
        Ok(DevicesState {
            serial,
            marker_writes: legacy.map_or(0, |l| l.boot_timer.writes()),
            virtio,
        })
    }

    /// Puts `state` into devices attached as the snapshot's were.
    pub fn restore_state(&self, state: &DevicesState, mem: &GuestMemoryMmap) -> Result<(), String> {
        let legacy = self.legacy.as_ref().ok_or("no legacy devices")?;
        match (&legacy.serial, &state.serial) {
            (Some(dev), Some(saved)) => lock(dev).restore_state(&serial_state(saved))?,
            (None, None) => {}
            _ => return Err("the 8250 is present in one of the snapshot and this VM only".into()),
        }
        legacy.boot_timer.add_writes(state.marker_writes);
        if self.virtio.len() != state.virtio.len() {
            return Err(format!(
                "{} virtio devices saved, {} attached",
                state.virtio.len(),
                self.virtio.len()
            ));
        }
        for (slot, saved) in self.virtio.iter().zip(&state.virtio) {
            if (slot.base, slot.gsi) != (saved.base, saved.gsi) {
                return Err(format!(
                    "virtio device at {:#x} (GSI {}) was saved at {:#x} (GSI {})",
                    slot.base, slot.gsi, saved.base, saved.gsi
                ));
            }
            match (&slot.handle, &saved.device) {
                (VirtioHandle::Console(c), VirtioKindSnapshot::Console(s)) => {
                    let mut c = lock(c);
                    c.device_mut().restore_state(s, mem)?;
                    c.restore_state(&saved.transport)?;
                }
                (VirtioHandle::Block(b), VirtioKindSnapshot::Block(_)) => {
                    lock(b).restore_state(&saved.transport)?;
                }
                (VirtioHandle::Rng(r), VirtioKindSnapshot::Rng) => {
                    lock(r).restore_state(&saved.transport)?;
                }
                (VirtioHandle::Net(n), VirtioKindSnapshot::Net(_)) => {
                    lock(n).restore_state(&saved.transport)?;
                }
                (VirtioHandle::Vsock(v), VirtioKindSnapshot::Vsock(_)) => {
                    // As Firecracker: the guest's connections are gone;
                    // the event reaches it once the loop runs.
                    let mut v = lock(v);
                    v.restore_state(&saved.transport)?;
                    v.device_mut().transport_reset();
                }
                _ => {
                    return Err(format!(
                        "virtio device at {:#x} is not of the saved kind",
                        slot.base
                    ));
                }
            }
        }
        Ok(())
    }
}
