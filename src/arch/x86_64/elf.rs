//! Reading an ELF64 kernel's program headers ourselves: linux-loader
//! loads the segments but does not hand the table back, and two checks
//! need it (the boot path's entry-in-segment check, compare's
//! dynamic-linking probe).

use std::io::{Read, Seek, SeekFrom};

/// One ELF64 program header: what the loader and the checks need of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type` (PT_LOAD = 1, PT_INTERP = 3, ...).
    pub kind: u32,
    /// `p_paddr`: where the segment is loaded.
    pub paddr: u64,
    /// `p_filesz`: bytes the file holds for it.
    pub filesz: u64,
}

/// ELF `p_type` of a loadable segment.
pub const PT_LOAD: u32 = 1;

/// The program headers of the little-endian ELF64 in `image` (whose ident
/// the caller has checked). An offset past 2^64 is `InvalidData`; a table
/// past the end of the file is `UnexpectedEof`.
pub fn program_headers<F: Read + Seek>(image: &mut F) -> std::io::Result<Vec<ProgramHeader>> {
    let mut ehdr = [0u8; 64];
    image.rewind()?;
    image.read_exact(&mut ehdr)?;
    let phoff = u64::from_le_bytes(ehdr[0x20..0x28].try_into().expect("8 bytes"));
    let phentsize = u64::from(u16::from_le_bytes([ehdr[0x36], ehdr[0x37]]));
    let phnum = u16::from_le_bytes([ehdr[0x38], ehdr[0x39]]);
    let mut phdr = [0u8; 56];
    let mut all = Vec::with_capacity(usize::from(phnum));
    for i in 0..u64::from(phnum) {
        let at = phentsize
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "program headers past the end of the file",
                )
            })?;
        image.seek(SeekFrom::Start(at))?;
        image.read_exact(&mut phdr)?;
        all.push(ProgramHeader {
            kind: u32::from_le_bytes(phdr[0..4].try_into().expect("4 bytes")),
            paddr: u64::from_le_bytes(phdr[0x18..0x20].try_into().expect("8 bytes")),
            filesz: u64::from_le_bytes(phdr[0x20..0x28].try_into().expect("8 bytes")),
        });
    }
    Ok(all)
}
