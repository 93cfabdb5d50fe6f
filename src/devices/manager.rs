//! The device manager: one owner for every device of a VM.
//!
//! It holds the PIO and MMIO buses, the legacy devices (`super::legacy`),
//! the virtio devices, the allocator of MMIO windows and GSIs, the kernel
//! command-line entries the devices need, and the event-loop subscribers
//! that do their work. Adding a device is one call: each `attach_*` does
//! create -> allocate -> wire interrupts and notifications -> put on the bus
//! -> hand its subscriber to the event loop -> announce it to the guest.
//! Every device stays reachable here as a typed handle (`VirtioHandle`,
//! `LegacyDevices`), for `--stats` today and snapshots later.

use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::allocator::{AllocError, ResourceAllocator};
use super::bus::{BusError, IoBuses};
use super::legacy::LegacyDevices;
use super::stdin::ConsoleInput;
use super::virtio::block::Block;
use super::virtio::console::Console;
use super::virtio::events::VirtioEvents;
use super::virtio::mmio::MmioTransport;
use super::virtio::net::Net;
use super::virtio::rng::Rng;
use super::virtio::vsock::Vsock;
use super::virtio::{VirtioDevice, regs};
use crate::arch::x86_64::layout::VIRTIO_MMIO_SIZE;

/// Why a device could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No window or GSI left.
    #[error("setting up {0}: {1}")]
    Alloc(&'static str, #[source] AllocError),
    /// The device's range overlaps another one.
    #[error("setting up {0}: {1}")]
    Bus(&'static str, #[source] BusError),
    /// An eventfd could not be created.
    #[error("setting up {0}: creating an eventfd: {1}")]
    EventFd(&'static str, #[source] std::io::Error),
    /// Registering an irqfd or ioeventfd with KVM failed.
    #[error("setting up {0}: {1}: {2}")]
    Kvm(&'static str, &'static str, #[source] std::io::Error),
    /// The device itself could not be created.
    #[error("setting up {0}: {1}")]
    Device(&'static str, String),
    /// The buses are already shared with running vCPUs.
    #[error("setting up {0}: devices cannot be added once the VM runs")]
    Running(&'static str),
}

/// What the manager needs from the VM to wire a device: interrupt lines
/// (irqfd) and queue notifications (ioeventfd). `VmFd` provides it; unit
/// tests use a recorder, so the manager is tested without /dev/kvm.
pub trait VmWiring {
    /// KVM_IRQFD: a write to `fd` asserts `gsi` in the in-kernel IOAPIC.
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> std::io::Result<()>;
    /// KVM_IOEVENTFD: a 32-bit write of `datamatch` to `addr` signals `fd`
    /// inside KVM, without an exit to the VMM.
    fn register_ioevent(&self, fd: &EventFd, addr: u64, datamatch: u32) -> std::io::Result<()>;
}

impl VmWiring for VmFd {
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> std::io::Result<()> {
        VmFd::register_irqfd(self, fd, gsi)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
    fn register_ioevent(&self, fd: &EventFd, addr: u64, datamatch: u32) -> std::io::Result<()> {
        VmFd::register_ioevent(self, fd, &IoEventAddress::Mmio(addr), datamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

/// The virtio console behind its transport, shared by the MMIO bus (vCPUs)
/// and the event loop.
pub type VirtioConsole = Arc<Mutex<MmioTransport<Console>>>;

/// The console device stdin feeds, and the event it fires when it has room again.
pub type InputTarget = (Arc<Mutex<dyn ConsoleInput>>, EventFd);

/// A virtio disk behind its transport.
pub type VirtioBlock = Arc<Mutex<MmioTransport<Block>>>;

/// A virtio network device behind its transport.
pub type VirtioNet = Arc<Mutex<MmioTransport<Net>>>;
/// The virtio socket device behind its transport.
pub type VirtioVsock = Arc<Mutex<MmioTransport<Vsock>>>;

/// The entropy device behind its transport.
pub type VirtioRng = Arc<Mutex<MmioTransport<Rng>>>;

/// A virtio device, typed, as the rest of the VMM sees it.
#[derive(Clone)]
pub enum VirtioHandle {
    /// The virtio console (device id 3).
    Console(VirtioConsole),
    /// A disk (device id 2).
    Block(VirtioBlock),
    /// A network device on a tap (device id 1).
    Net(VirtioNet),
    /// The entropy device (device id 4).
    Rng(VirtioRng),
    /// The socket device (device id 19).
    Vsock(VirtioVsock),
}

/// One attached virtio device: where it is and what it is.
#[derive(Clone)]
pub struct VirtioSlot {
    /// Its MMIO window's base address.
    pub base: u64,
    /// Its interrupt line.
    pub gsi: u32,
    /// The device.
    pub handle: VirtioHandle,
}

/// A virtio device just attached: its transport (shared with the MMIO bus
/// and the event loop), window base and GSI.
pub struct Attached<D: VirtioDevice> {
    /// The transport.
    pub transport: Arc<Mutex<MmioTransport<D>>>,
    /// The MMIO window's base.
    pub base: u64,
    /// The interrupt line.
    pub gsi: u32,
}

/// Every device of one VM.
#[derive(Default)]
pub struct DeviceManager {
    buses: Arc<IoBuses>,
    allocator: ResourceAllocator,
    cmdline: Vec<String>,
    subscribers: Vec<Box<dyn MutEventSubscriber + Send>>,
    pub(super) legacy: Option<LegacyDevices>,
    virtio: Vec<VirtioSlot>,
    pub(super) console_input: Option<InputTarget>,
}

pub(super) fn eventfd(what: &'static str) -> Result<EventFd, DeviceError> {
    EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(|e| DeviceError::EventFd(what, e))
}

fn clone_fd(what: &'static str, fd: &EventFd) -> Result<EventFd, DeviceError> {
    fd.try_clone().map_err(|e| DeviceError::EventFd(what, e))
}

impl DeviceManager {
    /// No devices yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buses, to change while the VM is being built.
    pub(super) fn buses_mut(&mut self, what: &'static str) -> Result<&mut IoBuses, DeviceError> {
        Arc::get_mut(&mut self.buses).ok_or(DeviceError::Running(what))
    }

    /// Attaches a virtio device named `what`: a 4 KiB window and a GSI from
    /// the allocator, an irqfd for its interrupt, an ioeventfd per queue,
    /// the window on the MMIO bus, a subscriber for the event loop (woken
    /// by the queues and by `device_events`), and a `virtio_mmio.device=`
    /// entry for the kernel command line. Returns the transport and where it sits.
    pub fn attach_virtio<D: VirtioDevice + 'static>(
        &mut self,
        what: &'static str,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        device: D,
        device_events: Vec<EventFd>,
    ) -> Result<Attached<D>, DeviceError> {
        // 1. Where: a window and an interrupt line.
        let base = self
            .allocator
            .allocate_mmio(VIRTIO_MMIO_SIZE)
            .map_err(|e| DeviceError::Alloc(what, e))?;
        let gsi = self
            .allocator
            .allocate_gsi()
            .map_err(|e| DeviceError::Alloc(what, e))?;

        // 2. The interrupt: a write to this eventfd asserts the GSI in KVM's
        //    IOAPIC without a round trip through us (KVM_IRQFD).
        let irq = eventfd(what)?;
        vm.register_irqfd(&irq, gsi)
            .map_err(|e| DeviceError::Kvm(what, "KVM_IRQFD", e))?;

        // 3. Notifications: KVM completes a 32-bit write of `n` to QueueNotify
        //    itself and signals queue n's eventfd (KVM_IOEVENTFD, datamatch).
        let mut notify = Vec::new();
        for n in 0..device.queue_max_sizes().len() as u32 {
            let evt = eventfd(what)?;
            vm.register_ioevent(&evt, base + regs::QUEUE_NOTIFY, n)
                .map_err(|e| DeviceError::Kvm(what, "KVM_IOEVENTFD", e))?;
            notify.push(evt);
        }

        // 4. The register window on the MMIO bus; vCPU threads access it.
        let activate = eventfd(what)?;
        let watched_notify = notify
            .iter()
            .map(|fd| clone_fd(what, fd))
            .collect::<Result<Vec<_>, _>>()?;
        let mut others = vec![clone_fd(what, &activate)?];
        others.extend(device_events);
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device,
            mem.clone(),
            irq,
            notify,
            activate,
        )));
        self.buses_mut(what)?
            .mmio
            .insert(base, VIRTIO_MMIO_SIZE, transport.clone())
            .map_err(|e| DeviceError::Bus(what, e))?;

        // 5. The main thread's event loop does the queue work.
        self.subscribers.push(Box::new(VirtioEvents::new(
            transport.clone(),
            watched_notify,
            others,
        )));

        // 6. Tell the guest kernel where the device is
        //    (Linux: CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES).
        self.cmdline.push(format!(
            "virtio_mmio.device={}K@{base:#x}:{gsi}",
            VIRTIO_MMIO_SIZE >> 10
        ));
        Ok(Attached {
            transport,
            base,
            gsi,
        })
    }

    /// Kernel command-line entries the devices need, in attach order.
    pub fn cmdline_entries(&self) -> &[String] {
        &self.cmdline
    }

    /// The subscribers for the event loop (taken once, when it starts).
    pub fn take_subscribers(&mut self) -> Vec<Box<dyn MutEventSubscriber + Send>> {
        std::mem::take(&mut self.subscribers)
    }

    /// The console device stdin should feed (taken once, when the loop starts).
    pub fn take_console_input(&mut self) -> Option<InputTarget> {
        self.console_input.take()
    }

    /// The buses, shared with the vCPU threads. Once shared, no device can
    /// be added.
    pub fn buses(&self) -> Arc<IoBuses> {
        self.buses.clone()
    }

    /// The legacy devices, once attached.
    pub fn legacy(&self) -> Option<&LegacyDevices> {
        self.legacy.as_ref()
    }

    /// The virtio devices, in attach order.
    pub fn virtio_devices(&self) -> &[VirtioSlot] {
        &self.virtio
    }

    /// The virtio console, if attached.
    pub fn virtio_console(&self) -> Option<&VirtioConsole> {
        self.virtio.iter().find_map(|s| match &s.handle {
            VirtioHandle::Console(c) => Some(c),
            _ => None,
        })
    }

    /// The virtio disks, in attach order (/dev/vda first).
    pub fn virtio_disks(&self) -> impl Iterator<Item = &VirtioBlock> {
        self.virtio.iter().filter_map(|s| match &s.handle {
            VirtioHandle::Block(b) => Some(b),
            _ => None,
        })
    }

    /// The virtio network devices, in attach order (eth0 first).
    pub fn virtio_nets(&self) -> impl Iterator<Item = &VirtioNet> {
        self.virtio.iter().filter_map(|s| match &s.handle {
            VirtioHandle::Net(n) => Some(n),
            _ => None,
        })
    }

    /// The entropy device, if attached.
    pub fn virtio_rng(&self) -> Option<&VirtioRng> {
        self.virtio.iter().find_map(|s| match &s.handle {
            VirtioHandle::Rng(r) => Some(r),
            _ => None,
        })
    }
}

#[path = "manager_attach.rs"]
mod attach;

#[path = "manager_state.rs"]
mod state;
pub use state::{DevicesState, SerialSnapshot, VirtioKindSnapshot, VirtioSnapshot};

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
