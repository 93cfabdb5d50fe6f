//! Unit tests of the virtio disk: every request type against a real image
//! file, and hostile chains (MockSplitQueue) that must end in a status or
//! an empty completion, never a panic.

use std::path::PathBuf;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, Bytes, GuestAddress};

use super::disk::{DiskConfig, DiskImage};
use super::*;

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const W: u16 = VRING_DESC_F_WRITE as u16;
const HDR: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const STATUS: u64 = 0x3_0000;

struct Rig {
    mem: GuestMemoryMmap,
    dev: Block,
    path: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn rig(name: &str, sectors: u64, readonly: bool) -> Rig {
    let path = std::env::temp_dir().join(format!("tinyvmm-blk-{}-{name}.img", std::process::id()));
    std::fs::write(&path, vec![0xaa; (sectors * 512) as usize]).unwrap();
    let cfg = DiskConfig {
        path: path.clone(),
        readonly,
        direct: false,
        id: Some("disk-under-test".into()),
    };
    Rig {
        mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap(),
        dev: Block::new(DiskImage::open(&cfg).unwrap()),
        path,
    }
}

fn header(r: &Rig, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    r.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
}

/// Runs one chain; returns (status byte, used length).
fn submit(r: &mut Rig, descs: &[(u64, u32, u16)]) -> (u8, u32) {
    r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    let vq = MockSplitQueue::new(&r.mem, 16);
    let n = descs.len();
    let raw: Vec<RawDescriptor> = descs
        .iter()
        .enumerate()
        .map(|(i, &(a, l, f))| {
            let next = if i + 1 < n { NEXT } else { 0 };
            RawDescriptor::from(Descriptor::new(a, l, f | next, (i + 1) as u16))
        })
        .collect();
    vq.add_desc_chains(&raw, 0).unwrap();
    let mut queues = [Some(vq.create_queue::<Queue>().unwrap())];
    assert_eq!(r.dev.process(&mut queues, &r.mem).unwrap(), 1);
    let used_len: u32 = r.mem.read_obj(vq.used_addr().unchecked_add(8)).unwrap();
    (r.mem.read_obj(GuestAddress(STATUS)).unwrap(), used_len)
}

const OK: u8 = 0;
const IOERR: u8 = 1;
const UNSUPP: u8 = 2;

fn rw(kind: u32, len: u32) -> [(u64, u32, u16); 3] {
    let data_flag = if kind == blk::VIRTIO_BLK_T_IN { W } else { 0 };
    [(HDR, 16, 0), (DATA, len, data_flag), (STATUS, 1, W)]
}

#[test]
fn written_sectors_read_back_and_reach_the_file() {
    let mut r = rig("rw", 8, false);
    r.mem
        .write_slice(&[0x5a; 1024], GuestAddress(DATA))
        .unwrap();
    header(&r, blk::VIRTIO_BLK_T_OUT, 2);
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_OUT, 1024)), (OK, 1));
    let file = std::fs::read(&r.path).unwrap();
    assert!(
        file[1024..2048].iter().all(|&b| b == 0x5a) && file[1023] == 0xaa && file[2048] == 0xaa
    );
    r.mem.write_slice(&[0u8; 1024], GuestAddress(DATA)).unwrap();
    header(&r, blk::VIRTIO_BLK_T_IN, 2);
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_IN, 1024)), (OK, 1025));
    let mut back = [0u8; 1024];
    r.mem.read_slice(&mut back, GuestAddress(DATA)).unwrap();
    assert!(back.iter().all(|&b| b == 0x5a));
    header(&r, blk::VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(submit(&mut r, &[(HDR, 16, 0), (STATUS, 1, W)]), (OK, 1));
    let s = r.dev.stats();
    assert_eq!(
        (s.requests, s.read_bytes, s.write_bytes, s.flushes),
        (3, 1024, 1024, 1)
    );
}

#[test]
fn get_id_returns_the_configured_serial() {
    let mut r = rig("id", 1, false);
    header(&r, blk::VIRTIO_BLK_T_GET_ID, 0);
    assert_eq!(
        submit(&mut r, &[(HDR, 16, 0), (DATA, 20, W), (STATUS, 1, W)]),
        (OK, 21)
    );
    let mut id = [0u8; 20];
    r.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..15], b"disk-under-test");
}

#[test]
fn bad_ranges_lengths_and_types_get_ioerr_or_unsupp() {
    let mut r = rig("bad", 4, false);
    header(&r, blk::VIRTIO_BLK_T_IN, 4); // one past the end
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_IN, 512)).0, IOERR);
    header(&r, blk::VIRTIO_BLK_T_IN, 3); // starts inside, ends past
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_IN, 1024)).0, IOERR);
    header(&r, blk::VIRTIO_BLK_T_OUT, u64::MAX); // sector + count overflows
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_OUT, 512)).0, IOERR);
    header(&r, blk::VIRTIO_BLK_T_IN, 0); // not whole sectors
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_IN, 100)).0, IOERR);
    header(&r, blk::VIRTIO_BLK_T_OUT, 0); // OUT data marked device-writable
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_IN, 512)).0, IOERR);
    header(&r, 0x7777, 0);
    assert_eq!(submit(&mut r, &[(HDR, 16, 0), (STATUS, 1, W)]).0, UNSUPP);
    // A header of 8 bytes: no sector to read.
    header(&r, blk::VIRTIO_BLK_T_IN, 0);
    assert_eq!(submit(&mut r, &[(HDR, 8, 0), (STATUS, 1, W)]).0, IOERR);
    // The header split over two buffers is fine.
    header(&r, blk::VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(
        submit(&mut r, &[(HDR, 4, 0), (HDR + 4, 12, 0), (STATUS, 1, W)]).0,
        OK
    );
    let s = r.dev.stats();
    assert_eq!((s.io_errors, s.unsupported), (6, 1));
    assert!(
        std::fs::read(&r.path).unwrap().iter().all(|&b| b == 0xaa),
        "nothing written"
    );
}

#[test]
fn a_read_only_disk_refuses_writes_and_says_so() {
    let mut r = rig("ro", 2, true);
    assert_ne!(r.dev.features() & (1 << blk::VIRTIO_BLK_F_RO), 0);
    assert_eq!(r.dev.features() & (1 << blk::VIRTIO_BLK_F_DISCARD), 0);
    header(&r, blk::VIRTIO_BLK_T_OUT, 0);
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_OUT, 512)).0, IOERR);
    header(&r, blk::VIRTIO_BLK_T_IN, 0);
    assert_eq!(submit(&mut r, &rw(blk::VIRTIO_BLK_T_IN, 512)).0, OK);
    assert!(std::fs::read(&r.path).unwrap().iter().all(|&b| b == 0xaa));
}

#[test]
fn chains_without_a_status_byte_complete_empty() {
    let mut r = rig("chains", 2, false);
    header(&r, blk::VIRTIO_BLK_T_IN, 0);
    // Everything device-readable: nowhere to put a status.
    assert_eq!(submit(&mut r, &[(HDR, 16, 0), (STATUS, 1, 0)]), (0xff, 0));
    // A readable buffer after a writable one.
    assert_eq!(
        submit(&mut r, &[(HDR, 16, 0), (STATUS, 1, W), (DATA, 512, 0)]),
        (0xff, 0)
    );
    // A buffer outside guest RAM.
    assert_eq!(
        submit(
            &mut r,
            &[(HDR, 16, 0), (0xff_ffff_0000, 512, W), (STATUS, 1, W)]
        ),
        (0xff, 0)
    );
    assert_eq!(r.dev.stats().bad_chains, 3);
}

#[test]
fn discard_and_write_zeroes_clear_their_ranges() {
    let mut r = rig("discard", 8, false);
    for (kind, sector) in [
        (blk::VIRTIO_BLK_T_DISCARD, 1u64),
        (blk::VIRTIO_BLK_T_WRITE_ZEROES, 4),
    ] {
        let mut range = [0u8; 16];
        range[0..8].copy_from_slice(&sector.to_le_bytes());
        range[8..12].copy_from_slice(&2u32.to_le_bytes());
        r.mem.write_slice(&range, GuestAddress(DATA)).unwrap();
        header(&r, kind, 0);
        assert_eq!(
            submit(&mut r, &[(HDR, 16, 0), (DATA, 16, 0), (STATUS, 1, W)]).0,
            OK
        );
    }
    let file = std::fs::read(&r.path).unwrap();
    assert_eq!(file.len(), 8 * 512, "the image keeps its size");
    let sector = |s: usize| &file[s * 512..(s + 1) * 512];
    for s in [1, 2, 4, 5] {
        assert!(sector(s).iter().all(|&b| b == 0), "sector {s} cleared");
    }
    for s in [0, 3, 6, 7] {
        assert!(sector(s).iter().all(|&b| b == 0xaa), "sector {s} kept");
    }
    // A range past the end, or a partial range entry: IOERR.
    let mut range = [0u8; 16];
    range[0..8].copy_from_slice(&7u64.to_le_bytes());
    range[8..12].copy_from_slice(&2u32.to_le_bytes());
    r.mem.write_slice(&range, GuestAddress(DATA)).unwrap();
    header(&r, blk::VIRTIO_BLK_T_DISCARD, 0);
    assert_eq!(
        submit(&mut r, &[(HDR, 16, 0), (DATA, 16, 0), (STATUS, 1, W)]).0,
        IOERR
    );
    assert_eq!(
        submit(&mut r, &[(HDR, 16, 0), (DATA, 10, 0), (STATUS, 1, W)]).0,
        IOERR
    );
}

#[test]
fn config_space_carries_capacity_and_limits() {
    let r = rig("config", 5, false);
    let mut c = [0u8; 8];
    r.dev.read_config(0, &mut c);
    assert_eq!(u64::from_le_bytes(c), 5);
    let mut b = [0u8; 4];
    r.dev.read_config(20, &mut b);
    assert_eq!(u32::from_le_bytes(b), 512);
    r.dev.read_config(1000, &mut b);
    assert_eq!(b, [0; 4], "past the config: zeroes, no panic");
}

mod hostile {
    //! Random chains and random headers: the device never panics, writes
    //! only a known status, and never reports more written than the chain's
    //! writable bytes.
    use super::*;
    use proptest::prelude::*;

    fn descs() -> impl Strategy<Value = Vec<(u64, u32, u16)>> {
        let addr = prop_oneof![
            Just(HDR),
            Just(DATA),
            Just(STATUS),
            0u64..0x10_0000,
            any::<u64>()
        ];
        let len = prop_oneof![
            Just(1u32),
            Just(16),
            Just(512),
            Just(1024),
            0u32..70_000,
            any::<u32>()
        ];
        let flags = prop_oneof![Just(0u16), Just(W)];
        proptest::collection::vec((addr, len, flags), 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn any_chain_and_header_end_in_a_status_or_an_empty_completion(
            chain in descs(),
            kind in prop_oneof![Just(0u32), Just(1), Just(4), Just(8), Just(11), Just(13), any::<u32>()],
            sector in prop_oneof![0u64..16, any::<u64>()],
            ranges in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut r = rig("prop", 8, false);
            header(&r, kind, sector);
            r.mem.write_slice(&ranges, GuestAddress(DATA)).unwrap();
            let (_, used) = submit(&mut r, &chain);
            // The status is the last byte of the last writable buffer (if it
            // is in RAM); whatever the request, it is a known value or untouched.
            if let Some(&(addr, len, _)) = chain.iter().rev().find(|d| d.2 == W && d.1 > 0) {
                if let Some(at) = addr.checked_add(u64::from(len) - 1).filter(|&a| a < 0x10_0000) {
                    let status: u8 = r.mem.read_obj(GuestAddress(at)).unwrap();
                    let before = if at == STATUS { Some(0xff) } else { None };
                    prop_assert!(
                        matches!(status, 0..=2) || Some(status) == before || used == 0,
                        "status {status} at {at:#x}, used {used}"
                    );
                }
            }
            let writable: u64 = chain.iter().filter(|d| d.2 == W).map(|d| u64::from(d.1)).sum();
            prop_assert!(u64::from(used) <= writable, "used {used} > writable {writable}");
            prop_assert_eq!(std::fs::metadata(&r.path).unwrap().len(), 8 * 512, "the image keeps its size");
        }
    }
}
