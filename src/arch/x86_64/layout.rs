//! Fixed guest-physical addresses of the x86_64 boot layout, in address
//! order: every address the VMM puts something at is a constant here.
//!
//! The low-memory boot structures (GDT, zero page, page tables, command
//! line, MP table) sit where Firecracker puts them, so a reader can compare;
//! the MMIO gap is Firecracker's too ([3 GiB, 4 GiB)), where rust-vmm's
//! vmm-reference uses a different one. Linux boot protocol:
//! <https://www.kernel.org/doc/html/latest/arch/x86/boot.html>

/// Global Descriptor Table, read by the CPU through GDTR (Intel SDM vol. 3A, 3.5.1).
pub const BOOT_GDT_START: u64 = 0x500;
/// Interrupt Descriptor Table (empty at boot: the guest installs its own).
pub const BOOT_IDT_START: u64 = 0x520;
/// The "zero page": `struct boot_params` handed to the kernel in `rsi`.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU (grows down, below the page tables).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 table (CR3 points here).
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table: the first PML4 entry points here.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory of 2 MiB pages identity-mapping the first 1 GiB.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line (NUL-terminated), pointed to by `hdr.cmd_line_ptr`.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line we accept, including the NUL (Linux x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the Extended BIOS Data Area: usable RAM below 1 MiB ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// MultiProcessor table (MP floating pointer + config table), in the EBDA,
/// where Linux scans for it (Intel MP spec 1.4, section 4).
pub const MPTABLE_START: u64 = EBDA_START;
/// Start of high memory: the kernel is loaded at or above 1 MiB.
pub const HIMEM_START: u64 = 0x0010_0000;
/// Start of the 32-bit MMIO gap: no RAM between here and 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// Boot marker: a guest writes byte 123 here when it reaches user space
/// (Firecracker's boot-timer address). It is the first page of the MMIO gap.
pub const BOOT_TIMER_MMIO: u64 = MMIO_GAP_START;
/// Debug-exit register, MMIO form: a write of `v` ends the VM with status `v`.
pub const DEBUG_EXIT_MMIO: u64 = MMIO_GAP_START + 0x1000;
/// Start of the virtio-mmio device windows, one 4 KiB window each.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// End of the device-window range: 256 MiB of windows, far below the
/// IOAPIC (0xfec0_0000) and the TSS pages.
pub const VIRTIO_MMIO_END: u64 = 0xe000_0000;
/// IOAPIC registers (the in-kernel IOAPIC answers here; the MP table
/// announces it). Intel 82093AA datasheet; the conventional PC address.
pub const IO_APIC_DEFAULT_PHYS_BASE: u32 = 0xfec0_0000;
/// Local APIC registers of every vCPU (SDM vol. 3A, 10.4.1), handled by KVM.
pub const APIC_DEFAULT_PHYS_BASE: u32 = 0xfee0_0000;
/// Three pages KVM needs for the real-mode TSS on Intel (`KVM_SET_TSS_ADDR`),
/// in the MMIO gap where no RAM is, above the LAPIC page.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// End of the MMIO gap (4 GiB); RAM beyond 3 GiB continues here.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Size of the MMIO gap.
pub const MMIO_GAP_SIZE: u64 = MMIO_GAP_END - MMIO_GAP_START;

/// Legacy I/O ports (x86 port space, not memory).
pub mod ports {
    /// POST/debug port: Linux uses it for I/O delays, Cloud Hypervisor for boot codes.
    pub const DEBUG_PORT: u16 = 0x80;
    /// i8042 keyboard controller data port.
    pub const I8042_DATA: u16 = 0x60;
    /// i8042 command/status port: command 0xfe pulses the CPU reset line.
    pub const I8042_COMMAND: u16 = 0x64;
    /// QEMU's `isa-debug-exit` port, used as our debug-exit register.
    pub const DEBUG_EXIT: u16 = 0xf4;
    /// First 8250 UART (COM1, ttyS0), eight registers.
    pub const COM1: u16 = 0x3f8;
}

/// Legacy IRQ of COM1 (ttyS0).
pub const COM1_IRQ: u32 = 4;
/// First GSI handed to virtio-mmio devices (after the ISA IRQs in use).
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// Last GSI the IOAPIC has (24 pins).
pub const IRQ_MAX: u32 = 23;
