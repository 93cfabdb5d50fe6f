//! Unit tests of `boot.rs`.

use super::*;
use std::io::Cursor;
use vm_memory::ByteValued;
use vm_memory::Bytes;

fn mem(size: u64) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&ram_ranges(size)).unwrap()
}

/// A minimal bzImage header: 4 setup sectors, `syssize` paragraphs.
fn bzimage(syssize: u32, file_len: usize) -> Vec<u8> {
    let mut img = vec![0u8; file_len];
    img[0x1f1] = 4;
    img[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
    img[0x1fe..0x200].copy_from_slice(&BOOT_FLAG_MAGIC.to_le_bytes());
    img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = LOADED_HIGH;
    img[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes());
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
    img[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
    img
}

#[test]
fn ram_is_split_around_the_mmio_gap() {
    assert_eq!(ram_ranges(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
    let r = ram_ranges(4 << 30);
    assert_eq!(r[0], (GuestAddress(0), 3 << 30));
    assert_eq!(r[1], (GuestAddress(4 << 30), 1 << 30));
}

#[test]
fn e820_describes_exactly_the_ram() {
    let small = e820_entries(128 << 20);
    assert_eq!(small.len(), 2);
    assert_eq!((small[0].addr, small[0].size), (0, EBDA_START));
    assert_eq!(
        (small[1].addr, small[1].size),
        (HIMEM_START, (128 << 20) - HIMEM_START)
    );
    let big = e820_entries(5 << 30);
    assert_eq!(big.len(), 3);
    assert_eq!(big[1].addr + big[1].size, MMIO_GAP_START);
    assert_eq!((big[2].addr, big[2].size), (MMIO_GAP_END, 2 << 30));
    let total: u64 = big.iter().map(|e| e.size).sum();
    assert_eq!(total, (5 << 30) - (HIMEM_START - EBDA_START));
}

#[test]
fn garbage_is_not_a_kernel() {
    let m = mem(16 << 20);
    for img in [vec![], vec![0u8], vec![0x5au8; 4096]] {
        let err = load_kernel(&m, &mut Cursor::new(img.as_slice())).unwrap_err();
        assert!(matches!(err, BootError::UnknownFormat), "{err}");
    }
}

#[test]
fn elf_for_another_machine_is_refused() {
    let m = mem(16 << 20);
    let mut elf = vec![0u8; 128];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 1; // ELFCLASS32
    elf[5] = 1;
    let err = load_kernel(&m, &mut Cursor::new(elf.as_slice())).unwrap_err();
    assert!(err.to_string().contains("64-bit"), "{err}");
    elf[4] = 2;
    elf[5] = 2; // big endian
    let err = load_kernel(&m, &mut Cursor::new(elf.as_slice())).unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");
    elf[5] = 1;
    elf[18] = 3; // EM_386
    let err = load_kernel(&m, &mut Cursor::new(elf.as_slice())).unwrap_err();
    assert!(err.to_string().contains("EM_X86_64"), "{err}");
}

#[test]
fn valid_bzimage_header_loads_and_enters_at_plus_0x200() {
    let m = mem(16 << 20);
    let img = bzimage(0x100, 5 * 512 + 0x1000);
    let k = load_kernel(&m, &mut Cursor::new(img.as_slice())).unwrap();
    assert_eq!(k.entry, GuestAddress(0x100200));
    assert!(k.setup_header.is_some());
}

#[test]
fn truncated_bzimage_is_refused() {
    let img = bzimage(0x1000, 5 * 512 + 0x1000);
    let err = check_bzimage_header(&img, img.len() as u64).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn bzimage_header_checks_name_the_problem() {
    let len = 5 * 512 + 0x1000;
    let cases: [(usize, &[u8], &str); 4] = [
        (0x206, &[0x05, 0x02], "older than 2.06"),
        (0x236, &[0, 0], "64-bit"),
        (0x1f1, &[200], "setup_sects"),
        (0x1fe, &[0, 0], "0xaa55"),
    ];
    for (off, bytes, want) in cases {
        let mut img = bzimage(0x100, len);
        img[off..off + bytes.len()].copy_from_slice(bytes);
        let err = check_bzimage_header(&img, len as u64)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err} should mention {want}");
    }
    let short = &bzimage(0x100, len)[..0x220];
    let err = check_bzimage_header(short, 0x220).unwrap_err().to_string();
    assert!(err.contains("ends inside the setup header"), "{err}");
}

#[test]
fn initrd_goes_to_the_top_of_low_memory_page_aligned() {
    let m = mem(16 << 20);
    let kernel = LoadedKernel {
        entry: GuestAddress(HIMEM_START),
        end: 2 << 20,
        setup_header: None,
    };
    let data = vec![0xabu8; 5000];
    let got = load_initrd(&m, &kernel, 16 << 20, &mut data.as_slice(), 5000).unwrap();
    assert_eq!(got.addr.raw_value() % 4096, 0);
    assert!(got.addr.raw_value() + 5000 <= 16 << 20);
    assert_eq!(m.read_obj::<u8>(got.addr).unwrap(), 0xab);
    let huge = vec![0u8; 15 << 20];
    let err = load_initrd(&m, &kernel, 16 << 20, &mut huge.as_slice(), 15 << 20);
    assert!(matches!(err, Err(BootError::InitrdTooLarge { .. })));
}

#[test]
fn boot_params_carry_cmdline_initrd_and_e820() {
    let m = mem(64 << 20);
    let kernel = LoadedKernel {
        entry: GuestAddress(HIMEM_START),
        end: 2 << 20,
        setup_header: None,
    };
    let initrd = LoadedInitrd {
        addr: GuestAddress(0x300_0000),
        size: 1234,
    };
    write_boot_params(&m, &kernel, Some(initrd), "console=ttyS0", 64 << 20).unwrap();
    let p = read_boot_params(&m).unwrap();
    assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
    assert_eq!({ p.hdr.ramdisk_image }, 0x300_0000);
    assert_eq!({ p.hdr.ramdisk_size }, 1234);
    assert_eq!({ p.hdr.boot_flag }, BOOT_FLAG_MAGIC);
    assert_eq!(p.e820_entries, 2);
    let mut buf = [0u8; 14];
    m.read_slice(&mut buf, GuestAddress(CMDLINE_START)).unwrap();
    assert_eq!(&buf, b"console=ttyS0\0");
    let long = "x".repeat(CMDLINE_MAX_SIZE);
    assert!(write_boot_params(&m, &kernel, None, &long, 64 << 20).is_err());
}

/// Reads `boot_params` back, as the guest kernel will.
fn read_boot_params(mem: &GuestMemoryMmap) -> Option<boot_params> {
    use vm_memory::Bytes;
    let mut params = boot_params::default();
    mem.read_slice(params.as_mut_slice(), GuestAddress(ZERO_PAGE_START))
        .ok()?;
    Some(params)
}

/// A minimal x86-64 ELF: one PT_LOAD segment of `code` at `paddr`, entry `entry`.
fn elf(paddr: u64, entry: u64, code: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 0x100];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // ELFCLASS64
    e[5] = 1; // little endian
    e[6] = 1; // EV_CURRENT
    e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    e[20..24].copy_from_slice(&1u32.to_le_bytes());
    e[24..32].copy_from_slice(&entry.to_le_bytes());
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    e[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 64;
    e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    e[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes()); // p_offset
    e[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes()); // p_vaddr
    e[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes()); // p_paddr
    e[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    e[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64).to_le_bytes());
    e.extend_from_slice(code);
    e
}

#[test]
fn an_elf_entry_outside_its_loaded_segments_is_refused() {
    let m = mem(16 << 20);
    let code = [0xf4u8; 0x100];
    let good = elf(0x20_0000, 0x20_0010, &code);
    assert!(load_kernel(&m, &mut Cursor::new(good.as_slice())).is_ok());
    // Above HIMEM_START and below the image's end, but before its segment.
    let below = elf(0x20_0000, 0x18_0000, &code);
    let err = load_kernel(&m, &mut Cursor::new(below.as_slice())).unwrap_err();
    assert!(
        matches!(
            err,
            BootError::EntryOutsideImage {
                entry: 0x18_0000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_elf_entry_past_its_segments_file_bytes_is_refused() {
    // Found by the kernel_image fuzz target: an entry inside p_memsz but
    // past p_filesz lies in memory the image never wrote.
    let m = mem(16 << 20);
    let mut img = elf(0x20_0000, 0x20_0200, &[0xf4u8; 0x100]);
    img[64 + 40..64 + 48].copy_from_slice(&0x1000u64.to_le_bytes()); // p_memsz
    let err = load_kernel(&m, &mut Cursor::new(img.as_slice())).unwrap_err();
    assert!(matches!(err, BootError::EntryOutsideImage { .. }), "{err}");
}
