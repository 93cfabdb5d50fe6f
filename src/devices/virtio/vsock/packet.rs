//! The virtio-vsock packet (virtio 1.2, 5.10.6): a 44-byte little-endian
//! header, then `len` bytes of payload, spread over a descriptor chain in
//! any way the driver likes (Linux 6.1 puts the header and the payload in
//! two descriptors; nothing here depends on it). Every copy between a
//! chain and host memory or a socket goes through the checked segments of
//! `queue::buffers` and stops at their end: a length the driver wrote is
//! never trusted to size a copy.

use std::io;
use std::os::unix::net::UnixStream;

use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile, WriteVolatile};

use crate::devices::virtio::queue::Segment;

/// Size of the packet header.
pub const HDR_LEN: usize = 44;
/// The host's context id (virtio 1.2, 5.10.4: 2 is the host).
pub const HOST_CID: u64 = 2;
/// The one socket type we carry: a stream (SOCK_STREAM).
pub const TYPE_STREAM: u16 = 1;
/// Largest payload of one packet, as Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE.
pub const MAX_PAYLOAD: u32 = 64 * 1024;

/// Packet operations (virtio 1.2, 5.10.6).
pub mod op {
    /// Connect.
    pub const REQUEST: u16 = 1;
    /// Accept a connection.
    pub const RESPONSE: u16 = 2;
    /// Refuse or abort a connection.
    pub const RST: u16 = 3;
    /// The sender will not receive and/or send any more.
    pub const SHUTDOWN: u16 = 4;
    /// Data.
    pub const RW: u16 = 5;
    /// The sender's buffer space changed.
    pub const CREDIT_UPDATE: u16 = 6;
    /// The sender asks for a credit update.
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flags.
pub mod shutdown {
    /// The sender will receive no more data.
    pub const RCV: u32 = 1;
    /// The sender will send no more data.
    pub const SEND: u32 = 2;
}

/// A packet header, host byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Source context id.
    pub src_cid: u64,
    /// Destination context id.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type (1: stream).
    pub kind: u16,
    /// Operation (`op`).
    pub op: u16,
    /// Operation flags (SHUTDOWN's `shutdown` bits).
    pub flags: u32,
    /// The sender's receive buffer size for this connection.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer, ever (mod 2^32).
    pub fwd_cnt: u32,
}

impl Header {
    /// Decodes the wire form.
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Header {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap_or_default());
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            kind: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    /// Encodes the wire form.
    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.kind.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// The pieces of `segments` that cover bytes `[offset, offset + len)` of
/// the chain, clipped to the chain's end.
pub fn pieces(segments: &[Segment], mut offset: u64, mut len: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    for s in segments {
        if len == 0 {
            break;
        }
        let slen = u64::from(s.len);
        if offset >= slen {
            offset -= slen;
            continue;
        }
        let take = (slen - offset).min(len);
        out.push(Segment {
            addr: s.addr.unchecked_add_offset(offset),
            len: take as u32,
        });
        len -= take;
        offset = 0;
    }
    out
}

trait AddOffset {
    fn unchecked_add_offset(self, off: u64) -> Self;
}

impl AddOffset for vm_memory::GuestAddress {
    fn unchecked_add_offset(self, off: u64) -> Self {
        // The segment was checked to lie in RAM: start + off is inside it.
        vm_memory::GuestAddress(self.0 + off)
    }
}

/// Reads the header at the front of a device-readable chain; `None` if
/// the chain holds fewer than `HDR_LEN` bytes.
pub fn read_header(mem: &GuestMemoryMmap, segments: &[Segment]) -> Option<Header> {
    let mut b = [0u8; HDR_LEN];
    let mut at = 0usize;
    for p in pieces(segments, 0, HDR_LEN as u64) {
        let n = p.len as usize;
        mem.read_slice(&mut b[at..at + n], p.addr).ok()?;
        at += n;
    }
    (at == HDR_LEN).then(|| Header::from_bytes(&b))
}

/// Writes `bytes` at `offset` of a device-writable chain; returns how many
/// fitted.
pub fn write_bytes(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    offset: u64,
    bytes: &[u8],
) -> usize {
    let mut at = 0usize;
    for p in pieces(segments, offset, bytes.len() as u64) {
        let n = p.len as usize;
        if mem.write_slice(&bytes[at..at + n], p.addr).is_err() {
            break;
        }
        at += n;
    }
    at
}

/// Copies up to `len` bytes at `offset` of a chain into `out` (host memory).
pub fn read_bytes(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    offset: u64,
    len: u32,
    out: &mut Vec<u8>,
) {
    for p in pieces(segments, offset, u64::from(len)) {
        let start = out.len();
        out.resize(start + p.len as usize, 0);
        if mem.read_slice(&mut out[start..], p.addr).is_err() {
            out.truncate(start);
            break;
        }
    }
}

/// Writes up to `len` bytes at `offset` of a chain to `stream`, without
/// blocking; returns how many the socket took (0 with `WouldBlock` if none).
pub fn chain_to_socket(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    offset: u64,
    len: u32,
    stream: &mut &UnixStream,
) -> io::Result<usize> {
    let mut done = 0usize;
    for p in pieces(segments, offset, u64::from(len)) {
        for slice in mem.get_slices(p.addr, p.len as usize) {
            let slice = slice.map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            match stream.write_volatile(&slice) {
                Ok(n) => {
                    done += n;
                    if n < slice.len() {
                        return Ok(done);
                    }
                }
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(volatile_io(e)),
            }
        }
    }
    Ok(done)
}

/// Reads up to `len` bytes from `stream` into a chain at `offset`, without
/// blocking; returns how many (0 at end of stream).
pub fn socket_to_chain(
    mem: &GuestMemoryMmap,
    segments: &[Segment],
    offset: u64,
    len: u32,
    stream: &mut &UnixStream,
) -> io::Result<usize> {
    let mut done = 0usize;
    for p in pieces(segments, offset, u64::from(len)) {
        for slice in mem.get_slices(p.addr, p.len as usize) {
            let mut slice = slice.map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            match stream.read_volatile(&mut slice) {
                Ok(n) => {
                    done += n;
                    if n < slice.len() {
                        return Ok(done);
                    }
                }
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(volatile_io(e)),
            }
        }
    }
    Ok(done)
}

fn volatile_io(e: vm_memory::VolatileMemoryError) -> io::Error {
    match e {
        vm_memory::VolatileMemoryError::IOError(io) => io,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    #[test]
    fn the_header_round_trips_in_44_little_endian_bytes() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 1024,
            dst_port: 52,
            len: 7,
            kind: TYPE_STREAM,
            op: op::RW,
            flags: 0,
            buf_alloc: 1 << 18,
            fwd_cnt: 99,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[30..32], &op::RW.to_le_bytes());
        assert_eq!(Header::from_bytes(&b), h);
    }

    #[test]
    fn pieces_clip_to_the_chain() {
        let s = |a: u64, l: u32| Segment {
            addr: GuestAddress(a),
            len: l,
        };
        let segs = [s(0x1000, 10), s(0x2000, 40), s(0x3000, 100)];
        assert_eq!(
            pieces(&segs, 44, 20),
            vec![s(0x2000 + 34, 6), s(0x3000, 14)]
        );
        assert_eq!(pieces(&segs, 140, 100), vec![s(0x3000 + 90, 10)]);
        assert!(pieces(&segs, 150, 1).is_empty());
    }
}
