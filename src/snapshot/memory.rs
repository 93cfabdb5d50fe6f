//! Guest RAM to and from a snapshot's `memory` file.
//!
//! Saving writes each region at its offset in the file (regions back to
//! back, in guest-address order) and leaves all-zero pages as holes, so the
//! file takes on disk only what the guest has written (a page the guest
//! never touched reads as zero). Restoring maps each region of the file
//! `MAP_PRIVATE`: a page is read from the page cache when the guest first
//! touches it, instances restored from one snapshot share every page none
//! of them has written, and a write makes a private copy (the file is
//! never changed by a restored guest).

use std::fs::File;
use std::os::unix::fs::FileExt;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vm_memory::{GuestRegionMmap, MmapRegion};

/// The unit of "is this page zero".
pub const PAGE: usize = 4096;

/// What a save wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The file's length: all of guest RAM.
    pub apparent: u64,
    /// Bytes written (non-zero pages).
    pub data: u64,
}

/// Whether `page` is all zero bytes.
fn is_zero(page: &[u8]) -> bool {
    // Compare as u64 words: fast enough for GiBs (memory bandwidth bound).
    let (head, words, tail) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only splits the
        // slice at alignment boundaries, all three parts borrow `page`.
        unsafe { page.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Writes every region of `mem` to `file` (whose old contents are dropped),
/// runs of non-zero pages with one `pwrite` each, zero pages as holes.
pub fn save(mem: &GuestMemoryMmap, file: &File) -> std::io::Result<Written> {
    let total: u64 = mem.iter().map(|r| r.len()).sum();
    // Truncating to 0 first punches out whatever an earlier snapshot wrote.
    file.set_len(0)?;
    file.set_len(total)?;
    let mut offset = 0u64;
    let mut data = 0u64;
    for region in mem.iter() {
        let len = region.len() as usize;
        // SAFETY: `region.as_ptr()` is a live mapping of `len` bytes held by
        // `mem` for this whole call; every vCPU is paused (kvm/pause.rs) and
        // the event loop is this thread, so nothing writes it meanwhile (a
        // racing write would only change bytes, not make the read unsound
        // for u8).
        let bytes = unsafe { std::slice::from_raw_parts(region.as_ptr() as *const u8, len) };
        let mut page = 0;
        while page < len {
            if is_zero(&bytes[page..(page + PAGE).min(len)]) {
                page += PAGE;
                continue;
            }
            let start = page;
            while page < len && !is_zero(&bytes[page..(page + PAGE).min(len)]) {
                page += PAGE;
            }
            let end = page.min(len);
            file.write_all_at(&bytes[start..end], offset + start as u64)?;
            data += (end - start) as u64;
        }
        offset += len as u64;
    }
    file.sync_data()?;
    Ok(Written {
        apparent: total,
        data,
    })
}

/// Maps `file` as guest RAM laid out as `ranges` (from
/// `arch::x86_64::boot::ram_ranges`): each region `MAP_PRIVATE` at its
/// offset. The file must be exactly as long as the regions together.
pub fn map(file: &File, ranges: &[(GuestAddress, usize)]) -> Result<GuestMemoryMmap, String> {
    let want: u64 = ranges.iter().map(|r| r.1 as u64).sum();
    let have = file.metadata().map_err(|e| e.to_string())?.len();
    if have != want {
        return Err(format!(
            "memory file is {have} bytes, the guest has {want} bytes of RAM (truncated or not this snapshot's)"
        ));
    }
    let mut offset = 0u64;
    let mut regions = Vec::with_capacity(ranges.len());
    for &(addr, size) in ranges {
        let fd = file.try_clone().map_err(|e| e.to_string())?;
        let mapping: MmapRegion = MmapRegionBuilder::new(size)
            .with_file_offset(FileOffset::new(fd, offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| format!("mapping the memory file: {e}"))?;
        regions.push(
            GuestRegionMmap::new(mapping, addr)
                .ok_or("a guest region overflows the address space")?,
        );
        offset += size as u64;
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use vm_memory::Bytes;

    #[test]
    fn zero_pages_become_holes_and_map_back_privately() {
        let ranges = [
            (GuestAddress(0), 64 * PAGE),
            (GuestAddress(1 << 30), 16 * PAGE),
        ];
        let mem = GuestMemoryMmap::from_ranges(&ranges).unwrap();
        mem.write_obj(0xdead_beef_u32, GuestAddress(5 * PAGE as u64))
            .unwrap();
        mem.write_obj(7u8, GuestAddress(6 * PAGE as u64 + 4095))
            .unwrap();
        mem.write_obj(9u8, GuestAddress((1 << 30) + 3 * PAGE as u64))
            .unwrap();
        let dir = std::env::temp_dir().join(format!("tinyvmm-mem-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dir)
            .unwrap();
        let w = save(&mem, &file).unwrap();
        assert_eq!(w.apparent, 80 * PAGE as u64);
        assert_eq!(w.data, 3 * PAGE as u64, "three non-zero pages written");
        let blocks = file.metadata().unwrap().blocks() * 512;
        assert!(
            blocks <= 8 * PAGE as u64,
            "{blocks} bytes on disk: zero pages are holes"
        );

        let back = map(&file, &ranges).unwrap();
        assert_eq!(
            back.read_obj::<u32>(GuestAddress(5 * PAGE as u64)).unwrap(),
            0xdead_beef
        );
        assert_eq!(
            back.read_obj::<u8>(GuestAddress(6 * PAGE as u64 + 4095))
                .unwrap(),
            7
        );
        assert_eq!(
            back.read_obj::<u8>(GuestAddress((1 << 30) + 3 * PAGE as u64))
                .unwrap(),
            9
        );
        back.write_obj(1u8, GuestAddress(0)).unwrap();
        let mut first = [0u8; 1];
        file.read_exact_at(&mut first, 0).unwrap();
        assert_eq!(first, [0], "a restored guest's writes never reach the file");
        assert!(
            map(&file, &ranges[..1]).is_err(),
            "a size mismatch is refused"
        );
        std::fs::remove_file(&dir).unwrap();
    }
}
