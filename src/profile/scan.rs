//! A call chain for code without frame pointers (this project's kernel is
//! built with `CONFIG_UNWINDER_GUESS`): scan the stack from RSP up to the
//! top of its 16 KiB-aligned stack for words that are return addresses,
//! as Linux's own "guess" unwinder does, but keep only those that a
//! `call` instruction right before them can explain.
//!
//! A word `r` in the text is taken when the five bytes before it are a
//! direct `call rel32` (e8) whose target is the function we are in (the
//! strict case: `r` returns into our caller). When the scan finds none,
//! the chain may have gone through an indirect call or a tail call: the
//! first word after an `e8` or `ff /2` call of any target is taken instead
//! (counted by the caller as a guessed link). Every read goes through the
//! guest's page tables (`walk::Paging`), bounds-checked.

use vm_memory::GuestMemoryMmap;

use super::symbols::Symbols;
use super::walk::{MAX_DEPTH, Paging};

/// Kernel stacks on x86-64 Linux (`THREAD_SIZE`): 16 KiB, aligned.
pub const STACK_SIZE: u64 = 16 << 10;

/// Most stack words one scan reads (restarts included): a bound on the
/// work per sample whatever the stack holds.
pub const SCAN_BUDGET: u32 = 2048;

/// What a scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Links taken because no strict one was found (indirect or tail calls).
    pub guessed: u32,
    /// Whether the scan stopped at an unreadable stack word.
    pub unreadable: bool,
}

/// Reads `buf.len()` bytes at guest-virtual `gva` (across pages).
fn read_bytes(mem: &GuestMemoryMmap, paging: &Paging, gva: u64, buf: &mut [u8]) -> Option<()> {
    use vm_memory::{Bytes, GuestAddress};
    let mut done = 0;
    while done < buf.len() {
        let va = gva.checked_add(done as u64)?;
        let in_page = (0x1000 - (va & 0xfff)) as usize;
        let n = in_page.min(buf.len() - done);
        let pa = paging.translate(mem, va)?;
        mem.read_slice(&mut buf[done..done + n], GuestAddress(pa))
            .ok()?;
        done += n;
    }
    Some(())
}

/// The call before return address `ret`: `Some(Some(target))` for a
/// direct `call rel32`, `Some(None)` for an indirect `call` (ff /2), or
/// `None` when no call ends at `ret`.
fn call_before(mem: &GuestMemoryMmap, paging: &Paging, ret: u64) -> Option<Option<u64>> {
    let mut code = [0u8; 7];
    read_bytes(mem, paging, ret.checked_sub(7)?, &mut code)?;
    if code[2] == 0xe8 {
        let rel = i32::from_le_bytes([code[3], code[4], code[5], code[6]]);
        return Some(Some(ret.wrapping_add_signed(i64::from(rel))));
    }
    // ff /2: ModRM reg field 2. Lengths 2 (ff d0+r), 3 (ff 50+r disp8, or
    // ff 14 24 with a SIB), 6 (ff 15 rip-relative, ff 90+r disp32), 7 (SIB
    // with disp32); a REX prefix (41) before adds one, which these cover.
    let modrm_is_call = |at: usize| code[at] == 0xff && (code[at + 1] >> 3) & 7 == 2;
    let indirect = (modrm_is_call(5) && code[6] >> 6 == 3)
        || (modrm_is_call(4) && code[5] >> 6 == 1)
        || (modrm_is_call(4) && code[5] & 7 == 4 && code[5] >> 6 == 0)
        || (modrm_is_call(1) && (code[2] == 0x15 || code[2] >> 6 == 2))
        || (modrm_is_call(0) && code[1] >> 6 == 2 && code[1] & 7 == 4);
    indirect.then_some(None)
}

/// Scans the stack above `rsp` for the return addresses of the chain that
/// leads to `rip`, pushing them onto `out` (our caller first), at most
/// `MAX_DEPTH` in all.
pub fn scan_chain(
    mem: &GuestMemoryMmap,
    paging: &Paging,
    symbols: &Symbols,
    rip: u64,
    rsp: u64,
    out: &mut Vec<u64>,
) -> ScanResult {
    let mut result = ScanResult::default();
    let top = (rsp | (STACK_SIZE - 1)).saturating_add(1);
    let mut current = symbols.start_of(rip);
    let mut at = rsp & !7;
    let mut loose: Option<(u64, u64)> = None; // (stack slot, word) of the first loose candidate
    let mut budget = SCAN_BUDGET;
    // The stack page being scanned, read once (one walk of the tables per page).
    let mut page = [0u8; 4096];
    let mut page_va = None;
    while at < top && out.len() < MAX_DEPTH && budget > 0 {
        budget -= 1;
        let va = at & !0xfff;
        if page_va != Some(va) {
            if read_bytes(mem, paging, va, &mut page).is_none() {
                result.unreadable = true;
                break;
            }
            page_va = Some(va);
        }
        let off = (at & 0xfff) as usize;
        let word = u64::from_le_bytes(page[off..off + 8].try_into().expect("8 bytes"));
        if symbols.in_text(word) {
            match call_before(mem, paging, word) {
                Some(Some(target))
                    if Some(target) == current || symbols.start_of(target) == current =>
                {
                    out.push(word);
                    current = symbols.start_of(word);
                    loose = None;
                }
                Some(_) if loose.is_none() => loose = Some((at, word)),
                _ => {}
            }
        }
        at += 8;
        if at >= top {
            // No strict caller above: take the first plausible one and go on from there.
            if let Some((slot, word)) = loose.take() {
                out.push(word);
                result.guessed += 1;
                current = symbols.start_of(word);
                at = slot + 8;
            }
        }
    }
    result
}
