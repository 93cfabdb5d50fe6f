//! The device manager's `attach_*` for each virtio device: the console
//! (and `run --bundle`'s second console), the disk, the network device,
//! the entropy device and the socket device.
//! Each creates the device, hands it to `DeviceManager::attach_virtio`
//! with the extra events its work waits on, and keeps its typed handle.

use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryMmap;

use super::super::output::GuestOutput;
use super::super::stdin::ConsoleInput;
use super::super::virtio::block::Block;
use super::super::virtio::block::disk::DiskImage;
use super::super::virtio::console::{self as virtio_console, Console};
use super::super::virtio::net::Net;
use super::super::virtio::net::events::TapEvents;
use super::super::virtio::rng::Rng;
use super::super::virtio::vsock::{Vsock, VsockConfig, events::VsockSockets};
use super::{
    Attached, DeviceError, DeviceManager, VirtioConsole, VirtioHandle, VirtioSlot, VirtioVsock,
    VmWiring, clone_fd, eventfd,
};

impl DeviceManager {
    /// The virtio console on the guest output; stdin feeds it. With stdin
    /// a terminal, its size is offered (F_SIZE).
    pub fn attach_virtio_console(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        output: &GuestOutput,
    ) -> Result<(), DeviceError> {
        self.attach_virtio_console_port(vm, mem, output, true, virtio_console::terminal_size())
            .map(drop)
    }

    /// The same with a given terminal size (a restore offers the saved one).
    pub fn attach_virtio_console_sized(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        output: &GuestOutput,
        size: Option<(u16, u16)>,
    ) -> Result<(), DeviceError> {
        self.attach_virtio_console_port(vm, mem, output, true, size)
            .map(drop)
    }

    /// A virtio console on `output`; stdin feeds it when `stdin` is true.
    /// `run --bundle` adds a second one (hvc1) for the workload's stderr,
    /// whose input carries the VMM's control lines. Returns its transport.
    pub fn attach_virtio_console_port(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        output: &GuestOutput,
        stdin: bool,
        size: Option<(u16, u16)>,
    ) -> Result<VirtioConsole, DeviceError> {
        const WHAT: &str = "the virtio console";
        let console = Console::new(output.handle(), size)
            .map_err(|e| DeviceError::Device(WHAT, e.to_string()))?;
        let drained = clone_fd(WHAT, console.input_drained())?;
        // Besides its queues, the console works when stdout has room again
        // (held output) and when it stopped on its budget.
        let events = vec![
            clone_fd(WHAT, output.handle().space_event())?,
            clone_fd(WHAT, console.resume_event())?,
        ];
        let Attached {
            transport,
            base,
            gsi,
        } = self.attach_virtio(WHAT, vm, mem, console, events)?;
        if stdin {
            let input: Arc<Mutex<dyn ConsoleInput>> = transport.clone();
            self.console_input = Some((input, drained));
        }
        self.virtio.push(VirtioSlot {
            base,
            gsi,
            handle: VirtioHandle::Console(transport.clone()),
        });
        Ok(transport)
    }

    /// A virtio disk on the image `disk` (opened and locked by the caller,
    /// while files may still be opened).
    pub fn attach_virtio_block(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        disk: DiskImage,
    ) -> Result<(), DeviceError> {
        let Attached {
            transport,
            base,
            gsi,
        } = self.attach_virtio("a virtio disk", vm, mem, Block::new(disk), Vec::new())?;
        self.virtio.push(VirtioSlot {
            base,
            gsi,
            handle: VirtioHandle::Block(transport),
        });
        Ok(())
    }

    /// A virtio network device on `tap` (opened by the caller during the
    /// build), offering `mac` when given. Besides its queues, the event
    /// loop watches the tap and the device's own resume event.
    pub fn attach_virtio_net(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        tap: crate::host::tap::Tap,
        mac: Option<[u8; 6]>,
    ) -> Result<(), DeviceError> {
        const WHAT: &str = "a virtio network device";
        let tap_fd = std::os::fd::AsRawFd::as_raw_fd(&tap);
        let net = Net::new(tap, mac).map_err(|e| DeviceError::EventFd(WHAT, e))?;
        let events = vec![clone_fd(WHAT, net.resume_event())?];
        let Attached {
            transport,
            base,
            gsi,
        } = self.attach_virtio(WHAT, vm, mem, net, events)?;
        self.subscribers
            .push(Box::new(TapEvents::new(transport.clone(), tap_fd)));
        self.virtio.push(VirtioSlot {
            base,
            gsi,
            handle: VirtioHandle::Net(transport),
        });
        Ok(())
    }

    /// The entropy device (virtio-rng), filled from the host's getrandom(2).
    pub fn attach_virtio_rng(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
    ) -> Result<(), DeviceError> {
        const WHAT: &str = "the virtio entropy device";
        let rng = Rng::new().map_err(|e| DeviceError::Device(WHAT, e.to_string()))?;
        // Besides its queue, it works when a round stopped on its budget.
        let events = vec![clone_fd(WHAT, rng.resume_event())?];
        let Attached {
            transport,
            base,
            gsi,
        } = self.attach_virtio(WHAT, vm, mem, rng, events)?;
        self.virtio.push(VirtioSlot {
            base,
            gsi,
            handle: VirtioHandle::Rng(transport),
        });
        Ok(())
    }

    /// The virtio socket device on the listener bound during the build
    /// (`vsock::host::listen`); its sockets get a subscriber of their own.
    pub fn attach_virtio_vsock(
        &mut self,
        vm: &impl VmWiring,
        mem: &GuestMemoryMmap,
        config: &VsockConfig,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<(), DeviceError> {
        const WHAT: &str = "the virtio socket device";
        let wake = eventfd(WHAT)?;
        let device = Vsock::new(config, listener, clone_fd(WHAT, &wake)?);
        let Attached {
            transport,
            base,
            gsi,
        } = self.attach_virtio(WHAT, vm, mem, device, Vec::new())?;
        let sockets = VsockSockets::new(transport.clone(), wake)
            .map_err(|e| DeviceError::Device(WHAT, format!("its request timer: {e}")))?;
        self.subscribers.push(Box::new(sockets));
        self.virtio.push(VirtioSlot {
            base,
            gsi,
            handle: VirtioHandle::Vsock(transport),
        });
        Ok(())
    }

    /// The virtio socket device, if attached.
    pub fn virtio_vsock(&self) -> Option<&VirtioVsock> {
        self.virtio.iter().find_map(|s| match &s.handle {
            VirtioHandle::Vsock(v) => Some(v),
            _ => None,
        })
    }
}
