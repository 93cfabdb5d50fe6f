//! Kernel, initrd and `boot_params` (the "zero page") for the 64-bit Linux
//! boot protocol: <https://www.kernel.org/doc/html/latest/arch/x86/boot.html>.
//!
//! linux-loader reads the ELF or bzImage into guest memory; we check what it
//! does not (a truncated bzImage, an ELF for another machine), place the
//! initrd, and fill in `boot_params` with the command line and the e820 map.

use std::io::{Read, Seek, SeekFrom};

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use super::elf::{PT_LOAD, ProgramHeader, program_headers};
use super::layout::*;

/// e820 type of usable RAM.
const E820_RAM: u32 = 1;
/// "HdrS": the setup header's magic, at offset 0x202 of a bzImage.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Boot sector signature at 0x1fe.
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// Oldest boot protocol we take: 2.06 adds `cmdline_size`, 2.12 the 64-bit
/// entry flag; we insist on `XLF_KERNEL_64` below, so 2.06 is the floor.
const MIN_BOOT_PROTOCOL: u16 = 0x0206;
/// `xloadflags` bit 0: the kernel has the 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1;
/// `type_of_loader` value for "undefined boot loader".
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000.
const LOADED_HIGH: u8 = 1;
/// Offset of the 64-bit entry from the start of the protected-mode kernel.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Highest initrd address for kernels that do not say (ELF vmlinux): the
/// protocol's historical default.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// Why a kernel or initrd could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Neither an ELF nor a bzImage.
    #[error("not a kernel image: neither ELF (\\x7fELF) nor bzImage (HdrS at 0x202)")]
    UnknownFormat,
    /// The ELF is not a little-endian x86_64 executable.
    #[error("ELF kernel is not for x86_64: {0}")]
    ElfMachine(&'static str),
    /// linux-loader refused the ELF.
    #[error("ELF kernel: {0}")]
    Elf(linux_loader::loader::Error),
    /// A bzImage header check failed.
    #[error("bzImage: {0}")]
    BzImageHeader(String),
    /// linux-loader refused the bzImage.
    #[error("bzImage: {0}")]
    BzImage(linux_loader::loader::Error),
    /// The image loads nothing or enters outside what it loads.
    #[error("kernel entry point {entry:#x} is outside the loaded image [{start:#x}, {end:#x})")]
    EntryOutsideImage { entry: u64, start: u64, end: u64 },
    /// The image could not be read.
    #[error("reading the kernel: {0}")]
    Read(std::io::Error),
    /// The initrd does not fit.
    #[error(
        "initrd of {size} bytes does not fit in guest memory below {max:#x} after the kernel (ends at {kernel_end:#x})"
    )]
    InitrdTooLarge {
        size: u64,
        max: u64,
        kernel_end: u64,
    },
    /// The initrd could not be copied into guest memory.
    #[error("reading the initrd: {0}")]
    InitrdRead(String),
    /// The command line is too long for this kernel.
    #[error("command line of {len} bytes is longer than this kernel's limit of {max}")]
    CmdlineTooLong { len: usize, max: usize },
    /// Writing boot structures into guest memory failed.
    #[error("writing {0} into guest memory failed")]
    GuestWrite(&'static str),
}

/// A kernel in guest memory, ready to be entered.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    /// Address of the 64-bit entry point (RIP at boot).
    pub entry: GuestAddress,
    /// First guest address after the kernel image.
    pub end: u64,
    /// The bzImage setup header, copied into `boot_params.hdr`.
    pub setup_header: Option<setup_header>,
}

/// Where the initrd went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedInitrd {
    /// Guest address of the first byte.
    pub addr: GuestAddress,
    /// Size in bytes.
    pub size: u64,
}

/// Guest RAM ranges for `size` bytes: below the MMIO gap, then above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// End of RAM below the MMIO gap.
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_GAP_START)
}

/// The e820 map: what the guest may use as RAM. The page below 1 MiB from
/// the EBDA up (MP table, legacy BIOS area) is left out, as is the MMIO gap.
pub fn e820_entries(size: u64) -> Vec<boot_e820_entry> {
    let ram = |addr: u64, end: u64| boot_e820_entry {
        addr,
        size: end - addr,
        r#type: E820_RAM,
    };
    let mut map = vec![ram(0, EBDA_START), ram(HIMEM_START, low_ram_end(size))];
    if size > MMIO_GAP_START {
        map.push(ram(MMIO_GAP_END, MMIO_GAP_END + size - MMIO_GAP_START));
    }
    map
}

/// Reads enough of an image to tell ELF from bzImage and loads it.
pub fn load_kernel<F>(mem: &GuestMemoryMmap, image: &mut F) -> Result<LoadedKernel, BootError>
where
    F: Read + ReadVolatile + Seek,
{
    let mut head = [0u8; 0x270];
    let len = read_up_to(image, &mut head).map_err(BootError::Read)?;
    let head = &head[..len];
    let highmem = Some(GuestAddress(HIMEM_START));
    if head.starts_with(b"\x7fELF") {
        check_elf_ident(head)?;
        let res = Elf::load(mem, None, image, highmem).map_err(BootError::Elf)?;
        let kernel = LoadedKernel {
            entry: res.kernel_load,
            end: res.kernel_end,
            setup_header: None,
        };
        check_entry(&kernel, HIMEM_START)?;
        check_entry_in_segment(image, kernel.entry.raw_value(), kernel.end)?;
        return Ok(kernel);
    }
    if head.len() < 0x206
        || u32::from_le_bytes(head[0x202..0x206].try_into().unwrap()) != HDRS_MAGIC
    {
        return Err(BootError::UnknownFormat);
    }
    let file_len = image.seek(SeekFrom::End(0)).map_err(BootError::Read)?;
    check_bzimage_header(head, file_len)?;
    let res = BzImage::load(mem, None, image, highmem).map_err(BootError::BzImage)?;
    let kernel = LoadedKernel {
        entry: res.kernel_load.unchecked_add(BZIMAGE_64BIT_ENTRY_OFFSET),
        end: res.kernel_end,
        setup_header: res.setup_header,
    };
    // The 64-bit entry must lie inside the protected-mode code loaded.
    check_entry(&kernel, res.kernel_load.raw_value())?;
    Ok(kernel)
}

fn read_up_to<F: Read + Seek>(image: &mut F, buf: &mut [u8]) -> std::io::Result<usize> {
    image.rewind()?;
    let mut total = 0;
    while total < buf.len() {
        match image.read(&mut buf[total..])? {
            0 => break,
            n => total += n,
        }
    }
    Ok(total)
}

/// linux-loader checks the magic and endianness but not the class or machine.
fn check_elf_ident(head: &[u8]) -> Result<(), BootError> {
    if head.len() < 64 {
        return Err(BootError::ElfMachine("file ends inside the ELF header"));
    }
    if head[4] != 2 {
        return Err(BootError::ElfMachine(
            "not a 64-bit ELF (EI_CLASS is not ELFCLASS64)",
        ));
    }
    if head[5] != 1 {
        return Err(BootError::ElfMachine(
            "big-endian ELF (EI_DATA is not ELFDATA2LSB)",
        ));
    }
    if u16::from_le_bytes([head[18], head[19]]) != 62 {
        return Err(BootError::ElfMachine("e_machine is not EM_X86_64"));
    }
    Ok(())
}

fn check_entry(kernel: &LoadedKernel, start: u64) -> Result<(), BootError> {
    let entry = kernel.entry.raw_value();
    if kernel.end <= start || entry >= kernel.end {
        return Err(BootError::EntryOutsideImage {
            entry,
            start,
            end: kernel.end,
        });
    }
    Ok(())
}

/// The ELF entry point must lie inside a loaded (PT_LOAD) segment:
/// linux-loader only checks that it is below the image's end, so an entry
/// below every segment would start the vCPU in memory the image never wrote.
fn check_entry_in_segment<F: Read + Seek>(
    image: &mut F,
    entry: u64,
    end: u64,
) -> Result<(), BootError> {
    let headers = program_headers(image).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            BootError::ElfMachine("program headers past the end of the file")
        }
        _ => BootError::Read(e),
    })?;
    // p_filesz, not p_memsz: the tail past the file's bytes is never written.
    let inside =
        |h: &ProgramHeader| h.kind == PT_LOAD && entry >= h.paddr && entry - h.paddr < h.filesz;
    if headers.iter().any(inside) {
        return Ok(());
    }
    Err(BootError::EntryOutsideImage {
        entry,
        start: HIMEM_START,
        end,
    })
}

/// What linux-loader leaves unchecked in a bzImage header (see the boot
/// protocol's "The real-mode kernel header"): protocol version, the 64-bit
/// entry, a sane `setup_sects`, and that the file holds `syssize` paragraphs
/// of protected-mode code (a truncated image would otherwise boot garbage).
pub fn check_bzimage_header(head: &[u8], file_len: u64) -> Result<(), BootError> {
    let bad = |why: String| Err(BootError::BzImageHeader(why));
    let u16_at = |off: usize| u16::from_le_bytes([head[off], head[off + 1]]);
    let u32_at = |off: usize| u32::from_le_bytes(head[off..off + 4].try_into().unwrap());
    if head.len() < 0x238 {
        return bad(format!(
            "file of {file_len} bytes ends inside the setup header"
        ));
    }
    if u16_at(0x1fe) != BOOT_FLAG_MAGIC {
        return bad("boot flag at 0x1fe is not 0xaa55".into());
    }
    let version = u16_at(0x206);
    if version < MIN_BOOT_PROTOCOL {
        return bad(format!(
            "boot protocol {}.{:02} is older than 2.06",
            version >> 8,
            version & 0xff
        ));
    }
    if u16_at(0x236) & XLF_KERNEL_64 == 0 {
        return bad("no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags)".into());
    }
    if head[0x211] & LOADED_HIGH == 0 {
        return bad("not a bzImage (LOADED_HIGH not set in loadflags)".into());
    }
    // setup_sects counts 512-byte sectors of real-mode code; 0 means 4. Real
    // kernels use < 64; anything near the field's limit is not a kernel.
    let setup_sects = match head[0x1f1] {
        0 => 4,
        n if n > 64 => {
            return bad(format!(
                "setup_sects = {n} is implausible (a kernel has < 64)"
            ));
        }
        n => u64::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    let protected = u64::from(u32_at(0x1f4)) * 16;
    if protected == 0 || setup_size + protected > file_len {
        return bad(format!(
            "truncated: the header promises {} bytes ({} setup + {} kernel), the file has {}",
            setup_size + protected,
            setup_size,
            protected,
            file_len
        ));
    }
    Ok(())
}

/// Copies the initrd to the highest page-aligned address that fits below
/// `initrd_addr_max` and the end of low RAM, above the kernel.
pub fn load_initrd<F: ReadVolatile>(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    ram_size: u64,
    initrd: &mut F,
    size: u64,
) -> Result<LoadedInitrd, BootError> {
    let max = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX)
        .min(low_ram_end(ram_size) - 1);
    let too_large = || BootError::InitrdTooLarge {
        size,
        max,
        kernel_end: kernel.end,
    };
    let addr = (max + 1).checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if addr < kernel.end || size > usize::MAX as u64 {
        return Err(too_large());
    }
    mem.read_exact_volatile_from(GuestAddress(addr), initrd, size as usize)
        .map_err(|e| BootError::InitrdRead(e.to_string()))?;
    Ok(LoadedInitrd {
        addr: GuestAddress(addr),
        size,
    })
}

/// Writes the command line and `boot_params` (zero page) into guest memory.
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    initrd: Option<LoadedInitrd>,
    cmdline: &str,
    ram_size: u64,
) -> Result<(), BootError> {
    let max = kernel
        .setup_header
        .map(|h| h.cmdline_size as usize)
        .filter(|&n| n > 0)
        .unwrap_or(CMDLINE_MAX_SIZE - 1)
        .min(CMDLINE_MAX_SIZE - 1);
    if cmdline.len() > max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|_| BootError::GuestWrite("the command line"))?;

    let mut params = boot_params::default();
    if let Some(hdr) = kernel.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.boot_flag = BOOT_FLAG_MAGIC;
    params.hdr.header = HDRS_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = bytes.len() as u32;
    params.hdr.kernel_alignment = params.hdr.kernel_alignment.max(0x0100_0000);
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = initrd.addr.raw_value() as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
    }
    let e820 = e820_entries(ram_size);
    params.e820_entries = e820.len() as u8;
    params.e820_table[..e820.len()].copy_from_slice(&e820);

    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|_| BootError::GuestWrite("boot_params"))
}

#[cfg(test)]
#[path = "boot_tests.rs"]
mod tests;
