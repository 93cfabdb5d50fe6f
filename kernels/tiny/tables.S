/*
 * tables.S - the structures the x86 CPU reads by itself, once _start
 * (boot.S) has pointed it at them: the page tables (CR3), the GDT (lgdt),
 * the TSS (ltr), the IDT (lidt), and the kernel stack the TSS names. All of
 * it is data built by the assembler; no code lives here, and only the IDT
 * gates and the TSS descriptor's base are filled in at run time, by
 * _start. The exception handlers the IDT points to are in syscall.S.
 */
#include "tiny.h"

        .globl  pml4
        .globl  gdt_tss, gdt_ptr, idt_ptr, idt_null_ptr, tss, idt
        .globl  kstack_top

/* Page tables first in .data (tiny.ld): they must be 4 KiB aligned, and a
 * section of their own keeps other variables from pushing them along. */
        .section .data.page_tables, "aw"

/*
 * Page tables [SDM Vol. 3A 4.5]: 4-level paging, identity map of 0-4 GiB
 * with 2 MiB pages. One PML4 entry -> one PDPT with 4 entries -> 4 page
 * directories of 512 entries, each entry a 2 MiB page (PS = 1).
 * An access from CPL 3 is allowed only if every level has U/S = 1; the
 * upper levels all do, so the page directory entry decides:
 *   0 - 2 MiB     supervisor   (this kernel, the VMM's boot data)
 *   2 MiB - 3 GiB user         (the payload at 2 MiB, tiny.touch from 4 MiB)
 *   3 - 4 GiB     supervisor, PCD|PWT (uncached: the MMIO gap)
 * Everything is writable: this kernel does not protect the payload from
 * itself. The tables are data, computed by the assembler: no code runs to
 * build them (kernel code is what costs on an emulating host).
 */
        .balign PAGE_4K
pml4:
        .quad   pdpt + PTE_P + PTE_RW + PTE_US
        .fill   511, 8, 0
pdpt:
        .quad   page_dirs + 0 * PAGE_4K + PTE_P + PTE_RW + PTE_US
        .quad   page_dirs + 1 * PAGE_4K + PTE_P + PTE_RW + PTE_US
        .quad   page_dirs + 2 * PAGE_4K + PTE_P + PTE_RW + PTE_US
        .quad   page_dirs + 3 * PAGE_4K + PTE_P + PTE_RW + PTE_US
        .fill   508, 8, 0
page_dirs:
        .set    addr, 0
        .rept   2048
        .if addr < USER_START
        .quad   addr + PTE_P + PTE_RW + PTE_PS
        .elseif addr < USER_END
        .quad   addr + PTE_P + PTE_RW + PTE_US + PTE_PS
        .else
        .quad   addr + PTE_P + PTE_RW + PTE_PWT + PTE_PCD + PTE_PS
        .endif
        .set    addr, addr + 0x200000
        .endr

        .section .data, "aw"
/*
 * GDT [SDM Vol. 3A 3.4.5 "Segment Descriptors", 5.2.1 "Code-Segment
 * Descriptor in 64-bit Mode"]. In 64-bit mode base and limit are ignored
 * for code and data; what matters is the L bit (64-bit code), DPL (0 kernel,
 * 3 user), P, and the type. Access byte: 0x9b = present, DPL 0, code,
 * readable, accessed; 0xfb the same at DPL 3; 0x93/0xf3 = writable data.
 * (The accessed bit is preset so the CPU never writes to the table.)
 * Flags nibble: 0xa = G | L (64-bit code), 0xc = G | D/B (data).
 * The order 0x18 (unused 32-bit user code), 0x20 user data, 0x28 user
 * code is the one SYSRET requires from STAR[63:48] = 0x18.
 */
        .balign 16
gdt:
        .quad   0                       /* 0x00 null */
        .quad   0x00af9b000000ffff      /* 0x08 kernel code, 64-bit */
        .quad   0x00cf93000000ffff      /* 0x10 kernel data */
        .quad   0x00cffb000000ffff      /* 0x18 user code, 32-bit (unused) */
        .quad   0x00cff3000000ffff      /* 0x20 user data */
        .quad   0x00affb000000ffff      /* 0x28 user code, 64-bit */
gdt_tss:                                /* 0x30 TSS: 16 bytes; base set in _start */
        .word   tss_end - tss - 1       /* limit 15:0 */
        .word   0                       /* base 15:0 */
        .byte   0                       /* base 23:16 */
        .byte   0x89                    /* present, DPL 0, type 9: available 64-bit TSS */
        .byte   0                       /* limit 19:16, flags */
        .byte   0                       /* base 31:24 */
        .long   0                       /* base 63:32 */
        .long   0                       /* reserved */
gdt_end:

/* lgdt/lidt operands: 16-bit limit (size - 1), 64-bit base. */
gdt_ptr:
        .word   gdt_end - gdt - 1
        .quad   gdt
idt_ptr:
        .word   idt_end - idt - 1
        .quad   idt
idt_null_ptr:                           /* tiny.fault: no valid gate at all */
        .word   0
        .quad   0

/* 64-bit TSS [SDM Vol. 3A 7.7, Figure "64-Bit TSS Format"]: no tasks in
 * 64-bit mode, it only holds stack pointers. RSP0 is the stack the CPU
 * switches to on an interrupt or exception from CPL 3. The I/O map base
 * points past the end: no I/O bitmap, so user mode (IOPL 0) has no ports. */
        .balign 16
tss:
        .long   0                       /* reserved */
        .quad   kstack_top              /* RSP0 */
        .quad   0, 0                    /* RSP1, RSP2 */
        .quad   0                       /* reserved */
        .quad   0, 0, 0, 0, 0, 0, 0     /* IST1-IST7 (unused) */
        .quad   0                       /* reserved */
        .word   0                       /* reserved */
        .word   tss_end - tss           /* I/O map base: none */
tss_end:

/* 32 gates of 16 bytes, filled in by _start. */
        .balign 16
idt:
        .fill   32 * 16, 1, 0
idt_end:

/* The kernel stack: used from _start on, and (as TSS.RSP0) on every entry
 * from user mode. Nothing here needs to start as zero: the Linux boot
 * protocol leaves clearing .bss to the kernel, and this one has no need. */
        .section .bss, "aw", @nobits
        .balign 16
kstack:
        .skip   8192
kstack_top:

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
