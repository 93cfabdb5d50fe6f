//! One vsock stream connection between a guest port and a host Unix
//! socket: its state, the credit accounting of virtio 1.2, 5.10.6.3 in both
//! directions, and the bounded buffer of guest data the host socket has
//! not taken yet.
//!
//! Credit, as the spec and Firecracker have it: each side advertises
//! `buf_alloc` (its receive buffer) and `fwd_cnt` (bytes it has consumed,
//! ever, mod 2^32) in every header it sends. A sender may have at most
//! `buf_alloc - (tx_cnt - fwd_cnt)` bytes in flight. We advertise
//! `BUF_ALLOC` and hold at most that many bytes per connection: a guest
//! that sends more than its credit is hostile, its packet is dropped,
//! counted and the connection reset, before any byte is copied.

use std::collections::VecDeque;
use std::io;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::packet::{HOST_CID, Header, MAX_PAYLOAD, TYPE_STREAM, op, shutdown};

/// Our receive buffer per connection (`buf_alloc`), as Firecracker's
/// CONN_TX_BUF_SIZE: the most guest data we hold for a host socket that
/// does not read.
pub const BUF_ALLOC: u32 = 64 * 1024;
/// A credit update goes to the guest once its view of our free space
/// falls below this (Firecracker's CONN_CREDIT_UPDATE_THRESHOLD).
pub const CREDIT_THRESHOLD: u32 = 4 * 1024;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: we sent REQUEST and wait for the guest's RESPONSE.
    Requested,
    /// Data flows.
    Established,
    /// The guest shut down both directions: we flush what it sent to the
    /// host socket, then reset.
    Closing,
}

/// Control packets a connection owes the guest, sent before its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owed {
    /// REQUEST (host-initiated connection).
    pub request: bool,
    /// RESPONSE (guest-initiated connection accepted).
    pub response: bool,
    /// SHUTDOWN with these flags (0: none).
    pub shutdown: u32,
    /// CREDIT_UPDATE.
    pub credit_update: bool,
    /// RST: the connection ends once it is sent.
    pub rst: bool,
}

/// One connection.
pub struct Conn {
    /// The host side.
    pub stream: UnixStream,
    /// Its state.
    pub state: State,
    /// The host-side port (the guest's destination for guest-initiated
    /// connections, an allocated port for host-initiated ones).
    pub local_port: u32,
    /// The guest-side port.
    pub peer_port: u32,
    /// The guest's context id.
    pub guest_cid: u64,
    /// What it owes the guest.
    pub owed: Owed,
    /// Bytes for the host socket before any guest data ("OK <port>\n").
    preamble: Vec<u8>,
    /// Guest data the host socket has not taken yet (at most BUF_ALLOC).
    pending: VecDeque<u8>,
    /// Guest bytes written to the host socket, ever (mod 2^32).
    fwd_cnt: u32,
    /// The `fwd_cnt` the guest last heard from us.
    fwd_cnt_sent: u32,
    /// Guest bytes received, ever (mod 2^32).
    rx_cnt: u32,
    /// Host bytes sent to the guest, ever (mod 2^32).
    tx_cnt: u32,
    /// The guest's `buf_alloc` and `fwd_cnt`, from its last header.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The guest will send no more (SHUTDOWN SEND seen).
    pub peer_done_sending: bool,
    /// The guest will receive no more (SHUTDOWN RCV seen).
    pub peer_done_receiving: bool,
    /// The host socket reached end of stream (or hung up).
    pub host_eof: bool,
    /// The host socket may have data (an event said so; cleared when a read
    /// would block).
    pub readable: bool,
    /// The host socket hung up: no longer watched (it would fire forever);
    /// read until end of stream as the guest's credit allows.
    pub hung_up: bool,
    /// The write half of the host socket was shut down.
    host_write_shut: bool,
    /// Host-initiated: when the guest's RESPONSE stops being awaited.
    pub request_deadline: Option<Instant>,
}

impl Conn {
    /// A connection on `stream` between host port `local_port` and guest
    /// port `peer_port`; `hdr` is the guest's REQUEST, if it made one.
    pub fn new(stream: UnixStream, guest_cid: u64, local_port: u32, peer_port: u32) -> Conn {
        Conn {
            stream,
            state: State::Requested,
            local_port,
            peer_port,
            guest_cid,
            owed: Owed::default(),
            preamble: Vec::new(),
            pending: VecDeque::new(),
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            rx_cnt: 0,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            peer_done_sending: false,
            peer_done_receiving: false,
            host_eof: false,
            readable: false,
            hung_up: false,
            host_write_shut: false,
            request_deadline: None,
        }
    }

    /// Takes the guest's credit fields from a header it sent.
    pub fn note_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Bytes the guest can take now. A guest whose `fwd_cnt` runs ahead of
    /// what we sent (wrapping the difference past its `buf_alloc`) gets no
    /// credit: it only stalls its own connection.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether a guest RW payload of `len` bytes fits the credit we gave:
    /// the guest may have `BUF_ALLOC` bytes in flight beyond the `fwd_cnt`
    /// we last told it (it may have seen an older one: then it sent less).
    /// This also bounds what we buffer: `pending` is at most what is in flight.
    pub fn fits_our_credit(&self, len: u32) -> bool {
        let in_flight = self.rx_cnt.wrapping_sub(self.fwd_cnt_sent);
        u64::from(in_flight) + u64::from(len) <= u64::from(BUF_ALLOC)
    }

    /// The header of a packet from us to the guest, with our credit.
    pub fn header(&mut self, op: u16) -> Header {
        self.fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len: 0,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Counts `n` host bytes as sent to the guest.
    pub fn sent_to_guest(&mut self, n: u32) {
        self.tx_cnt = self.tx_cnt.wrapping_add(n);
    }

    /// Counts `n` guest bytes as received (they were checked against our
    /// credit) and forwarded: `written` went to the socket, the rest is in
    /// `rest` to be buffered.
    pub fn received(&mut self, n: u32, written: u32, rest: &[u8]) {
        self.rx_cnt = self.rx_cnt.wrapping_add(n);
        self.fwd_cnt = self.fwd_cnt.wrapping_add(written);
        self.pending.extend(rest);
        self.maybe_owe_credit();
    }

    /// Whether guest data waits for the host socket.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.preamble.is_empty()
    }

    /// Queues "OK <port>\n" for the host client (host-initiated, accepted).
    pub fn queue_ok(&mut self) {
        self.preamble = format!("OK {}\n", self.local_port).into_bytes();
    }

    /// Writes what is buffered to the host socket, as far as it takes it.
    /// Err: the host socket is gone (the connection must be reset).
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.preamble.is_empty() {
            match super::host::write_fd(&self.stream, &self.preamble) {
                Ok(n) => drop(self.preamble.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while !self.pending.is_empty() {
            let (a, _) = self.pending.as_slices();
            match super::host::write_fd(&self.stream, a) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.maybe_owe_credit();
        if self.pending.is_empty() && self.peer_done_sending && !self.host_write_shut {
            self.host_write_shut = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    /// The guest's view of our free space is small and we have freed some:
    /// tell it.
    fn maybe_owe_credit(&mut self) {
        let guest_view_free = BUF_ALLOC.saturating_sub(self.rx_cnt.wrapping_sub(self.fwd_cnt_sent));
        if guest_view_free < CREDIT_THRESHOLD && self.fwd_cnt != self.fwd_cnt_sent {
            self.owed.credit_update = true;
        }
    }

    /// Whether the guest could take data now, if the host has some.
    pub fn may_send_data(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && !self.peer_done_receiving
            && !self.owed.rst
            && self.peer_credit() > 0
    }

    /// The most payload the next RW packet may carry (guest's credit and
    /// the packet limit).
    pub fn next_payload(&self) -> u32 {
        self.peer_credit().min(MAX_PAYLOAD)
    }

    /// The next control packet this connection owes, marking it sent.
    pub fn take_owed(&mut self) -> Option<Header> {
        let o = &mut self.owed;
        let (op, flags) = if o.rst {
            o.rst = false;
            (op::RST, 0)
        } else if o.request {
            o.request = false;
            (op::REQUEST, 0)
        } else if o.response {
            o.response = false;
            (op::RESPONSE, 0)
        } else if o.shutdown != 0 {
            let f = o.shutdown;
            o.shutdown = 0;
            (op::SHUTDOWN, f)
        } else if o.credit_update {
            o.credit_update = false;
            (op::CREDIT_UPDATE, 0)
        } else {
            return None;
        };
        let mut h = self.header(op);
        h.flags = flags;
        Some(h)
    }

    /// Whether any control packet is owed.
    pub fn owes(&self) -> bool {
        self.owed != Owed::default()
    }

    /// The host reached end of stream: tell the guest it will get no more.
    pub fn host_finished(&mut self) {
        if !self.host_eof {
            self.host_eof = true;
            self.owed.shutdown |= shutdown::SEND;
        }
    }
}

impl Drop for Conn {
    /// Both directions end for the host client (end of stream, then close).
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
