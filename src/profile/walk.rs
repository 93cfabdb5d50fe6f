//! Reading a sampled vCPU's call chain out of guest memory: a software
//! walk of the guest's own page tables (4- or 5-level, from CR3), and the
//! frame-pointer chain from RBP (each frame: the caller's RBP, then the
//! return address).
//!
//! The guest is hostile: every read is bounds-checked by vm-memory (an
//! address outside guest RAM is an error, not a fault), the walk is
//! bounded in depth, and a chain that does not look like one (unaligned,
//! not growing towards the stack's base, a return address outside the
//! allowed range, an unmapped page) ends the walk and is reported as
//! broken, for the caller to count.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// CR0.PG: paging on.
const CR0_PG: u64 = 1 << 31;
/// CR4.LA57: 5-level paging.
const CR4_LA57: u64 = 1 << 12;
/// EFER.LMA: long mode active.
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry: present.
const PTE_P: u64 = 1;
/// Page-table entry: a large page at this level (1 GiB in a PDPTE, 2 MiB in a PDE).
const PTE_PS: u64 = 1 << 7;
/// Bits 51:12 of an entry: the next table's (or page's) physical address.
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Most frames followed from one sample.
pub const MAX_DEPTH: usize = 32;
/// Largest step from one frame to its caller's: kernel stacks are 16 KiB
/// on x86-64 Linux; anything much larger is not a frame chain.
const MAX_FRAME: u64 = 64 << 10;

/// The registers a walk needs, copied out of `kvm_sregs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paging {
    /// CR0.
    pub cr0: u64,
    /// CR3 (the top-level table).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

impl Paging {
    /// The guest-physical address of `gva`, walking the guest's tables;
    /// `None` when unmapped, outside RAM, or in a paging mode other than
    /// long mode (or paging off, where the address is already physical).
    pub fn translate(&self, mem: &GuestMemoryMmap, gva: u64) -> Option<u64> {
        if self.cr0 & CR0_PG == 0 {
            return Some(gva);
        }
        if self.efer & EFER_LMA == 0 {
            return None; // 32-bit paging: not followed
        }
        let levels: u32 = if self.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
        let mut table = self.cr3 & PTE_ADDR;
        for level in (1..=levels).rev() {
            // Level 1 = PT (bits 20:12), 2 = PD, 3 = PDPT, 4 = PML4, 5 = PML5.
            let shift = 12 + 9 * (level - 1);
            let index = (gva >> shift) & 0x1ff;
            let entry: u64 = mem.read_obj(GuestAddress(table + index * 8)).ok()?;
            if entry & PTE_P == 0 {
                return None;
            }
            if (level == 2 || level == 3) && entry & PTE_PS != 0 {
                let page_mask = (1u64 << shift) - 1;
                return Some((entry & PTE_ADDR & !page_mask) | (gva & page_mask));
            }
            table = entry & PTE_ADDR;
        }
        Some(table | (gva & 0xfff))
    }

    /// Reads the 8-byte word at guest-virtual `gva` (8-aligned: never
    /// across a page).
    pub fn read_u64(&self, mem: &GuestMemoryMmap, gva: u64) -> Option<u64> {
        if gva % 8 != 0 {
            return None;
        }
        mem.read_obj(GuestAddress(self.translate(mem, gva)?)).ok()
    }
}

/// How a frame-pointer walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// RBP or a saved RBP was 0, or a return address was 0: the outermost frame.
    Complete,
    /// `MAX_DEPTH` frames were followed.
    DepthLimit,
    /// Something that is not a frame chain (unaligned, not growing, an
    /// unmapped or out-of-RAM page, a return address not accepted).
    Broken,
}

/// What the caller of a walk says about one return address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not a return address (e.g. outside the text): the chain is broken.
    Reject,
    /// A return address into a function that keeps a frame: go on.
    Follow,
    /// A return address into a function that keeps no frame pointer:
    /// kept, and the walk ends there (its RBP is not a frame).
    Last,
}

/// Follows RBP from `rbp`: pushes each return address onto `out` (the
/// leaf's caller first). `judge` says what a return address is (e.g.
/// whether it lies in the kernel's text, in a function with a frame).
pub fn frame_chain(
    mem: &GuestMemoryMmap,
    paging: &Paging,
    mut rbp: u64,
    judge: impl Fn(u64) -> Frame,
    out: &mut Vec<u64>,
) -> WalkEnd {
    for _ in 0..MAX_DEPTH {
        if rbp == 0 {
            return WalkEnd::Complete;
        }
        let Some(next) = paging.read_u64(mem, rbp) else {
            return WalkEnd::Broken;
        };
        let Some(ret) = rbp.checked_add(8).and_then(|a| paging.read_u64(mem, a)) else {
            return WalkEnd::Broken;
        };
        if ret == 0 {
            return WalkEnd::Complete;
        }
        let frame = judge(ret);
        if frame == Frame::Reject {
            return WalkEnd::Broken;
        }
        out.push(ret);
        if next == 0 || frame == Frame::Last {
            return WalkEnd::Complete;
        }
        // The caller's frame lies further up the stack, not far away.
        if next <= rbp || next - rbp > MAX_FRAME {
            return WalkEnd::Broken;
        }
        rbp = next;
    }
    WalkEnd::DepthLimit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 MiB of RAM with a 4-level map at 0x1000: PML4 -> PDPT 0x2000 ->
    /// PD 0x3000 -> PT 0x4000; virtual 0xffff_8000_0000_0000 + n*4K maps
    /// physical 0x100000 + n*4K for n < 16; PD entry 1 is a 2 MiB page at 2 MiB.
    fn guest() -> (GuestMemoryMmap, Paging) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let base = 0xffff_8000_0000_0000u64;
        let w = |a: u64, v: u64| mem.write_obj(v, GuestAddress(a)).unwrap();
        w(0x1000 + ((base >> 39) & 0x1ff) * 8, 0x2000 | PTE_P);
        w(0x2000, 0x3000 | PTE_P);
        w(0x3000, 0x4000 | PTE_P);
        w(0x3008, 0x20_0000 | PTE_P | PTE_PS);
        for n in 0..16u64 {
            w(0x4000 + n * 8, (0x10_0000 + n * 0x1000) | PTE_P);
        }
        let paging = Paging {
            cr0: CR0_PG,
            cr3: 0x1000,
            cr4: 0,
            efer: EFER_LMA,
        };
        (mem, paging)
    }

    const BASE: u64 = 0xffff_8000_0000_0000;

    #[test]
    fn translation_follows_four_levels_and_large_pages() {
        let (mem, p) = guest();
        assert_eq!(p.translate(&mem, BASE + 0x1234), Some(0x10_1234));
        assert_eq!(
            p.translate(&mem, BASE + 0x20_0000 + 0x5678),
            Some(0x20_5678)
        );
        assert_eq!(
            p.translate(&mem, BASE + 0x40_0000),
            None,
            "PD entry 2 absent"
        );
        assert_eq!(p.translate(&mem, 0x1000), None, "PML4 entry 0 absent");
        let off = Paging { cr0: 0, ..p };
        assert_eq!(off.translate(&mem, 0x1234), Some(0x1234));
        let legacy = Paging { efer: 0, ..p };
        assert_eq!(legacy.translate(&mem, BASE), None);
    }

    #[test]
    fn hostile_tables_end_in_none_not_a_fault() {
        let (mem, mut p) = guest();
        // CR3 outside RAM; an entry pointing outside RAM.
        p.cr3 = 0xffff_f000_0000;
        assert_eq!(p.translate(&mem, BASE), None);
        let (mem, p) = guest();
        mem.write_obj(0x7fff_ffff_f000u64 | PTE_P, GuestAddress(0x4000))
            .unwrap();
        assert_eq!(p.read_u64(&mem, BASE), None);
        assert_eq!(p.read_u64(&mem, BASE + 4), None, "unaligned");
    }

    #[test]
    fn a_frame_chain_is_followed_to_its_end() {
        let (mem, p) = guest();
        // Frames at BASE+0x100 -> +0x200 -> +0x300 (outermost: saved RBP 0).
        let w = |va: u64, v: u64| {
            let pa = p.translate(&mem, va).unwrap();
            mem.write_obj(v, GuestAddress(pa)).unwrap();
        };
        w(BASE + 0x100, BASE + 0x200);
        w(BASE + 0x108, 0xffff_ffff_8100_0010);
        w(BASE + 0x200, BASE + 0x300);
        w(BASE + 0x208, 0xffff_ffff_8100_0020);
        w(BASE + 0x300, 0);
        w(BASE + 0x308, 0xffff_ffff_8100_0030);
        let text = |a: u64| {
            if a >= 0xffff_ffff_8000_0000 {
                Frame::Follow
            } else {
                Frame::Reject
            }
        };
        let mut out = Vec::new();
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, text, &mut out),
            WalkEnd::Complete
        );
        assert_eq!(
            out,
            [
                0xffff_ffff_8100_0010,
                0xffff_ffff_8100_0020,
                0xffff_ffff_8100_0030
            ]
        );
        // A return address outside the text breaks the chain.
        w(BASE + 0x208, 0x1234);
        out.clear();
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, text, &mut out),
            WalkEnd::Broken
        );
        assert_eq!(out.len(), 1);
        // A caller without a frame pointer ends the chain, kept.
        out.clear();
        let last = |_| Frame::Last;
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, last, &mut out),
            WalkEnd::Complete
        );
        assert_eq!(out, [0xffff_ffff_8100_0010]);
    }

    #[test]
    fn loops_and_wild_pointers_are_broken_chains() {
        let (mem, p) = guest();
        let w = |va: u64, v: u64| {
            let pa = p.translate(&mem, va).unwrap();
            mem.write_obj(v, GuestAddress(pa)).unwrap();
        };
        let any = |_| Frame::Follow;
        // A frame pointing at itself, and one pointing down the stack.
        w(BASE + 0x100, BASE + 0x100);
        w(BASE + 0x108, 1);
        let mut out = Vec::new();
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, any, &mut out),
            WalkEnd::Broken
        );
        w(BASE + 0x100, BASE + 0x80);
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, any, &mut out),
            WalkEnd::Broken
        );
        // Unmapped, unaligned, far away.
        assert_eq!(
            frame_chain(&mem, &p, 0x1000, any, &mut out),
            WalkEnd::Broken
        );
        assert_eq!(
            frame_chain(&mem, &p, BASE + 3, any, &mut out),
            WalkEnd::Broken
        );
        w(BASE + 0x100, BASE + 0x100 + (1 << 20));
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, any, &mut out),
            WalkEnd::Broken
        );
        // Nothing to follow.
        assert_eq!(frame_chain(&mem, &p, 0, any, &mut out), WalkEnd::Complete);
    }

    #[test]
    fn a_chain_of_maximal_depth_stops_at_the_limit() {
        let (mem, p) = guest();
        for i in 0..(MAX_DEPTH as u64 + 4) {
            let va = BASE + 0x100 + i * 0x40;
            let pa = p.translate(&mem, va).unwrap();
            mem.write_obj(va + 0x40, GuestAddress(pa)).unwrap();
            mem.write_obj(0xffff_ffff_8100_0000u64 + i, GuestAddress(pa + 8))
                .unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(
            frame_chain(&mem, &p, BASE + 0x100, |_| Frame::Follow, &mut out),
            WalkEnd::DepthLimit
        );
        assert_eq!(out.len(), MAX_DEPTH);
    }
}
