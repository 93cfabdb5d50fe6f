//! Fuzz target `virtio_rng`: the entropy device's request processing, fed
//! descriptor chains a hostile driver wrote. The bytes give up to 8
//! rounds of: a chain of 1-6 descriptors (addresses in the buffer area,
//! on the rings, any 18-bit address or anywhere; lengths 0, 1, 16, 64,
//! 4096, over the per-request cap or any u32; NEXT, WRITE and INDIRECT at
//! random, any `next`), optionally an indirect table of 1-4 such entries,
//! then one `process` call. The guest RAM is 256 KiB (so the 64 KiB cap
//! can be reached inside it) and starts filled with a known pattern.
//!
//! After each round: the device wrote guest RAM only in the used ring and
//! in buffers some descriptor (in the table, or in an indirect table a
//! descriptor names) marks device-writable; no used length exceeds the
//! cap; the counters add up (requests = completions, bytes = the sum of
//! used lengths). Unless a writable buffer lies over the rings themselves
//! (the device then scribbles on its own ring, and may report it broken,
//! which ends the input), the chain made available is completed exactly
//! once. A panic anywhere is a finding.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Input;
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::rng::{MAX_REQUEST_BYTES, Rng};

const RAM: u64 = 0x4_0000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
/// Where the indirect table goes, when there is one.
const INDIRECT: u64 = 0x4000;
const BUFS: u64 = 0x8000;
const QSIZE: u16 = 8;
const PATTERN: u8 = 0xa5;
/// The rings and tables: [DESC, BUFS).
const RINGS: (u64, u64) = (DESC, BUFS);
const USED_END: u64 = USED + 4 + 8 * QSIZE as u64 + 2;

/// One descriptor as written to guest memory: (addr, len, flags, next).
type Desc = (u64, u32, u16, u16);

fn descriptor(input: &mut Input<'_>) -> Desc {
    let addr = match input.u8() % 5 {
        0 | 1 => BUFS + u64::from(input.u16()) * 2,
        2 => DESC + u64::from(input.u16() % 0x7000),
        3 => u64::from(input.u32() & 0x3_ffff),
        _ => input.u64(),
    };
    let len = input.pick(&[0u32, 1, 16, 64, 4096, MAX_REQUEST_BYTES + 4096, 0x2_0000]);
    let len = if input.u8() == 0xff { input.u32() } else { len };
    let flags = u16::from(input.u8() & 7);
    let next = u16::from(input.u8() % 10);
    (addr, len, flags, next)
}

fn write_desc(mem: &GuestMemoryMmap, at: u64, d: Desc) {
    mem.write_obj(d.0, GuestAddress(at)).expect("in RAM");
    mem.write_obj(d.1, GuestAddress(at + 8)).expect("in RAM");
    mem.write_obj(d.2, GuestAddress(at + 12)).expect("in RAM");
    mem.write_obj(d.3, GuestAddress(at + 14)).expect("in RAM");
}

/// The descriptor at `at` in the RAM image `ram`, if it lies in it.
fn read_desc(ram: &[u8], at: u64) -> Option<Desc> {
    let b = ram.get(usize::try_from(at).ok()?..usize::try_from(at + 16).ok()?)?;
    let le =
        |r: std::ops::Range<usize>| b[r].iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x));
    Some((
        le(0..8),
        le(8..12) as u32,
        le(12..14) as u16,
        le(14..16) as u16,
    ))
}

/// Every buffer a chain could make the device write, read from the RAM
/// image before processing: the table's descriptors marked WRITE, and
/// those of any table a descriptor marks INDIRECT (wherever it points,
/// the rings included). Independent of the device's own chain walker.
fn writable_buffers(ram: &[u8]) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for i in 0..u64::from(QSIZE) {
        let Some(d) = read_desc(ram, DESC + 16 * i) else {
            continue;
        };
        if d.2 & 2 != 0 {
            out.push((d.0, d.1));
        }
        if d.2 & 4 != 0 {
            for j in 0..u64::from(d.1 / 16) {
                match d.0.checked_add(16 * j).and_then(|at| read_desc(ram, at)) {
                    Some(e) if e.2 & 2 != 0 => out.push((e.0, e.1)),
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }
    out
}

/// Whether [addr, addr + len) and [lo, hi) overlap.
fn overlaps(addr: u64, len: u32, (lo, hi): (u64, u64)) -> bool {
    len > 0 && addr < hi && addr.saturating_add(u64::from(len)) > lo
}

/// The fuzz target.
pub fn virtio_rng(data: &[u8]) {
    let mut input = Input::new(data);
    let mut dev = Rng::new().expect("an eventfd");
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).expect("guest RAM");
    mem.write_slice(&vec![PATTERN; RAM as usize], GuestAddress(0))
        .expect("in RAM");
    let mut q = Queue::new(QSIZE).expect("a queue");
    q.try_set_size(QSIZE).expect("size");
    q.try_set_desc_table_address(GuestAddress(DESC))
        .expect("desc");
    q.try_set_avail_ring_address(GuestAddress(AVAIL))
        .expect("avail");
    q.try_set_used_ring_address(GuestAddress(USED))
        .expect("used");
    q.set_ready(true);
    mem.write_slice(&[0u8; 4], GuestAddress(AVAIL))
        .expect("in RAM");
    mem.write_slice(&[0u8; 4], GuestAddress(USED))
        .expect("in RAM");
    let mut queues = [Some(q)];
    let mut avail_idx: u16 = 0;
    let (mut completions, mut used_bytes) = (0u64, 0u64);
    for _ in 0..8 {
        if input.is_empty() {
            break;
        }
        // The chain, and maybe an indirect table.
        let n = 1 + usize::from(input.u8()) % 6;
        let mut descs: Vec<Desc> = (0..n).map(|_| descriptor(&mut input)).collect();
        let indirect: Vec<Desc> = if input.u8() & 3 == 0 {
            let k = 1 + usize::from(input.u8()) % 4;
            descs[0] = (INDIRECT, 16 * k as u32, 4, 0);
            (0..k).map(|_| descriptor(&mut input)).collect()
        } else {
            Vec::new()
        };
        for (i, d) in descs.iter().enumerate() {
            write_desc(&mem, DESC + 16 * i as u64, *d);
        }
        for (i, d) in indirect.iter().enumerate() {
            write_desc(&mem, INDIRECT + 16 * i as u64, *d);
        }
        // Make chain 0 available.
        let slot = GuestAddress(AVAIL + 4 + 2 * u64::from(avail_idx % QSIZE));
        mem.write_obj(0u16, slot).expect("in RAM");
        avail_idx = avail_idx.wrapping_add(1);
        mem.write_obj(avail_idx, GuestAddress(AVAIL + 2))
            .expect("in RAM");
        let mut before = vec![0u8; RAM as usize];
        mem.read_slice(&mut before, GuestAddress(0))
            .expect("in RAM");
        let writable = writable_buffers(&before);
        let over_rings = writable.iter().any(|&(a, l)| overlaps(a, l, RINGS));
        let used_before: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("in RAM");
        let broken = dev.process(&mut queues, &mem).is_err();
        let mut after = vec![0u8; RAM as usize];
        mem.read_slice(&mut after, GuestAddress(0)).expect("in RAM");
        // Only the used ring and writable buffers changed.
        for (i, _) in before
            .iter()
            .zip(&after)
            .enumerate()
            .filter(|(_, (b, a))| b != a)
        {
            let at = i as u64;
            let allowed = (USED..USED_END).contains(&at)
                || writable
                    .iter()
                    .any(|&(addr, len)| overlaps(addr, len, (at, at + 1)));
            assert!(allowed, "the device wrote {at:#x}, in no writable buffer");
        }
        if broken || over_rings {
            // The device may have scribbled on its own rings: the ring
            // state is the device's word now; stop here.
            break;
        }
        let used_after: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("in RAM");
        assert_eq!(
            used_after,
            used_before.wrapping_add(1),
            "the chain was completed once"
        );
        let elem = USED + 4 + 8 * u64::from(used_before % QSIZE);
        let used_len: u32 = mem.read_obj(GuestAddress(elem + 4)).expect("in RAM");
        assert!(used_len <= MAX_REQUEST_BYTES, "used {used_len} > the cap");
        completions += 1;
        used_bytes += u64::from(used_len);
        let s = dev.stats();
        assert_eq!(
            (s.requests, s.bytes),
            (completions, used_bytes),
            "the counters add up"
        );
    }
}
