//! virtio devices on the MMIO transport, following the virtio 1.2 spec
//! (<https://docs.oasis-open.org/virtio/virtio/v1.2/virtio-v1.2.html>).
//!
//! The pieces, each in its own file:
//! - `regs.rs`: the 4 KiB register window's layout (4.2.2).
//! - `mmio.rs`: the transport. The guest's driver reads and writes the
//!   registers; `mmio_setup.rs` holds the state machine that decides which
//!   writes the spec allows (2.1, 3.1.1), builds the virtqueues when the
//!   driver says they are ready and moves the device status.
//! - `queue.rs`: walking a descriptor chain (2.7.5) that a hostile driver
//!   wrote, with every length, address and direction checked.
//! - `console.rs`: the virtio console, device id 3 (5.3).
//! - `block/`: the virtio disk, device id 2 (5.2).
//! - `net/`: the network device on a host tap, device id 1 (5.1).
//! - `rng.rs`: the entropy device, device id 4 (5.4).
//! - `vsock/`: the virtio socket device, id 19 (5.10), on host Unix sockets.
//! - `events.rs`: the event-manager subscriber that does the device work on
//!   the main thread when a queue notification (ioeventfd) or a device event
//!   arrives. vCPU threads only touch registers.
//! - `crate::devices::manager` gives each device its window, GSI (irqfd),
//!   ioeventfds and `virtio_mmio.device=` command-line entry.
//!
//! On Linux with `console=hvc0`, kernel messages printed before the virtio
//! console driver has probed are lost (hvc0 has no early backend); the 8250
//! stays present for those (`console=ttyS0 console=hvc0`, or `earlycon`).
//!
//! The device model (rings, descriptors, the used ring) is rust-vmm's
//! `virtio-queue`; the constants come from `virtio-bindings` where it has
//! them.

pub mod block;
pub mod console;
pub mod events;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod regs;
pub mod rng;
pub mod vsock;

use vm_memory::GuestMemoryMmap;

pub use virtio_queue::Queue;

/// Device status bits, written by the driver in this order (virtio 1.2, 2.1).
pub mod status {
    use virtio_bindings::virtio_config as c;

    /// The guest OS has noticed the device.
    pub const ACKNOWLEDGE: u32 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE;
    /// The guest OS knows how to drive the device.
    pub const DRIVER: u32 = c::VIRTIO_CONFIG_S_DRIVER;
    /// The driver has acknowledged the features it understands; feature
    /// negotiation is complete (if the device keeps the bit set).
    pub const FEATURES_OK: u32 = c::VIRTIO_CONFIG_S_FEATURES_OK;
    /// The driver is set up and ready to drive the device: it is live.
    pub const DRIVER_OK: u32 = c::VIRTIO_CONFIG_S_DRIVER_OK;
    /// Set by the device: it hit an error it cannot recover from; the driver
    /// must reset it (2.1.2).
    pub const DEVICE_NEEDS_RESET: u32 = c::VIRTIO_CONFIG_S_NEEDS_RESET;
    /// Set by the driver: it gave up on the device.
    pub const FAILED: u32 = c::VIRTIO_CONFIG_S_FAILED;
}

/// VIRTIO_F_VERSION_1 (feature bit 32, virtio 1.2, 6): the device and driver
/// speak the modern (1.x) interface. A modern MMIO device must offer it and
/// refuse a driver that does not accept it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// InterruptStatus bit: a used buffer was added to a virtqueue (4.2.2).
pub const INT_VRING: u32 = virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_VRING;
/// InterruptStatus bit: the device configuration changed (4.2.2).
pub const INT_CONFIG: u32 = virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_CONFIG;

/// The set of queues that got used buffers in one round of processing,
/// as a bit mask (bit n = queue n).
pub type UsedQueues = u32;

/// Why a device stopped working: the transport sets DEVICE_NEEDS_RESET.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The driver's ring is unusable (e.g. the available index moved by more
    /// than the queue size, 2.7.6), or the used ring could not be written.
    #[error("virtqueue {0}: {1}")]
    Queue(usize, virtio_queue::Error),
    /// Guest memory that was checked before could not be accessed.
    #[error("guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// A device behind the MMIO transport: what it offers and how it processes
/// its queues. The transport owns the register state machine; the device
/// only sees queues once the driver has made them ready and set DRIVER_OK.
pub trait VirtioDevice: Send {
    /// The virtio device id (virtio 1.2, 5): 3 for a console.
    fn device_type(&self) -> u32;
    /// QueueNumMax of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits offered (including VIRTIO_F_VERSION_1).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space (offset from 0x100).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// DRIVER_OK was set with these negotiated features.
    fn activate(&mut self, features: u64);
    /// The driver reset the device: drop all queue state.
    fn reset(&mut self);
    /// Does whatever work is pending on the live queues (`None` = not
    /// made ready by the driver), bounded by the queue sizes. Returns the
    /// queues that got used buffers.
    fn process(
        &mut self,
        queues: &mut [Option<Queue>],
        mem: &GuestMemoryMmap,
    ) -> Result<UsedQueues, DeviceError>;
}
