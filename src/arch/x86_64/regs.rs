//! The boot vCPU's registers: a GDT, identity page tables and 64-bit mode.
//!
//! The 64-bit boot protocol enters the kernel already in long mode, so the
//! VMM does what a boot loader would: flat segments, paging on, `rsi` =
//! boot_params. Intel SDM vol. 3A: 3.4.5 (segment descriptors), 4.5 (4-level
//! paging), 9.8.5 (initializing IA-32e mode).

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::*;

/// CR0.PE: protected mode.
const X86_CR0_PE: u64 = 1 << 0;
/// CR0.ET: extension type (always 1 on modern CPUs).
const X86_CR0_ET: u64 = 1 << 4;
/// CR0.NE: native x87 error reporting.
const X86_CR0_NE: u64 = 1 << 5;
/// CR0.PG: paging.
const X86_CR0_PG: u64 = 1 << 31;
/// CR4.PAE: physical address extension, required for long mode.
const X86_CR4_PAE: u64 = 1 << 5;
/// EFER.LME: long mode enable.
const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry bits: present, writable.
const PTE_PRESENT_RW: u64 = 0x3;
/// Page-directory entry bit 7: this entry maps a 2 MiB page.
const PDE_PAGE_SIZE: u64 = 0x80;

/// GDT entries: null, 64-bit code, data, TSS. Selectors are index * 8.
pub const GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff), // code: present, DPL 0, exec/read, L=1
    gdt_entry(0xc093, 0, 0xfffff), // data: present, DPL 0, read/write, 4 KiB granular
    gdt_entry(0x808b, 0, 0xfffff), // TSS: present, busy 64-bit TSS
];
/// Selector of the code segment.
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of the data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the task-state segment.
pub const TSS_SELECTOR: u16 = 0x18;

/// Packs a segment descriptor (SDM vol. 3A, figure 3-8).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// Unpacks a descriptor into the form KVM wants in `kvm_sregs`.
pub fn kvm_segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let mut limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    if g == 1 {
        limit = (limit << 12) | 0xfff;
    }
    kvm_segment {
        base,
        limit,
        selector: u16::from(table_index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from((entry >> 47) & 1 == 0),
        padding: 0,
    }
}

/// Writes the GDT and an empty IDT.
pub fn write_gdt_and_idt(mem: &GuestMemoryMmap) -> vm_memory::GuestMemoryResult<()> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
}

/// Identity-maps the first 1 GiB with 2 MiB pages: PML4[0] -> PDPT[0] -> PD,
/// 512 entries. Enough for the kernel's early code, which builds its own.
pub fn write_page_tables(mem: &GuestMemoryMmap) -> vm_memory::GuestMemoryResult<()> {
    mem.write_obj(PDPTE_START | PTE_PRESENT_RW, GuestAddress(PML4_START))?;
    mem.write_obj(PDE_START | PTE_PRESENT_RW, GuestAddress(PDPTE_START))?;
    for i in 0..512u64 {
        let entry = (i << 21) | PDE_PAGE_SIZE | PTE_PRESENT_RW;
        mem.write_obj(entry, GuestAddress(PDE_START + i * 8))?;
    }
    Ok(())
}

/// Special registers for 64-bit entry, starting from KVM's current values.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let code = kvm_segment_from_gdt(GDT[1], 1);
    let data = kvm_segment_from_gdt(GDT[2], 2);
    let tss = kvm_segment_from_gdt(GDT[3], 3);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 = X86_CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// General registers at the kernel's 64-bit entry point.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2, // bit 1 is reserved and always set; interrupts off
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START, // the boot protocol: rsi = &boot_params
        ..Default::default()
    }
}

/// x87/SSE state after FNINIT, with the MXCSR reset value.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn gdt_entries_round_trip_through_kvm_segment() {
        let code = kvm_segment_from_gdt(GDT[1], 1);
        assert_eq!(code.selector, CODE_SELECTOR);
        assert_eq!((code.l, code.db, code.present, code.s), (1, 0, 1, 1));
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        let data = kvm_segment_from_gdt(GDT[2], 2);
        assert_eq!(data.selector, DATA_SELECTOR);
        assert_eq!((data.db, data.type_, data.g), (1, 3, 1));
        let tss = kvm_segment_from_gdt(GDT[3], 3);
        assert_eq!(tss.selector, TSS_SELECTOR);
        assert_eq!((tss.type_, tss.s), (0xb, 0));
        assert_eq!(kvm_segment_from_gdt(GDT[0], 0).unusable, 1);
        assert_eq!(gdt_entry(0, 0x1234_5678, 0), 0x1200_0034_5678_0000);
    }

    #[test]
    fn gdt_and_idt_are_written_where_sregs_point() {
        let m = mem();
        write_gdt_and_idt(&m).unwrap();
        for (i, want) in GDT.iter().enumerate() {
            let got: u64 = m
                .read_obj(GuestAddress(BOOT_GDT_START + 8 * i as u64))
                .unwrap();
            assert_eq!(got, *want);
        }
        assert_eq!(m.read_obj::<u64>(GuestAddress(BOOT_IDT_START)).unwrap(), 0);
        let s = long_mode_sregs(kvm_sregs::default());
        assert_eq!(s.gdt.base, BOOT_GDT_START);
        assert_eq!(s.gdt.limit, 31);
        assert_eq!(s.cr3, PML4_START);
        assert_ne!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let m = mem();
        write_page_tables(&m).unwrap();
        let pml4: u64 = m.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let pdpt: u64 = m.read_obj(GuestAddress(PDPTE_START)).unwrap();
        assert_eq!(pdpt, PDE_START | 3);
        // Walk a few virtual addresses through the tables by hand.
        for va in [0u64, 0x10_0000, 0x20_0000 + 5, 0x3fff_ffff] {
            let pde: u64 = m
                .read_obj(GuestAddress(PDE_START + (va >> 21) * 8))
                .unwrap();
            assert_eq!(pde & 0x83, 0x83, "present, writable, 2 MiB");
            let pa = (pde & !0x1f_ffff & !0xfff) | (va & 0x1f_ffff);
            assert_eq!(pa, va);
        }
        let last: u64 = m.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last & !0xfff, 511 << 21);
    }

    #[test]
    fn boot_regs_follow_the_64bit_protocol() {
        let r = boot_regs(0x100_0000);
        assert_eq!(r.rip, 0x100_0000);
        assert_eq!(r.rsi, ZERO_PAGE_START);
        assert_eq!(r.rflags, 2);
        assert_eq!(boot_fpu().mxcsr, 0x1f80);
    }
}
