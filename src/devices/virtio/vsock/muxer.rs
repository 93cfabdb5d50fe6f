//! The host side of the vsock device, with Firecracker's protocol: it
//! listens on PATH for host clients (`CONNECT <port>\n`, answered
//! `OK <host port>\n` once the guest accepts), connects to `PATH_<port>`
//! for guest connections, and turns guest packets into socket I/O and
//! socket I/O into packets for the guest.
//!
//! Everything is bounded: at most `MAX_CONNS` connections (open, waiting
//! for their CONNECT line, or closed and not yet out of the event loop),
//! `BUF_ALLOC` buffered bytes each, `MAX_RSTS` queued resets for packets
//! that have no connection. What does not fit is refused and counted.
//! No `HashMap`: a driver reset runs `reset_all` on a vCPU thread, whose
//! seccomp filter has no `getrandom` for a new hasher.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use vm_memory::GuestMemoryMmap;

#[path = "muxer_sockets.rs"]
mod sockets;

use super::VsockStats;
use super::conn::{Conn, State};
use super::host;
use super::packet::{self, HDR_LEN, HOST_CID, Header, TYPE_STREAM, op, shutdown};
use crate::devices::virtio::queue::{Segment, total_len};

/// Most connections at once (Firecracker allows 1023).
pub const MAX_CONNS: usize = 1024;
/// Most resets queued for packets without a connection.
pub const MAX_RSTS: usize = 1024;
/// First host port given to host-initiated connections (as Firecracker's).
pub const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Clients accepted per listener event (bounded work per wake-up).
const ACCEPTS_PER_EVENT: usize = 16;
/// How long a host connection waits for the guest to answer its REQUEST
/// (Firecracker's CONN_REQUEST_TIMEOUT_MS is 2 s); then it is closed, the
/// guest reset and the timeout counted.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// (host port, guest port).
type Key = (u32, u32);

/// The host side of one vsock device.
pub struct Muxer {
    cid: u64,
    path: PathBuf,
    listener: UnixListener,
    /// Host clients that have not finished their CONNECT line.
    waiting: BTreeMap<RawFd, (UnixStream, Vec<u8>)>,
    conns: BTreeMap<Key, Conn>,
    by_fd: BTreeMap<RawFd, Key>,
    /// Connections that may have a packet for the guest, round robin.
    ready: VecDeque<Key>,
    /// Resets for guest packets that had no connection.
    rsts: VecDeque<Header>,
    /// Closed sockets the event loop must stop watching before they close.
    closed: Vec<RawFd>,
    graveyard: Vec<Box<dyn Send>>,
    next_port: u32,
    /// Counters.
    pub stats: VsockStats,
    /// Socket interest may have changed since the last `interest()`.
    pub dirty: bool,
}

impl Muxer {
    /// The host side for guest `cid`, on the bound `listener` at `path`.
    pub fn new(cid: u64, path: PathBuf, listener: UnixListener) -> Muxer {
        Muxer {
            cid,
            path,
            listener,
            waiting: BTreeMap::new(),
            conns: BTreeMap::new(),
            by_fd: BTreeMap::new(),
            ready: VecDeque::new(),
            rsts: VecDeque::new(),
            closed: Vec::new(),
            graveyard: Vec::new(),
            next_port: FIRST_LOCAL_PORT,
            stats: VsockStats::default(),
            dirty: true,
        }
    }

    /// The guest's context id.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// The host socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Open connections (established or being set up).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn in_use(&self) -> usize {
        self.conns.len() + self.waiting.len() + self.graveyard.len()
    }

    fn bury(&mut self, fd: RawFd, what: Box<dyn Send>) {
        self.closed.push(fd);
        self.graveyard.push(what);
        self.dirty = true;
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            let fd = c.stream.as_raw_fd();
            self.by_fd.remove(&fd);
            self.bury(fd, Box::new(c));
        }
    }

    fn mark_ready(&mut self, key: Key) {
        if !self.ready.contains(&key) {
            self.ready.push_back(key);
        }
        self.dirty = true;
    }

    /// Drops every connection (driver reset, transport reset).
    pub fn reset_all(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        for (fd, w) in std::mem::take(&mut self.waiting) {
            self.bury(fd, Box::new(w.0));
        }
        self.ready.clear();
        self.rsts.clear();
    }

    fn queue_rst(&mut self, h: &Header) {
        if self.rsts.len() >= MAX_RSTS {
            self.stats.dropped_rsts += 1;
            return;
        }
        self.rsts.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            kind: TYPE_STREAM,
            op: op::RST,
            ..Header::default()
        });
    }

    /// One packet from the guest's transmit queue, in the checked
    /// device-readable `segs`. Every length and credit is checked before
    /// any byte is copied.
    pub fn guest_packet(&mut self, mem: &GuestMemoryMmap, segs: &[Segment]) {
        let Some(h) = packet::read_header(mem, segs) else {
            self.stats.bad_packets += 1;
            return;
        };
        self.stats.tx_packets += 1;
        if h.src_cid != self.cid || h.dst_cid != HOST_CID {
            self.stats.wrong_cid += 1;
            return;
        }
        let key = (h.dst_port, h.src_port);
        let payload_room = total_len(segs).saturating_sub(HDR_LEN as u32);
        let bad_len =
            h.len > packet::MAX_PAYLOAD || h.len > payload_room || (h.len > 0 && h.op != op::RW);
        let known_op = (op::REQUEST..=op::CREDIT_REQUEST).contains(&h.op);
        if h.kind != TYPE_STREAM || bad_len || !known_op {
            self.stats.bad_packets += 1;
            self.abort(key, &h);
            return;
        }
        if h.op == op::REQUEST {
            return self.guest_connect(key, &h);
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            if h.op != op::RST {
                self.queue_rst(&h);
            }
            return;
        };
        conn.note_peer_credit(&h);
        match h.op {
            op::RESPONSE if conn.state == State::Requested => {
                conn.state = State::Established;
                conn.queue_ok();
                self.flush(key);
            }
            op::RST => self.remove(key),
            op::SHUTDOWN => {
                conn.peer_done_receiving |= h.flags & shutdown::RCV != 0;
                conn.peer_done_sending |= h.flags & shutdown::SEND != 0;
                if conn.peer_done_receiving && conn.peer_done_sending {
                    conn.state = State::Closing;
                }
                self.flush(key);
            }
            op::RW if conn.state == State::Established && !conn.peer_done_sending => {
                if !conn.fits_our_credit(h.len) {
                    self.stats.credit_violations += 1;
                    return self.abort(key, &h);
                }
                self.guest_data(key, mem, segs, h.len);
            }
            op::CREDIT_UPDATE => {}
            op::CREDIT_REQUEST => conn.owed.credit_update = true,
            _ => {
                self.stats.bad_packets += 1;
                return self.abort(key, &h);
            }
        }
        self.mark_ready(key);
    }

    /// A bad packet: its connection (if any) is reset and dropped.
    fn abort(&mut self, key: Key, h: &Header) {
        match self.conns.get_mut(&key) {
            Some(c) => {
                c.owed.rst = true;
                self.mark_ready(key);
            }
            None if h.op != op::RST => self.queue_rst(h),
            None => {}
        }
    }

    fn guest_connect(&mut self, key: Key, h: &Header) {
        if self.conns.contains_key(&key) {
            self.stats.bad_packets += 1;
            return self.abort(key, h);
        }
        if self.in_use() >= MAX_CONNS {
            self.stats.refused_limit += 1;
            return self.queue_rst(h);
        }
        match host::connect(&self.path, h.dst_port) {
            Ok(stream) => {
                let mut c = Conn::new(stream, self.cid, key.0, key.1);
                c.note_peer_credit(h);
                c.state = State::Established;
                c.owed.response = true;
                self.by_fd.insert(c.stream.as_raw_fd(), key);
                self.conns.insert(key, c);
                self.stats.guest_connections += 1;
                self.mark_ready(key);
            }
            Err(_) => {
                self.stats.refused_host += 1;
                self.queue_rst(h);
            }
        }
    }

    fn guest_data(&mut self, key: Key, mem: &GuestMemoryMmap, segs: &[Segment], len: u32) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        self.stats.tx_bytes += u64::from(len);
        let off = HDR_LEN as u64;
        let mut written = 0u32;
        if !c.has_pending() {
            match packet::chain_to_socket(mem, segs, off, len, &mut &c.stream) {
                Ok(n) => written = n as u32,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    c.owed.rst = true;
                    return;
                }
            }
        }
        let mut rest = Vec::new();
        packet::read_bytes(
            mem,
            segs,
            off + u64::from(written),
            len - written,
            &mut rest,
        );
        c.received(len, written, &rest);
    }

    /// Writes a connection's buffered guest data to its socket.
    fn flush(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        // A host socket that is gone, or a closing connection whose data
        // all reached the host: reset.
        let failed = c.flush().is_err();
        if failed || (c.state == State::Closing && !c.has_pending()) {
            c.owed.rst = true;
        }
        self.mark_ready(key);
    }

    /// Whether a packet for the guest may be waiting.
    pub fn has_rx(&self) -> bool {
        !self.rsts.is_empty() || !self.ready.is_empty()
    }

    /// Writes the next packet for the guest into the device-writable
    /// `segs`; its length, or `None` if there was nothing to send after all.
    pub fn fill_rx(&mut self, mem: &GuestMemoryMmap, segs: &[Segment]) -> Option<u32> {
        let room = total_len(segs);
        // Room for a header and at least one byte: a header-only buffer
        // could carry control packets but never data, and data would wait
        // behind it for ever.
        if room <= HDR_LEN as u32 {
            self.stats.bad_chains += 1;
            return Some(0);
        }
        if let Some(h) = self.rsts.pop_front() {
            return Some(self.put(mem, segs, &h, 0));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if let Some(h) = c.take_owed() {
                let rst = h.op == op::RST;
                if rst {
                    self.remove(key);
                } else {
                    self.ready.push_back(key);
                }
                return Some(self.put(mem, segs, &h, 0));
            }
            if !(c.readable && c.may_send_data()) {
                continue; // nothing to say until an event or credit comes
            }
            let max = c.next_payload().min(room - HDR_LEN as u32);
            let off = HDR_LEN as u64;
            match packet::socket_to_chain(mem, segs, off, max, &mut &c.stream) {
                Ok(0) => {
                    c.host_finished();
                    c.readable = false;
                    self.ready.push_back(key);
                    let h = c.take_owed()?;
                    return Some(self.put(mem, segs, &h, 0));
                }
                Ok(n) => {
                    let n = n as u32;
                    c.sent_to_guest(n);
                    let mut h = c.header(op::RW);
                    h.len = n;
                    self.ready.push_back(key);
                    self.stats.rx_bytes += u64::from(n);
                    return Some(self.put(mem, segs, &h, n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    c.readable = false;
                    self.dirty = true;
                }
                Err(_) => {
                    c.owed.rst = true;
                    self.ready.push_back(key);
                }
            }
        }
        None
    }

    fn put(&mut self, mem: &GuestMemoryMmap, segs: &[Segment], h: &Header, len: u32) -> u32 {
        packet::write_bytes(mem, segs, 0, &h.to_bytes());
        self.stats.rx_packets += 1;
        self.dirty = true;
        HDR_LEN as u32 + len
    }
}
