//! The virtio console's own state in a snapshot: the terminal size it
//! offered (it decides VIRTIO_CONSOLE_F_SIZE), buffered input, whether the
//! guest has written yet, and a transmit chain held half-copied when stdout
//! was full. A held chain's buffers are checked against guest RAM again on
//! restore, as when the chain was first taken.

use serde::{Deserialize, Serialize};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::{Console, INPUT_CAPACITY, PendingTx};
use crate::devices::virtio::queue::Segment;

/// The console's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSnapshot {
    /// (columns, rows) offered, if any.
    pub size: Option<(u16, u16)>,
    /// The guest has written output (the input path is open).
    pub guest_wrote: bool,
    /// Input not yet given to the guest.
    pub input: Vec<u8>,
    /// A transmit chain partly copied out.
    pub tx: Option<HeldTx>,
}

/// A transmit chain partly copied out when the snapshot was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldTx {
    /// The chain's head index.
    pub head: u16,
    /// Its buffers: (guest address, length).
    pub segments: Vec<(u64, u32)>,
    /// The buffer reached.
    pub index: usize,
    /// The offset reached in it.
    pub offset: u32,
}

impl Console {
    /// The state to save.
    pub fn save_state(&self) -> ConsoleSnapshot {
        ConsoleSnapshot {
            size: self.size,
            guest_wrote: self.guest_wrote,
            input: self.input.iter().copied().collect(),
            tx: self.tx.as_ref().map(|t| HeldTx {
                head: t.head,
                segments: t.segments.iter().map(|s| (s.addr.0, s.len)).collect(),
                index: t.index,
                offset: t.offset,
            }),
        }
    }

    /// Puts a saved state back into a console made with the saved size.
    pub fn restore_state(
        &mut self,
        s: &ConsoleSnapshot,
        mem: &GuestMemoryMmap,
    ) -> Result<(), String> {
        if s.size != self.size {
            return Err("the console's terminal size differs from the saved one".into());
        }
        if s.input.len() > INPUT_CAPACITY {
            return Err(format!(
                "{} bytes of console input (at most {INPUT_CAPACITY})",
                s.input.len()
            ));
        }
        self.guest_wrote = s.guest_wrote;
        self.input = s.input.iter().copied().collect();
        self.tx = match &s.tx {
            None => None,
            Some(HeldTx {
                head,
                segments: segs,
                index,
                offset,
            }) => {
                let segments: Vec<Segment> = segs
                    .iter()
                    .map(|&(addr, len)| Segment {
                        addr: GuestAddress(addr),
                        len,
                    })
                    .collect();
                let in_ram = segments
                    .iter()
                    .all(|s| GuestMemoryBackend::check_range(mem, s.addr, s.len as usize));
                let position_ok = *index < segments.len() && *offset <= segments[*index].len;
                if !in_ram || !position_ok {
                    return Err("the console's held transmit chain is not valid".into());
                }
                Some(PendingTx {
                    head: *head,
                    segments,
                    index: *index,
                    offset: *offset,
                })
            }
        };
        Ok(())
    }
}
