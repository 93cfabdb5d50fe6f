//! `snapshot_state`: the snapshot `state` file parser (`crate::snapshot::
//! decode`) and the device-state restore it feeds, on hostile bytes.
//!
//! The first byte picks how the rest is used: as a whole file (header and
//! all: truncation, bad magic, versions, checksums), or as a payload
//! wrapped in a correct header and checksum, so the fuzzer reaches the JSON
//! parser and the consistency checks. Invariants: no input panics; a state
//! that decodes encodes to bytes that decode again to the same machine;
//! every virtio console state in it either restores into a fresh console
//! transport or is refused with an error (never a panic, never a queue
//! outside guest RAM).

use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::devices::manager::VirtioKindSnapshot;
use crate::devices::output::GuestOutput;
use crate::devices::virtio::console::Console;
use crate::devices::virtio::mmio::MmioTransport;
use crate::snapshot::{HEADER_LEN, MAGIC, VERSION, decode, encode};

/// Guest RAM of the transport the states are restored into.
const RAM: usize = 128 << 20;

/// The harness (docs/fuzzing.md).
pub fn snapshot_state(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut f = Vec::with_capacity(HEADER_LEN + rest.len());
        f.extend_from_slice(MAGIC);
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&(rest.len() as u64).to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
        f.extend_from_slice(rest);
        f
    };
    let Ok(state) = decode(&file) else {
        return;
    };
    let again = decode(&encode(&state).expect("a decoded state encodes"))
        .expect("an encoded state decodes");
    assert_eq!(
        again.machine, state.machine,
        "the round trip keeps the machine"
    );

    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest RAM");
    let out = GuestOutput::new(Box::new(std::io::sink()), 4096).expect("output thread");
    for slot in &state.devices.virtio {
        let VirtioKindSnapshot::Console(saved) = &slot.device else {
            continue;
        };
        let dev = Console::new(out.handle(), saved.size).expect("console eventfds");
        let e = || EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let mut t = MmioTransport::new(dev, mem.clone(), e(), vec![e(), e()], e());
        let restored = t
            .device_mut()
            .restore_state(saved, &mem)
            .and_then(|()| t.restore_state(&slot.transport));
        if restored.is_ok() {
            for q in t.queues().iter().flatten() {
                use virtio_queue::QueueT;
                assert!(
                    q.desc_table() < RAM as u64,
                    "a restored ring lies in guest RAM"
                );
            }
            t.process();
        }
    }
}
