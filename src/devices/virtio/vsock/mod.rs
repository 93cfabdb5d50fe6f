//! The virtio socket device (virtio 1.2, 5.10; device id 19) with
//! Firecracker's host side: guest AF_VSOCK stream sockets become Unix
//! socket connections on the host (`muxer.rs` has the protocol).
//!
//! - `packet.rs`: the packet header and checked copies between chains,
//!   host memory and sockets.
//! - `conn.rs`: one connection: state, credit, bounded buffer.
//! - `muxer.rs`: the host side: listener, connections, what goes to the guest.
//! - `host.rs`: the Unix sockets: bind (build stage), accept, connect.
//! - `events.rs`: the event-loop subscriber for the sockets.
//!
//! Queues: 0 receive (device to guest), 1 transmit (guest to device),
//! 2 event. The transmit queue is drained whole on every notification
//! (one queue's worth per round): a guest packet is handled at once,
//! its data written to the host socket or buffered within the credit we
//! gave. Packets to the guest wait in the muxer until receive buffers come.
//!
//! Snapshots: the device's state is its configuration (`VsockSnapshot`:
//! cid and socket path; the transport saves its queues). Connections are
//! not saved, as in Firecracker: a restored device binds PATH again, and
//! `transport_reset` drops every connection and sends the guest
//! VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, so its sockets see the reset.

pub mod conn;
pub mod events;
pub mod host;
pub mod muxer;
pub mod packet;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use self::muxer::Muxer;
use super::queue::{self, Direction};
use super::{DeviceError, UsedQueues, VIRTIO_F_VERSION_1, VirtioDevice};

pub use self::host::VsockConfig;

/// The virtio device id of a socket device.
pub const DEVICE_ID: u32 = 19;
/// Queue sizes: receive, transmit, event.
pub const QUEUE_SIZES: [u16; 3] = [256, 256, 16];
/// Queue indices.
pub const RXQ: usize = 0;
/// The transmit queue.
pub const TXQ: usize = 1;
/// The event queue.
pub const EVQ: usize = 2;
/// The event a restored guest gets (5.10.6.5).
pub const EVENT_TRANSPORT_RESET: u32 = 0;

/// What the device did and refused, for `--stats`. Every drop is here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VsockStats {
    /// Packets from the guest (with a readable header).
    pub tx_packets: u64,
    /// Packets to the guest.
    pub rx_packets: u64,
    /// Payload bytes from the guest.
    pub tx_bytes: u64,
    /// Payload bytes to the guest.
    pub rx_bytes: u64,
    /// Connections host clients opened (CONNECT lines).
    pub host_connections: u64,
    /// Connections the guest opened to `PATH_<port>`.
    pub guest_connections: u64,
    /// Guest connections refused: nobody listens on `PATH_<port>`.
    pub refused_host: u64,
    /// Connections refused at the connection limit.
    pub refused_limit: u64,
    /// Chains that are not usable (broken, wrong direction, too short).
    pub bad_chains: u64,
    /// Packets with a bad header: type, length, operation, state.
    pub bad_packets: u64,
    /// Packets dropped for a source or destination cid not theirs.
    pub wrong_cid: u64,
    /// Data beyond the credit we gave (the connection is reset).
    pub credit_violations: u64,
    /// Host clients whose first line was not `CONNECT <port>`.
    pub bad_connect_lines: u64,
    /// Resets not sent (too many queued).
    pub dropped_rsts: u64,
    /// Failed accepts on the listener.
    pub accept_errors: u64,
    /// Transport-reset events delivered.
    pub transport_resets: u64,
    /// Host connections closed because the guest answered their REQUEST
    /// with neither RESPONSE nor RST in time (`muxer::REQUEST_TIMEOUT`).
    pub request_timeouts: u64,
}

/// What a snapshot keeps of a socket device (its connections are not
/// kept: the restored guest is sent a transport reset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockSnapshot {
    /// The guest's context id.
    pub cid: u64,
    /// The host socket path.
    pub socket: PathBuf,
}

impl VsockSnapshot {
    /// The `--vsock` configuration that rebuilds the device.
    pub fn config(&self) -> VsockConfig {
        VsockConfig {
            cid: self.cid,
            socket: self.socket.clone(),
        }
    }
}

/// A virtio socket device.
pub struct Vsock {
    muxer: Muxer,
    /// Wakes the socket subscriber: more work, or sockets to re-watch.
    wake: EventFd,
    reset_event_pending: bool,
}

impl Vsock {
    /// A device for guest `cid` on the bound `listener` at `config.socket`;
    /// `wake` is the socket subscriber's eventfd.
    pub fn new(config: &VsockConfig, listener: UnixListener, wake: EventFd) -> Vsock {
        Vsock {
            muxer: Muxer::new(config.cid, config.socket.clone(), listener),
            wake,
            reset_event_pending: false,
        }
    }

    /// Its configuration, for a snapshot.
    pub fn save_state(&self) -> VsockSnapshot {
        VsockSnapshot {
            cid: self.muxer.cid(),
            socket: self.muxer.path().to_path_buf(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> VsockStats {
        self.muxer.stats
    }

    /// The host side (the socket subscriber drives it).
    pub fn muxer(&mut self) -> &mut Muxer {
        &mut self.muxer
    }

    /// After a restore: every connection is gone; the guest is told with a
    /// TRANSPORT_RESET event on the event queue (5.10.6.5), sent at the
    /// next processing round (the caller then runs `process`).
    pub fn transport_reset(&mut self) {
        self.muxer.reset_all();
        self.reset_event_pending = true;
        self.poke();
    }

    fn poke(&self) {
        // Fails only if the counter would overflow: a wake-up is pending then.
        let _ = self.wake.write(1);
    }

    fn process_tx(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, DeviceError> {
        let qerr = |e| DeviceError::Queue(TXQ, e);
        let mut used = false;
        for _ in 0..q.size() {
            let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
                return Ok(used);
            };
            let head = chain.head_index();
            match queue::buffers(chain, Direction::DeviceReads, q.size(), mem) {
                Ok(segs) => self.muxer.guest_packet(mem, &segs),
                Err(_) => self.muxer.stats.bad_chains += 1,
            }
            q.add_used(mem, head, 0).map_err(qerr)?;
            used = true;
        }
        // A full queue's worth: come back for the rest.
        self.poke();
        Ok(used)
    }

    fn process_rx(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, DeviceError> {
        let qerr = |e| DeviceError::Queue(RXQ, e);
        let mut used = false;
        for _ in 0..q.size() {
            if !self.muxer.has_rx() {
                return Ok(used);
            }
            let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
                // No buffers: the guest's notification brings us back.
                return Ok(used);
            };
            let head = chain.head_index();
            let len = match queue::buffers(chain, Direction::DeviceWrites, q.size(), mem) {
                Ok(segs) => match self.muxer.fill_rx(mem, &segs) {
                    Some(n) => n,
                    None => {
                        q.go_to_previous_position();
                        return Ok(used);
                    }
                },
                Err(_) => {
                    self.muxer.stats.bad_chains += 1;
                    0
                }
            };
            q.add_used(mem, head, len).map_err(qerr)?;
            used = true;
        }
        if self.muxer.has_rx() {
            self.poke();
        }
        Ok(used)
    }

    fn process_event(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, DeviceError> {
        let qerr = |e| DeviceError::Queue(EVQ, e);
        if !self.reset_event_pending {
            return Ok(false);
        }
        let Some(chain) = queue::pop(q, mem).map_err(qerr)? else {
            return Ok(false);
        };
        let head = chain.head_index();
        let len = match queue::buffers(chain, Direction::DeviceWrites, q.size(), mem) {
            Ok(segs) if queue::total_len(&segs) >= 4 => {
                packet::write_bytes(mem, &segs, 0, &EVENT_TRANSPORT_RESET.to_le_bytes());
                self.reset_event_pending = false;
                self.muxer.stats.transport_resets += 1;
                4
            }
            _ => {
                self.muxer.stats.bad_chains += 1;
                self.poke();
                0
            }
        };
        q.add_used(mem, head, len).map_err(qerr)?;
        Ok(true)
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        // Stream sockets only: no VIRTIO_VSOCK_F_SEQPACKET.
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // guest_cid, a 64-bit little-endian field (5.10.4).
        let config = self.muxer.cid().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| config.get(a)).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The configuration space is read-only.
    }
    fn activate(&mut self, _features: u64) {}
    fn reset(&mut self) {
        self.muxer.reset_all();
        self.reset_event_pending = false;
        self.poke();
    }
    fn process(
        &mut self,
        queues: &mut [Option<Queue>],
        mem: &GuestMemoryMmap,
    ) -> Result<UsedQueues, DeviceError> {
        let mut used = 0;
        if let Some(Some(q)) = queues.get_mut(TXQ) {
            if self.process_tx(q, mem)? {
                used |= 1 << TXQ;
            }
        }
        if let Some(Some(q)) = queues.get_mut(EVQ) {
            if self.process_event(q, mem)? {
                used |= 1 << EVQ;
            }
        }
        if let Some(Some(q)) = queues.get_mut(RXQ) {
            if self.process_rx(q, mem)? {
                used |= 1 << RXQ;
            }
        }
        if self.muxer.dirty {
            self.poke();
        }
        Ok(used)
    }
}

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod hostile_tests;
#[cfg(test)]
#[path = "tests.rs"]
mod tests;
