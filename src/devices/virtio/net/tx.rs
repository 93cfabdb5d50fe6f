//! Transmit: frames the guest put on transmitq1 go to the tap (virtio 1.2,
//! 5.1.6.2). Each chain is device-readable buffers holding the vnet header
//! and the frame; it is gathered into one buffer (at most `MAX_FRAME`),
//! its header checked against what was negotiated, then written to the
//! tap in one write. The chain is completed with used length 0 whatever
//! happened to the frame; a dropped frame is counted.

use virtio_bindings::virtio_net as n;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::super::queue::{self, Direction, Segment};
use super::{BUDGET, Backend, MAX_FRAME, Net, bit};
use crate::host::tap::VNET_HDR_LEN;

/// Why a transmit header is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Flags other than NEEDS_CSUM (DATA_VALID is for received frames).
    Flags(u8),
    /// NEEDS_CSUM without VIRTIO_NET_F_CSUM, or the checksum field not
    /// inside the frame.
    Checksum,
    /// A GSO type that is unknown or was not negotiated, ECN, a GSO frame
    /// without NEEDS_CSUM (5.1.6.2.1), or a zero segment size.
    Gso(u8),
}

/// Checks a transmit header (`hdr`, 12 bytes) for a frame of `frame_len`
/// bytes after it, with `acked` the negotiated features.
pub fn check_header(hdr: &[u8], frame_len: usize, acked: u64) -> Result<(), HeaderError> {
    let flags = hdr[0];
    let gso_type = hdr[1];
    let gso_size = u16::from_le_bytes([hdr[4], hdr[5]]);
    let csum_start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
    let csum_offset = usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
    let has = |f: u32| acked & bit(f) != 0;
    if flags & !(n::VIRTIO_NET_HDR_F_NEEDS_CSUM as u8) != 0 {
        return Err(HeaderError::Flags(flags));
    }
    let needs_csum = flags != 0;
    if needs_csum && (!has(n::VIRTIO_NET_F_CSUM) || csum_start + csum_offset + 2 > frame_len) {
        return Err(HeaderError::Checksum);
    }
    let allowed = match u32::from(gso_type) {
        n::VIRTIO_NET_HDR_GSO_NONE => return Ok(()),
        n::VIRTIO_NET_HDR_GSO_TCPV4 => has(n::VIRTIO_NET_F_HOST_TSO4),
        n::VIRTIO_NET_HDR_GSO_TCPV6 => has(n::VIRTIO_NET_F_HOST_TSO6),
        n::VIRTIO_NET_HDR_GSO_UDP => has(n::VIRTIO_NET_F_HOST_UFO),
        _ => false, // unknown, or with the ECN bit (HOST_ECN not offered)
    };
    if !allowed || !needs_csum || gso_size == 0 {
        return Err(HeaderError::Gso(gso_type));
    }
    Ok(())
}

impl<B: Backend> Net<B> {
    /// Sends what the guest queued, at most `BUDGET` frames. Returns
    /// whether chains were used and whether more may be waiting.
    pub(super) fn transmit(
        &mut self,
        q: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<(bool, bool), virtio_queue::Error> {
        let mut used = false;
        for _ in 0..BUDGET {
            let Some(chain) = queue::pop(q, mem)? else {
                return Ok((used, false));
            };
            let head = chain.head_index();
            match queue::buffers(chain, Direction::DeviceReads, q.size(), mem) {
                Ok(segments) => self.send_frame(&segments, mem),
                Err(_) => self.stats.bad_chains += 1,
            }
            q.add_used(mem, head, 0)?;
            used = true;
        }
        Ok((used, true))
    }

    fn send_frame(&mut self, segments: &[Segment], mem: &GuestMemoryMmap) {
        let total = queue::total_len(segments) as usize;
        if !(VNET_HDR_LEN..=MAX_FRAME).contains(&total) {
            self.stats.tx_bad_length += 1;
            return;
        }
        let mut at = 0;
        for s in segments {
            let len = s.len as usize;
            if mem
                .read_slice(&mut self.tx_frame[at..at + len], s.addr)
                .is_err()
            {
                self.stats.bad_chains += 1;
                return;
            }
            at += len;
        }
        let frame = &self.tx_frame[..total];
        if check_header(&frame[..VNET_HDR_LEN], total - VNET_HDR_LEN, self.acked).is_err() {
            self.stats.tx_bad_header += 1;
            return;
        }
        match self.backend.send(frame) {
            Ok(_) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += (total - VNET_HDR_LEN) as u64;
            }
            Err(_) => self.stats.tap_errors += 1,
        }
    }
}
