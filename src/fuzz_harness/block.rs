//! Fuzz target `virtio_blk`: the virtio disk's request processing, fed
//! descriptor chains a hostile driver wrote. The bytes pick a read-only or
//! writable 16-sector image, then up to 8 rounds of: a request header
//! (type from the real ones or any u32, any sector), a chain of up to 6
//! descriptors (addresses near the header, data and status areas or
//! anywhere, lengths small or huge, either direction), guest bytes for
//! data and discard ranges, then one `process` call.
//!
//! After each round: the chain made available is completed (the used index
//! advances by one), unless the request had the device write over the rings
//! themselves, which the device reports as a broken ring (that ends the
//! input); no used length exceeds the chain's writable bytes; the image
//! keeps its size, and a read-only image keeps its contents. A panic
//! anywhere is a finding.

use std::io::Write;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Input;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::block::disk::{DiskConfig, DiskImage};

const RAM: u64 = 0x1_0000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HDR: u64 = 0x4000;
const DATA: u64 = 0x5000;
const STATUS: u64 = 0x8000;
const QSIZE: u16 = 8;
const SECTORS: u64 = 16;

/// A per-thread scratch image, rewritten for each input.
fn image(readonly: bool) -> DiskImage {
    let path = std::env::temp_dir().join(format!(
        "tinyvmm-fuzz-blk-{}-{:?}.img",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::File::create(&path).expect("a scratch image");
    f.write_all(&[0xa5; (SECTORS * 512) as usize])
        .expect("writing it");
    let config = DiskConfig {
        path,
        readonly,
        direct: false,
        id: None,
    };
    DiskImage::open(&config).expect("the scratch image opens")
}

/// The fuzz target.
pub fn virtio_blk(data: &[u8]) {
    let mut input = Input::new(data);
    let readonly = input.u8() & 1 == 1;
    let disk = image(readonly);
    let path = disk.path().to_path_buf();
    let mut dev = Block::new(disk);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).expect("guest RAM");
    let mut q = Queue::new(QSIZE).expect("a queue");
    q.try_set_size(QSIZE).expect("size");
    q.try_set_desc_table_address(GuestAddress(DESC))
        .expect("desc");
    q.try_set_avail_ring_address(GuestAddress(AVAIL))
        .expect("avail");
    q.try_set_used_ring_address(GuestAddress(USED))
        .expect("used");
    q.set_ready(true);
    let mut queues = [Some(q)];
    let mut avail_idx: u16 = 0;
    for _ in 0..8 {
        if input.is_empty() {
            break;
        }
        // The header and the guest's data bytes.
        let kind = input.pick(&[0u32, 1, 4, 8, 11, 13, 2, 99]);
        let kind = if input.u8() == 0xff {
            input.u32()
        } else {
            kind
        };
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&(input.u64() % (SECTORS + 4)).to_le_bytes());
        mem.write_slice(&header, GuestAddress(HDR)).expect("in RAM");
        let payload = input.bytes(64);
        mem.write_slice(payload, GuestAddress(DATA))
            .expect("in RAM");
        // The chain.
        let n = 1 + usize::from(input.u8()) % 6;
        let mut writable = 0u64;
        for i in 0..n {
            let addr = match input.u8() % 5 {
                0 => HDR,
                1 => DATA,
                2 => STATUS,
                3 => u64::from(input.u16()),
                _ => input.u64(),
            };
            let len = input.pick(&[1u32, 15, 16, 20, 512, 1024, 4096, 0]);
            let len = if input.u8() == 0xff { input.u32() } else { len };
            let write = input.u8() & 1 == 1;
            let flags = if write { 2u16 } else { 0 } | if i + 1 < n { 1 } else { 0 };
            if write {
                writable += u64::from(len);
            }
            let at = GuestAddress(DESC + 16 * i as u64);
            mem.write_obj(addr, at).expect("in RAM");
            mem.write_obj(len, GuestAddress(at.0 + 8)).expect("in RAM");
            mem.write_obj(flags, GuestAddress(at.0 + 12))
                .expect("in RAM");
            mem.write_obj((i + 1) as u16, GuestAddress(at.0 + 14))
                .expect("in RAM");
        }
        // Make chain 0 available once more.
        let slot = GuestAddress(AVAIL + 4 + 2 * u64::from(avail_idx % QSIZE));
        mem.write_obj(0u16, slot).expect("in RAM");
        avail_idx = avail_idx.wrapping_add(1);
        mem.write_obj(avail_idx, GuestAddress(AVAIL + 2))
            .expect("in RAM");
        let before: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("in RAM");
        // A request may make the device write into the rings themselves (a
        // buffer the guest placed over them): the ring is then broken and
        // the device reports it (the transport sets NEEDS_RESET). That ends
        // this input; anything else must complete the chain.
        if dev.process(&mut queues, &mem).is_err() {
            break;
        }
        let after: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("in RAM");
        assert_eq!(after, before.wrapping_add(1), "the chain was completed");
        let elem = USED + 4 + 8 * u64::from(before % QSIZE);
        let used_len: u32 = mem.read_obj(GuestAddress(elem + 4)).expect("in RAM");
        assert!(
            u64::from(used_len) <= writable,
            "used {used_len} > writable {writable}"
        );
    }
    let contents = std::fs::read(&path).expect("the image");
    assert_eq!(
        contents.len() as u64,
        SECTORS * 512,
        "the image keeps its size"
    );
    if readonly {
        assert!(
            contents.iter().all(|&b| b == 0xa5),
            "a read-only image changed"
        );
    }
    drop(dev);
    let _ = std::fs::remove_file(&path);
}
