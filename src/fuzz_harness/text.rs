//! The `memory_size` and `cmdline` fuzz targets: what a user types for
//! `--memory` through `config::parse_memory`, and a `--cmdline` through
//! `config::validate_cmdline`, the full command-line assembly
//! (`vmm::images::full_cmdline`) and `boot::write_boot_params`, which puts
//! it into guest memory.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::Input;
use crate::arch::x86_64::boot::{LoadedKernel, write_boot_params};
use crate::arch::x86_64::cpuid::MINIMAL_KERNEL_ARGS;
use crate::arch::x86_64::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, VIRTIO_MMIO_START, ZERO_PAGE_START,
};
use crate::config::{CpuTemplate, MIN_MEMORY, VmConfig, parse_memory, validate_cmdline};
use crate::vmm::images::full_cmdline;

/// Largest guest memory `--memory` accepts.
const MAX_MEMORY: u64 = 1 << 40;

/// Runs one fuzz input as a `--memory` argument; panics if an invariant
/// breaks: what is accepted is page-aligned, in range, means what the
/// documented grammar says, and reads back the same in every unit.
pub fn memory_size(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_memory(text);
    let documented = documented_size(text);
    if let Some(v) = documented.filter(|&v| v % 4096 == 0 && (MIN_MEMORY..=MAX_MEMORY).contains(&v))
    {
        assert_eq!(parsed, Ok(v), "{text:?} is a valid size");
    }
    let Ok(bytes) = parsed else { return };
    assert_eq!(bytes % 4096, 0, "{text:?} -> {bytes}");
    assert!(
        (MIN_MEMORY..=MAX_MEMORY).contains(&bytes),
        "{text:?} -> {bytes}"
    );
    assert_eq!(
        documented,
        Some(bytes),
        "{text:?} -> {bytes}: not what the documented grammar says"
    );
    let kib = bytes >> 10;
    assert_eq!(parse_memory(&format!("{kib}K")), Ok(bytes));
    assert_eq!(parse_memory(&format!("{kib}kib")), Ok(bytes));
    if bytes % (1 << 20) == 0 {
        let mib = bytes >> 20;
        assert_eq!(parse_memory(&mib.to_string()), Ok(bytes));
        assert_eq!(parse_memory(&format!(" {mib}MiB ")), Ok(bytes));
    }
    if bytes % (1 << 30) == 0 {
        assert_eq!(parse_memory(&format!("{}gb", bytes >> 30)), Ok(bytes));
    }
}

/// The grammar README.md documents: digits (MiB), or digits and K, M or G
/// with an optional B or iB, any case, surrounded by whitespace. `None`
/// if `text` is not of that form or the size overflows.
fn documented_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    let shift = match unit {
        "" => 20,
        _ => {
            let mut chars = unit.chars();
            let letter = chars.next();
            if !["", "B", "IB"].contains(&chars.as_str()) {
                return None;
            }
            match letter {
                Some('K') => 10,
                Some('M') => 20,
                Some('G') => 30,
                _ => return None,
            }
        }
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Runs one fuzz input as a `--cmdline`: a flags byte (CPU template, how
/// many device entries, whether the kernel has a setup header), the
/// header's `cmdline_size`, then the text. Panics if an invariant breaks:
/// validation accepts exactly printable ASCII under 2048 bytes, assembly
/// keeps the user's text and appends each entry once, and the zero page
/// gets the line unless it is longer than the kernel takes.
pub fn cmdline(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let header_size = input.u16();
    let text = String::from_utf8_lossy(input.bytes(usize::MAX)).into_owned();
    let printable = text.chars().all(|c| (' '..='~').contains(&c));
    let expected = printable && text.len() < CMDLINE_MAX_SIZE;
    assert_eq!(validate_cmdline(&text).is_ok(), expected, "{text:?}");

    let template = if flags & 1 == 0 {
        CpuTemplate::Host
    } else {
        CpuTemplate::Minimal
    };
    let entries: Vec<String> = (0..u64::from(flags >> 1 & 3))
        .map(|i| {
            let base = VIRTIO_MMIO_START + i * 0x1000;
            format!("virtio_mmio.device=4K@{base:#x}:{}", 5 + i)
        })
        .collect();
    let config = VmConfig {
        cmdline: text.clone(),
        cpu_template: template,
        ..VmConfig::default()
    };
    let full = full_cmdline(&config, &entries);
    let mut want = text.trim().to_string();
    for e in &entries {
        want.push(' ');
        want.push_str(e);
    }
    if template == CpuTemplate::Minimal && !want.contains(MINIMAL_KERNEL_ARGS) {
        want.push(' ');
        want.push_str(MINIMAL_KERNEL_ARGS);
    }
    assert_eq!(full, want);
    if printable {
        assert!(validate_cmdline(&full).is_ok() == (full.len() < CMDLINE_MAX_SIZE));
    }

    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MIN_MEMORY as usize)])
        .expect("guest memory");
    let mut kernel = LoadedKernel {
        entry: GuestAddress(HIMEM_START),
        end: HIMEM_START + 0x1000,
        setup_header: None,
    };
    let mut max = CMDLINE_MAX_SIZE - 1;
    if flags & 8 != 0 {
        kernel.setup_header = Some(linux_loader::loader::bootparam::setup_header {
            cmdline_size: u32::from(header_size),
            ..Default::default()
        });
        if header_size > 0 {
            max = max.min(usize::from(header_size));
        }
    }
    let written = write_boot_params(&mem, &kernel, None, &full, MIN_MEMORY);
    assert_eq!(
        written.is_ok(),
        full.len() <= max,
        "{} bytes, max {max}",
        full.len()
    );
    if written.is_ok() {
        let mut back = vec![0u8; full.len() + 1];
        mem.read_slice(&mut back, GuestAddress(CMDLINE_START))
            .expect("the command line is in RAM");
        assert_eq!(&back[..full.len()], full.as_bytes());
        assert_eq!(back[full.len()], 0, "NUL-terminated");
        let zero_page = GuestAddress(ZERO_PAGE_START);
        let ptr: u32 = mem
            .read_obj(zero_page.unchecked_add(0x228))
            .expect("zero page");
        let size: u32 = mem
            .read_obj(zero_page.unchecked_add(0x238))
            .expect("zero page");
        assert_eq!(u64::from(ptr), CMDLINE_START);
        assert_eq!(size as usize, full.len() + 1);
    }
}
