/*
 * tiny.h - what every file of the tiny guest kernel shares: the map of the
 * files, the guest's memory map, the devices it talks to, the numbers of
 * the x86 structures it sets up, its system calls and exit statuses, and
 * the KPUTS macro. Constants only: no code, no data.
 *
 * The tiny guest is the tinyvmm project's own kernel: x86_64, GNU assembler
 * (AT&T syntax, as in Linux's arch/x86 and in `objdump -d`). build.rs runs
 * `gcc -c` on each .S file, which runs the C preprocessor first (hence the
 * C-style comments and `#include "tiny.h"`), and links the objects with
 * tiny.ld into one static ELF. The VMM boots that ELF exactly like a Linux
 * vmlinux: linux-loader copies each PT_LOAD segment to its physical
 * address and the vCPU starts at the ELF entry point, `_start`, already in
 * 64-bit mode.
 *
 * The files, in the order the kernel uses them (read boot.S first):
 *   boot.S         _start: take over the CPU, then steps 1-5 in order
 *   tables.S       page tables, GDT, TSS, IDT, kernel stack (data the CPU
 *                  reads by itself)
 *   cmdline.S      the command line: tiny.* options, virtio_mmio.device=
 *   serial.S       the 8250 serial port, number printing, console_write
 *   virtio_mmio.S  virtio-mmio transport: probe and initialise a device
 *   console.S      virtio console output: the transmit virtqueue
 *   syscall.S      system calls (two ways in), exceptions, kernel_exit
 *   payload.S      the user-mode (CPL 3) payload
 *   chaos.S        tiny.chaos: random device accesses instead of 4 and 5
 *   chaos_virtio.S ...and those aimed at the virtio devices
 *   blk.S          virtio-blk driver: find, initialise, one request at a time
 *   blk_check.S    tiny.blk: six checks of a disk instead of 4 and 5
 *   spin.S         tiny.spin: a kernel-mode busy loop for the profiler
 *   tiny.h         this file; virtio.h holds the virtio constants
 *   tiny.ld        the linker script: where each part sits in memory
 *
 * Costs worth knowing: every port or MMIO access is a VM exit (the VMM runs
 * and comes back), so the serial port costs one exit per byte, the virtio
 * console one exit per write system call (up to 1 MiB here). Some hosts'
 * KVM emulates guest kernel mode instruction by instruction (kvm_pvm:
 * about 1 us per instruction), so kernel code should be short; this kernel
 * runs a few thousand instructions in all and does every heavy loop in
 * user mode.
 *
 * References, cited as [TAG] throughout:
 *   [BOOT]  Linux x86 boot protocol, "64-bit Boot Protocol":
 *           https://www.kernel.org/doc/html/latest/arch/x86/boot.html
 *   [ZP]    The zero page (struct boot_params) layout:
 *           https://www.kernel.org/doc/html/latest/arch/x86/zero-page.html
 *   [SDM]   Intel 64 and IA-32 Architectures Software Developer's Manual,
 *           https://www.intel.com/sdm (Vol. 3A section numbers as of the
 *           2023 editions; the section titles quoted are stable)
 *   [8250]  PC16550D UART datasheet (registers THR, LSR)
 *   [VIRTIO] Virtual I/O Device (VIRTIO) Version 1.2:
 *           https://docs.oasis-open.org/virtio/virtio/v1.2/virtio-v1.2.html
 *   [SYSTBL] Linux x86-64 system call numbers:
 *           arch/x86/entry/syscalls/syscall_64.tbl
 */
#ifndef TINY_H
#define TINY_H

/* Devices the VMM emulates. */
        .equ COM1_THR,          0x3f8   /* 8250 transmit holding register [8250] */
        .equ COM1_LSR,          0x3fd   /* 8250 line status register [8250] */
        .equ NO_DEVICE,         0xff    /* what a read of an unclaimed port returns */
        .equ POST_PORT,         0x80    /* debug/POST port: boot markers */
        .equ POST_KERNEL_START, 0x40    /* value meaning "kernel started" */
        .equ POST_USER_START,   0x41    /* value meaning "user space reached" */
        .equ BOOT_MARKER_ADDR,  0xc0000000 /* MMIO boot marker (Firecracker's) */
        .equ BOOT_MARKER_VALUE, 123
        .equ DEBUG_EXIT_PORT,   0xf4    /* write v: the VMM exits with status v */
        .equ DEBUG_EXIT_MMIO,   0xc0001000 /* the same at offset 0 of this page */
        .equ VIRTIO_MMIO_WINDOWS, 0xd0000000 /* the VMM's 4 KiB virtio windows... */
        .equ VIRTIO_MMIO_WINDOWS_END, 0xe0000000 /* ...end here */
        .equ IOAPIC_PAGE,       0xfec00000 /* answered by KVM itself, like... */
        .equ LAPIC_PAGE,        0xfee00000 /* ...the local APIC */
        .equ I8042_COMMAND,     0x64    /* keyboard controller command port */
        .equ I8042_RESET_CPU,   0xfe    /* pulse the CPU reset line */

/* struct boot_params ("zero page") offsets [ZP]. */
        .equ BP_EXT_CMD_LINE_PTR, 0x0c8 /* u32: bits 63:32 of the cmdline address */
        .equ BP_E820_ENTRIES,   0x1e8   /* u8: number of e820 entries */
        .equ BP_CMD_LINE_PTR,   0x228   /* u32: hdr.cmd_line_ptr, bits 31:0 */
        .equ BP_E820_TABLE,     0x2d0   /* struct boot_e820_entry[128] */
        .equ E820_ENTRY_SIZE,   20      /* u64 addr, u64 size, u32 type (packed) */
        .equ E820_RAM,          1

/* GDT selectors (index * 8 | requested privilege level). See `gdt` in
 * tables.S. */
        .equ KERNEL_CS,         0x08
        .equ KERNEL_DS,         0x10
        .equ USER_BASE_SEL,     0x18    /* STAR[63:48]: SYSRET computes from it */
        .equ USER_DS,           0x20 | 3
        .equ USER_CS,           0x28 | 3
        .equ TSS_SEL,           0x30

/* Model-specific registers for SYSCALL [SDM Vol. 3A 5.8.8 "Fast System
 * Calls in 64-Bit Mode"]. */
        .equ MSR_EFER,          0xc0000080
        .equ EFER_SCE,          1 << 0  /* System Call Enable */
        .equ MSR_STAR,          0xc0000081 /* segment selectors */
        .equ MSR_LSTAR,         0xc0000082 /* 64-bit SYSCALL entry RIP */
        .equ MSR_SFMASK,        0xc0000084 /* RFLAGS bits cleared by SYSCALL */
        /* TF | IF | DF | IOPL | NT | AC, as Linux masks them. */
        .equ SYSCALL_RFLAGS_MASK, 0x47700

/* RFLAGS [SDM Vol. 1 3.4.3]. Bit 1 is reserved and always 1. */
        .equ RFLAGS_RESERVED,   0x2
        /* CF PF AF ZF SF DF OF: the only bits user space may hand back */
        .equ RFLAGS_USER_BITS,  0xcd5

/* Page-table entry bits [SDM Vol. 3A 4.5 "4-Level Paging"]. */
        .equ PTE_P,             1 << 0  /* present */
        .equ PTE_RW,            1 << 1  /* writable */
        .equ PTE_US,            1 << 2  /* user-accessible (else supervisor-only) */
        .equ PTE_PWT,           1 << 3  /* write-through */
        .equ PTE_PCD,           1 << 4  /* cache disable */
        .equ PTE_PS,            1 << 7  /* in a PDE: maps a 2 MiB page */

/* Page-fault error code bits [SDM Vol. 3A 4.7 "Page-Fault Exceptions"]. */
        .equ PF_USER,           1 << 2  /* the access was made at CPL 3 */

/*
 * Memory map (guest physical = guest virtual, identity mapped; the page
 * tables in tables.S, the sections in tiny.ld):
 *   0x0000_0000 - 0x000f_ffff  VMM's boot data: GDT 0x500, zero page 0x7000,
 *                              boot stack 0x8ff0, page tables 0x9000-0xbfff,
 *                              command line 0x20000          (supervisor)
 *   0x0010_0000 - ...          this kernel: .text .rodata .data .bss
 *                              (must end below 2 MiB)        (supervisor)
 *   0x0020_0000 - ...          user payload: .user.text .user.data .user.bss
 *                              (1 MiB flood buffer; must end
 *                              below 4 MiB)                  (user)
 *   0x0040_0000 - RAM end      tiny.touch region             (user)
 *   0xc000_0000 - 0xffff_ffff  MMIO gap: boot marker 0xc000_0000, debug-exit
 *                              0xc000_1000, virtio-mmio from 0xd000_0000
 *                              (supervisor, uncached)
 */
        .equ USER_START,        0x200000   /* first user-accessible byte */
        .equ TOUCH_BASE,        0x400000   /* tiny.touch starts here */
        .equ USER_END,          0xc0000000 /* user mappings stop at the MMIO gap */
        .equ MMIO_GAP_START,    0xc0000000 /* mapped uncached, supervisor-only */
        .equ MMIO_GAP_END,      0x100000000 /* nothing mapped from 4 GiB on */
        .equ MIB,               0x100000
        .equ PAGE_4K,           0x1000
        .equ FLOOD_BUF_SIZE,    0x100000   /* the payload's flood buffer, 1 MiB */

/* System call numbers: the same as Linux's [SYSTBL]. */
        .equ SYS_WRITE,         1
        .equ SYS_EXIT,          60
        .equ SYS_EXIT_GROUP,    231
        .equ EBADF,             9
        .equ EFAULT,            14
        .equ ENOSYS,            38

/* Exit statuses the guest itself chooses (through the debug-exit port; the
 * VMM passes them on as its own exit code):
 *   tiny.exit=N        N, normally 0
 *   EXIT_EXCEPTION     unexpected CPU exception (message on serial)
 *   EXIT_BAD_OPTION    bad tiny.* option, or tiny.touch larger than RAM
 *   EXIT_WRITE_FAILED  the payload's write system call failed
 *   EXIT_BLK_STEP + n  tiny.blk: step n (1-6, blk_check.S) was the first
 *                      to fail; 0 when all passed
 * A triple fault (tiny.fault) is not a status the guest writes: the VMM
 * sees KVM_EXIT_SHUTDOWN and reports 121 itself. */
        .equ EXIT_EXCEPTION,    100
        .equ EXIT_BAD_OPTION,   101
        .equ EXIT_WRITE_FAILED, 102
        .equ EXIT_BLK_STEP,     110     /* 111-116 */

/* tiny.blk (opt_blk, blk_check.S): which disk the checks expect. */
        .equ BLK_OFF,           0       /* no tiny.blk */
        .equ BLK_ANY,           1       /* tiny.blk: whatever VIRTIO_BLK_F_RO says */
        .equ BLK_RW,            2       /* tiny.blk=rw: a writable disk */
        .equ BLK_RO,            3       /* tiny.blk=ro: a read-only disk */

/* ASCII, named (a quote character would upset the C preprocessor). */
        .equ ASCII_NL,          0x0a
        .equ ASCII_SPACE,       0x20
        .equ ASCII_COMMA,       0x2c
        .equ ASCII_0,           0x30
        .equ ASCII_COLON,       0x3a
        .equ ASCII_EQUALS,      0x3d
        .equ ASCII_AT,          0x40
        .equ ASCII_LOWER_A,     0x61
        .equ ASCII_LOWER_G,     0x67
        .equ ASCII_LOWER_K,     0x6b
        .equ ASCII_LOWER_M,     0x6d
        .equ ASCII_LOWER_X,     0x78
        .equ ASCII_CASE_BIT,    0x20    /* OR it in: upper case to lower */

/* Print a NUL-terminated string from .rodata on the serial port (puts is
 * in serial.S). Clobbers rax, rdx, rsi. */
        .macro KPUTS label
        lea     \label(%rip), %rsi
        call    puts
        .endm

#endif /* TINY_H */
