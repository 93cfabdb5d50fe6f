//! The `kernel_image` fuzz target: the fuzzer's bytes as a kernel image
//! (ELF vmlinux or bzImage) loaded by `arch::x86_64::boot::load_kernel`
//! into a small guest memory, and the same bytes through
//! `check_bzimage_header` on its own. A kernel that loads must enter
//! inside what was loaded, and a bzImage that loads must have passed the
//! header checks.

use std::io::Cursor;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::boot::{check_bzimage_header, load_kernel};
use crate::arch::x86_64::layout::HIMEM_START;

/// Guest RAM: 4 MiB, so a kernel has room above 1 MiB, and segments that
/// ask for more fail.
const RAM_SIZE: usize = 4 << 20;
/// ELF program header type of a loadable segment.
const PT_LOAD: u32 = 1;

/// Runs one fuzz input as a kernel image; panics if an invariant breaks.
pub fn kernel_image(data: &[u8]) {
    let header = check_bzimage_header(data, data.len() as u64);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("guest memory");
    let Ok(kernel) = load_kernel(&mem, &mut Cursor::new(data)) else {
        return;
    };
    let entry = kernel.entry.0;
    assert!(entry < kernel.end, "entry {entry:#x} at or past the end");
    if data.starts_with(b"\x7fELF") {
        assert!(kernel.setup_header.is_none());
        let segments = elf_segments(data);
        let inside = segments
            .iter()
            .any(|&(start, end)| (start..end).contains(&entry));
        assert!(
            inside,
            "ELF entry {entry:#x} is in none of its loaded segments {segments:x?}"
        );
    } else {
        assert!(header.is_ok(), "a bzImage loaded despite {header:?}");
        let hdr = kernel.setup_header.expect("a bzImage has a setup header");
        let load = u64::from(hdr.code32_start);
        assert!(load >= HIMEM_START, "loaded at {load:#x}, below 1 MiB");
        assert!(
            (load..kernel.end).contains(&entry),
            "bzImage entry {entry:#x} outside its image [{load:#x}, {:#x})",
            kernel.end
        );
    }
}

/// The [p_paddr, p_paddr + p_filesz) of each loadable, non-empty segment
/// of a little-endian ELF64 image, read independently of the loader.
fn elf_segments(data: &[u8]) -> Vec<(u64, u64)> {
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    // linux-loader insists on e_phentsize = 56 and reads them back to back.
    let (Some(phoff), Some(phnum)) = (u64_at(0x20), u16_at(0x38)) else {
        return Vec::new();
    };
    let mut segments = Vec::new();
    for i in 0..usize::from(phnum) {
        let Some(at) = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i * 56))
        else {
            break;
        };
        let (Some(kind), Some(paddr), Some(filesz)) =
            (u32_at(at), u64_at(at + 0x18), u64_at(at + 0x20))
        else {
            break;
        };
        if kind == PT_LOAD && filesz > 0 {
            segments.push((paddr, paddr.saturating_add(filesz)));
        }
    }
    segments
}
