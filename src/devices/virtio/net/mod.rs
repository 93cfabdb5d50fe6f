//! The virtio network device (virtio 1.2, 5.1; device id 1) on a host tap:
//! one receive queue and one transmit queue, frames carried with the
//! 12-byte `virtio_net_hdr_v1` in front, which the tap understands too
//! (IFF_VNET_HDR), so checksum and segmentation offloads pass through
//! untouched. Offered as Firecracker offers them: MAC (when given),
//! MRG_RXBUF, CSUM / GUEST_CSUM, HOST_ and GUEST_ TSO4, TSO6 and UFO; the
//! tap is told which offloads the guest accepted (TUNSETOFFLOAD) once the
//! driver is live. No control queue, multiqueue, EVENT_IDX or rate limits.
//!
//! - `rx.rs`: tap -> guest. A frame read from the tap waits (one at most)
//!   until the guest has buffers for it; meanwhile the tap is not read, so
//!   the kernel's own queue for the tap bounds what waits, not us.
//! - `tx.rs`: guest -> tap, each header checked before the tap sees it.
//! - `events.rs`: the tap's fd in the event loop (edge-triggered).
//!
//! Every bad thing a guest can do ends in a dropped frame or an empty
//! completion and a count in `NetStats` (`--stats`), never a panic.

pub mod events;
mod rx;
pub mod state;
mod tx;

pub use tx::{HeaderError, check_header};

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;

use virtio_bindings::virtio_net as n;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::queue::Segment;
use super::{DeviceError, Queue, UsedQueues, VIRTIO_F_VERSION_1, VirtioDevice};
use crate::host::tap::{Tap, VNET_HDR_LEN};

/// The virtio device id of a network device.
pub const DEVICE_ID: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_NET;
/// receiveq1 and transmitq1.
pub const QUEUE_SIZES: [u16; 2] = [256, 256];
/// The receive queue's index.
pub const RXQ: usize = 0;
/// The transmit queue's index.
pub const TXQ: usize = 1;
/// The largest frame with its header: a 64 KiB GSO packet, its Ethernet
/// header and the vnet header (Firecracker's bound too).
pub const MAX_FRAME: usize = VNET_HDR_LEN + 65550;
/// Frames moved each way in one round of work before the device yields to
/// the rest of the event loop (it wakes itself to go on).
pub const BUDGET: usize = 256;

/// `--net`: where the device's frames go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetBackendConfig {
    /// An existing tap, by name (`tap=NAME`).
    Tap(String),
    /// A tap created for this VM, its host side at `addr/prefix` (`ip=`).
    Create {
        /// The host side's address.
        addr: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
}

/// One `--net` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The tap.
    pub backend: NetBackendConfig,
    /// The guest's MAC address (VIRTIO_NET_F_MAC); without it the guest
    /// makes up its own.
    pub mac: Option<[u8; 6]>,
}

/// Parses `aa:bb:cc:dd:ee:ff`; a multicast address (bit 0 of the first
/// byte) cannot be a NIC's.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let bad = || format!("mac={text:?}: expected six hex bytes such as 06:00:0a:00:02:02");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("mac={text:?}: a multicast address"));
    }
    Ok(mac)
}

/// Opens the tap `config` names (during the build: it opens files and,
/// for `ip=`, needs CAP_NET_ADMIN). The message names the option.
pub fn open_tap(config: &NetConfig) -> Result<Tap, String> {
    match &config.backend {
        NetBackendConfig::Tap(name) => {
            let what = format!("--net tap={name}");
            match crate::host::tap::interface_exists(name) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "{what}: no such interface in this network namespace (create it first, e.g. `ip tuntap add {name} mode tap`)"
                    ));
                }
                Err(e) => return Err(format!("{what}: {e}")),
            }
            Tap::open(name).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => format!(
                    "{what}: not allowed to attach to it (it must belong to this user or group, or tinyvmm needs CAP_NET_ADMIN): {e}"
                ),
                Some(libc::EBUSY) => format!("{what}: in use by another process: {e}"),
                Some(libc::EINVAL) => format!("{what}: not a tap device: {e}"),
                _ => format!("{what}: {e}"),
            })
        }
        NetBackendConfig::Create { addr, prefix } => {
            let what = format!("--net ip={addr}/{prefix}");
            Tap::create_with_address(*addr, *prefix).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => {
                    format!("{what}: creating a tap needs CAP_NET_ADMIN: {e}")
                }
                _ => format!("{what}: {e}"),
            })
        }
    }
}

/// What moves frames for the device: the tap, or a test double.
pub trait Backend: Send {
    /// One frame with its vnet header into `buf`; `WouldBlock` when none.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// One frame with its vnet header.
    fn send(&mut self, frame: &[u8]) -> io::Result<usize>;
    /// The offloads (TUN_F_*) the kernel may use on frames for the guest.
    fn set_offload(&mut self, flags: u32) -> io::Result<()>;
}

impl Backend for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut &*self, buf)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut &*self, frame)
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        Tap::set_offload(self, flags)
    }
}

/// What the device has done and dropped, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames given to the guest, and their bytes (without the header).
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the guest sent to the tap.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Rounds that ended with a frame waiting for guest receive buffers
    /// (the tap is not read meanwhile).
    pub rx_waits: u64,
    /// Frames from the tap dropped: no guest buffer chain could hold them,
    /// or shorter than a vnet header.
    pub rx_dropped: u64,
    /// Frames from the guest dropped: shorter than a header or longer
    /// than `MAX_FRAME`.
    pub tx_bad_length: u64,
    /// Frames from the guest dropped for a header the device refuses
    /// (flags, GSO type not negotiated, checksum offsets out of the frame).
    pub tx_bad_header: u64,
    /// Frames the tap refused (the kernel's own checks), or tap errors.
    pub tap_errors: u64,
    /// Chains completed unused: loops, bad indices, buffers outside RAM or
    /// in the wrong direction.
    pub bad_chains: u64,
    /// The features the driver accepted.
    pub features: u64,
    /// The offloads (TUN_F_*) the tap was given, once live.
    pub offloads: u32,
}

/// A receive chain taken off the queue and not yet used.
struct RxChain {
    head: u16,
    segments: Vec<Segment>,
    len: u32,
}

/// A virtio network device on `B` (a tap).
pub struct Net<B: Backend = Tap> {
    backend: B,
    mac: Option<[u8; 6]>,
    acked: u64,
    offload_pending: bool,
    /// The frame read from the tap and not yet delivered: `rx_len` bytes.
    rx_frame: Vec<u8>,
    rx_len: usize,
    /// Receive chains taken off the queue, in order, not yet used: at most
    /// the queue size.
    rx_chains: VecDeque<RxChain>,
    tx_frame: Vec<u8>,
    resume: EventFd,
    stats: NetStats,
}

fn bit(b: u32) -> u64 {
    1 << b
}

impl<B: Backend> Net<B> {
    /// A device on `backend`, offering `mac` if given.
    pub fn new(backend: B, mac: Option<[u8; 6]>) -> io::Result<Self> {
        Ok(Net {
            backend,
            mac,
            acked: 0,
            offload_pending: false,
            rx_frame: vec![0; MAX_FRAME],
            rx_len: 0,
            rx_chains: VecDeque::new(),
            tx_frame: vec![0; MAX_FRAME],
            resume: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            stats: NetStats::default(),
        })
    }

    /// The backend (the tap).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (tests feed it).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Fires when the device stopped on its budget with work left: the
    /// event loop must call `process` again.
    pub fn resume_event(&self) -> &EventFd {
        &self.resume
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        NetStats {
            features: self.acked,
            ..self.stats
        }
    }

    fn has(&self, feature: u32) -> bool {
        self.acked & bit(feature) != 0
    }

    /// TUN_F_* for what the guest accepted: the kernel may then hand us
    /// frames with partial checksums or GSO (which need GUEST_CSUM).
    fn offload_flags(&self) -> u32 {
        if !self.has(n::VIRTIO_NET_F_GUEST_CSUM) {
            return 0;
        }
        let mut f = libc::TUN_F_CSUM;
        for (feature, flag) in [
            (n::VIRTIO_NET_F_GUEST_TSO4, libc::TUN_F_TSO4),
            (n::VIRTIO_NET_F_GUEST_TSO6, libc::TUN_F_TSO6),
            (n::VIRTIO_NET_F_GUEST_UFO, libc::TUN_F_UFO),
        ] {
            if self.has(feature) {
                f |= flag;
            }
        }
        f
    }
}

impl<B: Backend> VirtioDevice for Net<B> {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        let mac = if self.mac.is_some() {
            bit(n::VIRTIO_NET_F_MAC)
        } else {
            0
        };
        [
            n::VIRTIO_NET_F_CSUM,
            n::VIRTIO_NET_F_GUEST_CSUM,
            n::VIRTIO_NET_F_GUEST_TSO4,
            n::VIRTIO_NET_F_GUEST_TSO6,
            n::VIRTIO_NET_F_GUEST_UFO,
            n::VIRTIO_NET_F_HOST_TSO4,
            n::VIRTIO_NET_F_HOST_TSO6,
            n::VIRTIO_NET_F_HOST_UFO,
            n::VIRTIO_NET_F_MRG_RXBUF,
        ]
        .iter()
        .fold(VIRTIO_F_VERSION_1 | mac, |f, &b| f | bit(b))
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // 5.1.4: mac[6], then status and max_virtqueue_pairs, which need
        // features not offered (read as 0).
        let mut config = [0u8; 12];
        if let Some(mac) = self.mac {
            config[..6].copy_from_slice(&mac);
        }
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| config.get(a)).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The MAC is writable only in legacy devices (5.1.4.2): ignored.
    }
    fn activate(&mut self, features: u64) {
        // On a vCPU thread: the tap ioctl waits for the event loop.
        self.acked = features;
        self.offload_pending = true;
    }
    fn reset(&mut self) {
        if self.rx_len > 0 {
            self.stats.rx_dropped += 1;
        }
        self.rx_len = 0;
        self.rx_chains.clear();
        self.acked = 0;
        self.offload_pending = false;
    }
    fn process(
        &mut self,
        queues: &mut [Option<Queue>],
        mem: &GuestMemoryMmap,
    ) -> Result<UsedQueues, DeviceError> {
        if self.offload_pending {
            self.offload_pending = false;
            let flags = self.offload_flags();
            match self.backend.set_offload(flags) {
                Ok(()) => self.stats.offloads = flags,
                Err(e) => {
                    self.stats.tap_errors += 1;
                    crate::say!("tinyvmm: virtio-net: the tap refused offloads {flags:#x}: {e}");
                }
            }
        }
        let mut used: UsedQueues = 0;
        let mut more = false;
        if let Some(Some(q)) = queues.get_mut(TXQ) {
            let (u, m) = self
                .transmit(q, mem)
                .map_err(|e| DeviceError::Queue(TXQ, e))?;
            used |= u32::from(u) << TXQ;
            more |= m;
        }
        if let Some(Some(q)) = queues.get_mut(RXQ) {
            let (u, m) = self
                .receive(q, mem)
                .map_err(|e| DeviceError::Queue(RXQ, e))?;
            used |= u32::from(u) << RXQ;
            more |= m;
        }
        if more {
            // Fails only if the counter would overflow: a wake-up is pending then.
            let _ = self.resume.write(1);
        }
        Ok(used)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
