//! The virtio-mmio register window, version 2 (virtio 1.2, 4.2.2, table
//! "MMIO Device Register Layout"). Offsets 0x000-0x0ff are 32-bit registers
//! that must be accessed 32 bits wide and aligned (4.2.2.2); the device's
//! own configuration space starts at 0x100.

/// "virt" in little endian (4.2.2, MagicValue).
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// The modern MMIO interface (4.2.2, Version; 1 was the legacy one).
pub const MMIO_VERSION: u32 = 2;
/// What VendorID reads: any value will do; this one spells "tvmm".
pub const VENDOR_TVMM: u32 = 0x6d6d_7674;

// Register offsets, from the Linux uapi header `virtio_mmio.h`.
use virtio_bindings::virtio_mmio as m;

/// R: 0x74726976.
pub const MAGIC: u64 = m::VIRTIO_MMIO_MAGIC_VALUE as u64;
/// R: 2.
pub const VERSION: u64 = m::VIRTIO_MMIO_VERSION as u64;
/// R: the device type (5).
pub const DEVICE_ID: u64 = m::VIRTIO_MMIO_DEVICE_ID as u64;
/// R: the vendor.
pub const VENDOR_ID: u64 = m::VIRTIO_MMIO_VENDOR_ID as u64;
/// R: 32 feature bits, the word chosen by DeviceFeaturesSel.
pub const DEVICE_FEATURES: u64 = m::VIRTIO_MMIO_DEVICE_FEATURES as u64;
/// W: which word DeviceFeatures shows.
pub const DEVICE_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DEVICE_FEATURES_SEL as u64;
/// W: 32 accepted feature bits, the word chosen by DriverFeaturesSel.
pub const DRIVER_FEATURES: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES as u64;
/// W: which word DriverFeatures sets.
pub const DRIVER_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES_SEL as u64;
/// W: the queue the Queue* registers refer to.
pub const QUEUE_SEL: u64 = m::VIRTIO_MMIO_QUEUE_SEL as u64;
/// R: largest size of the selected queue (0: no such queue).
pub const QUEUE_NUM_MAX: u64 = m::VIRTIO_MMIO_QUEUE_NUM_MAX as u64;
/// W: size of the selected queue.
pub const QUEUE_NUM: u64 = m::VIRTIO_MMIO_QUEUE_NUM as u64;
/// RW: 1 = the selected queue may be used.
pub const QUEUE_READY: u64 = m::VIRTIO_MMIO_QUEUE_READY as u64;
/// W: "queue n has new buffers" (normally caught by an ioeventfd).
pub const QUEUE_NOTIFY: u64 = m::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
/// R: why the interrupt was raised (INT_VRING, INT_CONFIG).
pub const INTERRUPT_STATUS: u64 = m::VIRTIO_MMIO_INTERRUPT_STATUS as u64;
/// W: clears InterruptStatus bits.
pub const INTERRUPT_ACK: u64 = m::VIRTIO_MMIO_INTERRUPT_ACK as u64;
/// RW: the device status (2.1); 0 resets.
pub const STATUS: u64 = m::VIRTIO_MMIO_STATUS as u64;
/// W: descriptor table address, low/high 32 bits.
pub const QUEUE_DESC_LOW: u64 = m::VIRTIO_MMIO_QUEUE_DESC_LOW as u64;
/// W: see QUEUE_DESC_LOW.
pub const QUEUE_DESC_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_DESC_HIGH as u64;
/// W: driver area (available ring) address.
pub const QUEUE_DRIVER_LOW: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_LOW as u64;
/// W: see QUEUE_DRIVER_LOW.
pub const QUEUE_DRIVER_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_HIGH as u64;
/// W: device area (used ring) address.
pub const QUEUE_DEVICE_LOW: u64 = m::VIRTIO_MMIO_QUEUE_USED_LOW as u64;
/// W: see QUEUE_DEVICE_LOW.
pub const QUEUE_DEVICE_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_USED_HIGH as u64;
/// W: shared memory region selector (we have none).
pub const SHM_SEL: u64 = m::VIRTIO_MMIO_SHM_SEL as u64;
/// R: shared memory region length; all-ones = no such region.
pub const SHM_LEN_LOW: u64 = m::VIRTIO_MMIO_SHM_LEN_LOW as u64;
/// R: see SHM_LEN_LOW.
pub const SHM_LEN_HIGH: u64 = m::VIRTIO_MMIO_SHM_LEN_HIGH as u64;
/// R: changes whenever the configuration space changes.
pub const CONFIG_GENERATION: u64 = m::VIRTIO_MMIO_CONFIG_GENERATION as u64;
/// RW: start of the device-specific configuration space.
pub const CONFIG: u64 = m::VIRTIO_MMIO_CONFIG as u64;

/// The registers a driver writes to bring a device up and run its queues,
/// STATUS twice (it drives everything): what the randomised transport
/// tests (tests/virtio_proptest.rs) and the `virtio_mmio` fuzz target
/// pick from most often.
pub const DRIVER_WRITES: [u64; 16] = [
    DEVICE_FEATURES_SEL,
    DRIVER_FEATURES,
    DRIVER_FEATURES_SEL,
    QUEUE_SEL,
    QUEUE_NUM,
    QUEUE_READY,
    QUEUE_NOTIFY,
    INTERRUPT_ACK,
    STATUS,
    STATUS,
    QUEUE_DESC_LOW,
    QUEUE_DESC_HIGH,
    QUEUE_DRIVER_LOW,
    QUEUE_DRIVER_HIGH,
    QUEUE_DEVICE_LOW,
    QUEUE_DEVICE_HIGH,
];
