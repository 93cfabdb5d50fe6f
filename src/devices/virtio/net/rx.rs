//! Receive: frames from the tap go into the guest's receiveq1 buffers
//! (virtio 1.2, 5.1.6.3, 5.1.6.4).
//!
//! One frame is read from the tap at a time and delivered before the next
//! is read. With VIRTIO_NET_F_MRG_RXBUF it may span several chains, and the
//! header's `num_buffers` says how many; without it, it must fit one chain.
//! Chains are taken off the queue only as a frame needs them and kept, in
//! order, until used (at most the queue size). When the guest has no room
//! the frame waits and the tap is not read: frames then queue in the
//! kernel (the tap's txqueuelen), which drops and counts past its limit,
//! so nothing here grows. A frame no chain set can hold is dropped and
//! counted.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::super::queue::{self, Direction};
use super::{BUDGET, Backend, Net, RxChain, bit};
use crate::host::tap::VNET_HDR_LEN;
use virtio_bindings::virtio_net as n;

/// What became of the waiting frame.
enum Delivery {
    Delivered,
    Dropped,
    NoRoom,
}

impl<B: Backend> Net<B> {
    /// Moves frames from the tap to the guest, at most `BUDGET`. Returns
    /// whether chains were used and whether the tap may have more.
    pub(super) fn receive(
        &mut self,
        q: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<(bool, bool), virtio_queue::Error> {
        let mut used = false;
        for _ in 0..BUDGET {
            if self.rx_len == 0 {
                match self.backend.recv(&mut self.rx_frame) {
                    Ok(len) if len < VNET_HDR_LEN => {
                        self.stats.rx_dropped += 1;
                        continue;
                    }
                    Ok(len) => self.rx_len = len,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return Ok((used, false));
                    }
                    Err(_) => {
                        self.stats.tap_errors += 1;
                        return Ok((used, false));
                    }
                }
            }
            match self.deliver(q, mem, &mut used)? {
                Delivery::Delivered | Delivery::Dropped => self.rx_len = 0,
                Delivery::NoRoom => {
                    self.stats.rx_waits += 1;
                    return Ok((used, false));
                }
            }
        }
        Ok((used, true))
    }

    /// Takes the next usable chain off the queue into `rx_chains`. False
    /// when the queue has none.
    fn take_chain(
        &mut self,
        q: &mut Queue,
        mem: &GuestMemoryMmap,
        used: &mut bool,
    ) -> Result<bool, virtio_queue::Error> {
        loop {
            let Some(chain) = queue::pop(q, mem)? else {
                return Ok(false);
            };
            let head = chain.head_index();
            match queue::buffers(chain, Direction::DeviceWrites, q.size(), mem) {
                Ok(segments) if queue::total_len(&segments) > 0 => {
                    let len = queue::total_len(&segments);
                    self.rx_chains.push_back(RxChain {
                        head,
                        segments,
                        len,
                    });
                    return Ok(true);
                }
                // Broken or empty: handed back unused.
                _ => {
                    self.stats.bad_chains += 1;
                    q.add_used(mem, head, 0)?;
                    *used = true;
                }
            }
        }
    }

    fn deliver(
        &mut self,
        q: &mut Queue,
        mem: &GuestMemoryMmap,
        used: &mut bool,
    ) -> Result<Delivery, virtio_queue::Error> {
        let need = self.rx_len;
        let mergeable = self.acked & bit(n::VIRTIO_NET_F_MRG_RXBUF) != 0;
        // How many chains the frame needs, taking more off the queue as
        // long as the ones held are too small.
        let mut room: usize = 0;
        let mut count = 0;
        loop {
            if count == self.rx_chains.len() {
                if self.rx_chains.len() >= usize::from(q.size()) {
                    // Every chain the queue can hold is not enough.
                    self.stats.rx_dropped += 1;
                    return Ok(Delivery::Dropped);
                }
                if !self.take_chain(q, mem, used)? {
                    return Ok(Delivery::NoRoom);
                }
            }
            room += self.rx_chains[count].len as usize;
            count += 1;
            if room >= need {
                break;
            }
            if !mergeable {
                // One chain per frame: this one is too small. Kept for a
                // smaller frame.
                self.stats.rx_dropped += 1;
                return Ok(Delivery::Dropped);
            }
        }
        // num_buffers (5.1.6.4): the chains this frame uses.
        self.rx_frame[10..12].copy_from_slice(&(count as u16).to_le_bytes());
        let mut at = 0;
        for _ in 0..count {
            let Some(chain) = self.rx_chains.pop_front() else {
                break; // not reached: `count` chains are held
            };
            let start = at;
            for s in &chain.segments {
                if at == need {
                    break;
                }
                let len = (s.len as usize).min(need - at);
                // Checked to be in RAM when taken off the queue.
                if mem
                    .write_slice(&self.rx_frame[at..at + len], s.addr)
                    .is_err()
                {
                    self.stats.bad_chains += 1;
                }
                at += len;
            }
            q.add_used(mem, chain.head, (at - start) as u32)?;
            *used = true;
        }
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += (need - VNET_HDR_LEN) as u64;
        Ok(Delivery::Delivered)
    }
}
