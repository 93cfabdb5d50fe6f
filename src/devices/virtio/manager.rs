//! Puts virtio devices on the VM: each gets its own 4 KiB MMIO window (from
//! `VIRTIO_MMIO_START`) and its own GSI (from `VIRTIO_FIRST_IRQ`), and is
//! announced on the kernel command line as `virtio_mmio.device=4K@<addr>:<irq>`
//! (Linux: `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`).

use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::VirtioDevice;
use super::events::VirtioEvents;
use super::mmio::MmioTransport;
use super::regs;
use crate::arch::x86_64::layout::{IRQ_MAX, VIRTIO_FIRST_IRQ, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START};
use crate::devices::bus::{Bus, BusError};

/// Why a virtio device could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// All GSIs up to the IOAPIC's last pin are taken.
    #[error("no interrupt line left for another virtio device (GSIs {VIRTIO_FIRST_IRQ}-{IRQ_MAX})")]
    NoIrq,
    /// An eventfd could not be created.
    #[error("creating an eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    /// A KVM call failed.
    #[error("{0}: {1}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// The window overlaps another device.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The virtio devices of one VM, their command-line entries and the
/// subscribers the event loop must run.
pub struct VirtioManager {
    next_irq: u32,
    cmdline: Vec<String>,
    subscribers: Vec<Box<dyn MutEventSubscriber + Send>>,
}

impl Default for VirtioManager {
    fn default() -> Self {
        VirtioManager {
            next_irq: VIRTIO_FIRST_IRQ,
            cmdline: Vec::new(),
            subscribers: Vec::new(),
        }
    }
}

fn eventfd() -> Result<EventFd, AttachError> {
    EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(AttachError::EventFd)
}

fn clone(fd: &EventFd) -> Result<EventFd, AttachError> {
    fd.try_clone().map_err(AttachError::EventFd)
}

impl VirtioManager {
    /// Attaches `device`; `device_events` are extra eventfds after which it
    /// wants to be processed. Returns the transport, shared with the bus.
    pub fn attach<D: VirtioDevice + 'static>(
        &mut self,
        vm: &VmFd,
        mmio: &mut Bus,
        mem: &GuestMemoryMmap,
        device: D,
        device_events: Vec<EventFd>,
    ) -> Result<Arc<Mutex<MmioTransport<D>>>, AttachError> {
        if self.next_irq > IRQ_MAX {
            return Err(AttachError::NoIrq);
        }
        let gsi = self.next_irq;
        let base = VIRTIO_MMIO_START + u64::from(gsi - VIRTIO_FIRST_IRQ) * VIRTIO_MMIO_SIZE;

        // 1. The interrupt: a write to this eventfd asserts the GSI in KVM's
        //    IOAPIC without a round trip through us (KVM_IRQFD).
        let irq = eventfd()?;
        vm.register_irqfd(&irq, gsi)
            .map_err(|e| AttachError::Kvm("KVM_IRQFD", e))?;

        // 2. Notifications: KVM completes a 32-bit write of `n` to QueueNotify
        //    itself and signals queue n's eventfd (KVM_IOEVENTFD, datamatch).
        let notify_addr = IoEventAddress::Mmio(base + regs::QUEUE_NOTIFY);
        let mut notify = Vec::new();
        for n in 0..device.queue_max_sizes().len() as u32 {
            let evt = eventfd()?;
            vm.register_ioevent(&evt, &notify_addr, n)
                .map_err(|e| AttachError::Kvm("KVM_IOEVENTFD", e))?;
            notify.push(evt);
        }

        // 3. The register window on the MMIO bus; vCPU threads access it.
        let activate = eventfd()?;
        let watched_notify = notify.iter().map(clone).collect::<Result<Vec<_>, _>>()?;
        let mut others = vec![clone(&activate)?];
        others.extend(device_events);
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device,
            mem.clone(),
            irq,
            notify,
            activate,
        )));
        mmio.insert(base, VIRTIO_MMIO_SIZE, transport.clone())?;

        // 4. The main thread's event loop does the queue work.
        self.subscribers.push(Box::new(VirtioEvents::new(
            transport.clone(),
            watched_notify,
            others,
        )));

        // 5. Tell the guest kernel where the device is.
        self.cmdline.push(format!(
            "virtio_mmio.device={}K@{base:#x}:{gsi}",
            VIRTIO_MMIO_SIZE >> 10
        ));
        self.next_irq += 1;
        Ok(transport)
    }

    /// `virtio_mmio.device=...` entries for the kernel command line.
    pub fn cmdline_entries(&self) -> &[String] {
        &self.cmdline
    }

    /// The subscribers for the event loop (taken once, when it starts).
    pub fn take_subscribers(&mut self) -> Vec<Box<dyn MutEventSubscriber + Send>> {
        std::mem::take(&mut self.subscribers)
    }
}
