/*
 * chaos.S - the in-guest chaos monkey, `tiny.chaos=SEED,N` (parsed in
 * cmdline.S): N random port and MMIO accesses, each one a VM exit, at
 * every device the VMM emulates, then exit status 0. This file owns
 * chaos_run (jumped to by _start after step 3; it never returns), the
 * loop, its random generator, the port and MMIO operations and the rules
 * that keep the guest alive; chaos_virtio.S holds the virtio operations
 * and the scratch rings the device is pointed at.
 *
 * The VMM must survive it: no panic, no hang, no growth, only documented
 * exits. The one way out is ours, debug-exit 0 (kernel_exit) after N
 * accesses, so the two writes that end a VM are never made (tests cover
 * them on their own): a write to the debug-exit register (port 0xf4, or
 * offset 0 of the page at 0xc000_1000) and i8042 command 0xfe (port 0x64).
 *
 * Keeping the guest itself alive (the target is the VMM):
 *   - interrupts stay off (IF = 0 since _start): an IRQ a device raises
 *     never reaches our 32-gate IDT. Nothing is written at or above the
 *     IOAPIC page (IOAPIC, local APIC, KVM's TSS): an INIT or NMI sent to
 *     ourselves would end us, and KVM answers there, not the VMM.
 *   - an MMIO access never crosses a page: page offsets keep bit 3 clear,
 *     so an 8-byte access ends at offset 0xffe at most.
 *   - the virtio device writes guest RAM where its rings and buffers say:
 *     chaos_virtio.S only ever gives it addresses outside this kernel
 *     (code, data, stack, page tables). Run chaos with stdin empty.
 *
 * Deterministic from SEED: every choice comes from the generator, none
 * from a value read back. About 30 emulated instructions per access on
 * kvm_pvm hosts (tiny.h), plus the exit.
 */
#include "tiny.h"
#include "virtio.h"

        .globl  chaos_run, opt_chaos, chaos_seed, chaos_ops
        .globl  chaos_loop, chaos_next, chaos_rand, size_bits
        .globl  mmio_read, mmio_write

        .equ COM1_LCR, 0x3fb            /* 8250 line control; bit 7 = DLAB */
        .equ COM1_MCR, 0x3fc            /* 8250 modem control; bit 4 = loopback */
        .equ LCR_8N1, 0x03              /* 8 bits, no parity, 1 stop, DLAB off */
        .equ NO_WRITE_FROM, IOAPIC_PAGE /* IOAPIC, LAPIC, KVM's TSS: read only */
        .equ GAP_FOLD, 0x20000000       /* gap writes up there move down this much */
        .equ CONFIG_HALF, 0x800         /* gap writes in a window land past it */
        /* splitmix64's increment and first multiplier (Steele, Lea, Flood,
         * OOPSLA 2014): they spread any SEED, 0 and 1 too, over 64 bits. */
        .equ GOLDEN_GAMMA, 0x9e3779b97f4a7c15
        .equ MIX_1, 0xbf58476d1ce4e5b9

/* \b, \w, \l or \q by the access size in ecx: 0, 1, 2, 3 (1-8 bytes). */
        .macro  BY_SIZE b, w, l, q
        cmp     $1, %ecx
        jb      1f
        je      2f
        cmp     $2, %ecx
        je      3f
        \q
        ret
1:      \b
        ret
2:      \w
        ret
3:      \l
        ret
        .endm

        .section .text, "ax"
/*
 * chaos_run(rsi = boot_params). For the whole run: r15 = accesses left,
 * r14 = generator state, r13 = end of RAM, r12 = the script's window.
 * Each operation starts with rax = 64 random bits: bits 0-4 chose it, 5-6
 * are the access size, 8 and up say where, 32-63 are the value written.
 */
chaos_run:
        cld
        /* End of RAM: the highest end of an e820 RAM entry [ZP], at most
         * 3 GiB, so that every RAM address has a high half of 0. */
        movzbl  BP_E820_ENTRIES(%rsi), %ecx
        lea     BP_E820_TABLE(%rsi), %rdx
        mov     $MIB, %r13d                     /* never 0: we divide by it */
1:      mov     (%rdx), %rax
        add     8(%rdx), %rax
        cmpl    $E820_RAM, 16(%rdx)
        jne     2f
        cmp     %r13, %rax
        cmova   %rax, %r13
2:      add     $E820_ENTRY_SIZE, %rdx
        sub     $1, %ecx
        ja      1b
        mov     $MMIO_GAP_START, %eax
        cmp     %rax, %r13
        cmova   %rax, %r13

        call    chaos_virtio_init               /* the windows to aim at */

        /* The generator's state: (SEED + gamma) * mix, never 0 (xorshift
         * would stay at 0 for ever). */
        mov     chaos_seed(%rip), %rax
        movabs  $GOLDEN_GAMMA, %rdx
        add     %rdx, %rax
        movabs  $MIX_1, %rdx
        imul    %rdx, %rax
        mov     $1, %edx
        test    %rax, %rax
        cmovz   %rdx, %rax
        mov     %rax, %r14
        mov     chaos_ops(%rip), %r15
        cmpb    $0, opt_quiet(%rip)
        jne     chaos_loop
        KPUTS   msg_start                       /* "tiny: chaos: seed S, N accesses" */
        mov     chaos_seed(%rip), %rax
        call    print_dec
        KPUTS   msg_start_2
        mov     chaos_ops(%rip), %rax
        call    print_dec
        KPUTS   msg_start_3

/* The loop: a random operation (op_table), one access, until N are done. */
chaos_loop:
        test    %r15, %r15
        jz      chaos_done
        call    chaos_rand
        mov     %eax, %ecx
        and     $31, %ecx
        jmp     *op_table(, %rcx, 8)
chaos_next:
        dec     %r15
        jmp     chaos_loop

/* Ports: anywhere in the 64 Ki port space, or one of a device's. */
op_port_read_any:
        mov     %eax, %edx
        shr     $8, %edx
        jmp     1f
op_port_read_dev:
        call    dev_port
1:      call    size_bits
        call    port_read
        jmp     chaos_next
op_port_write_any:
        mov     %eax, %edx
        shr     $8, %edx
        jmp     1f
op_port_write_dev:
        call    dev_port
1:      call    size_bits
        shr     $32, %rax
        call    port_write
        jmp     chaos_next
/* `rep outsb` / `rep insb`, 1-16 bytes: hardware KVM hands them to the VMM
 * in one exit [SDM Vol. 2B "OUTS"]. chaos_text holds no 0xfe. */
op_string_io:
        call    dev_port
        call    no_stop_port
        mov     %eax, %ecx
        shr     $16, %ecx
        and     $15, %ecx
        inc     %ecx
        lea     chaos_text(%rip), %rsi
        lea     chaos_inbuf(%rip), %rdi
        test    $1 << 20, %eax
        jz      1f
        rep outsb
        jmp     chaos_next
1:      rep insb
        jmp     chaos_next

/* MMIO reads: anywhere in the gap [3 GiB, 4 GiB), or in a device's page:
 * a virtio window (1/2), boot marker, debug-exit, IOAPIC, LAPIC. */
op_mmio_read_gap:
        call    gap_addr
        jmp     1f
op_mmio_read_dev:
        call    window
        test    $4 << 8, %eax
        jnz     2f
        mov     %eax, %edx
        shr     $8, %edx
        and     $3, %edx
        mov     chaos_pages(, %rdx, 8), %rdx
2:      call    page_offset
1:      call    size_bits
        call    mmio_read
        jmp     chaos_next
/* MMIO writes: the boot-marker page (1 in 16 the marker itself), the
 * debug-exit page past offset 0, anywhere in the gap below the IOAPIC
 * (but not the virtio registers: those are the virtio operations'). */
op_mmio_write_marker:
        mov     $BOOT_MARKER_ADDR, %edx
        call    page_offset
        test    $0xf << 24, %eax
        jnz     1f
        mov     $BOOT_MARKER_ADDR, %edx
        mov     $BOOT_MARKER_VALUE, %eax
        xor     %ecx, %ecx
        jmp     2f
op_mmio_write_exit_page:
        mov     $DEBUG_EXIT_MMIO, %edx
        call    page_offset
        jmp     3f
op_mmio_write_gap:
        call    gap_addr
        cmp     $NO_WRITE_FROM, %edx
        jb      4f
        sub     $GAP_FOLD, %edx                 /* fold below the IOAPIC */
4:      cmp     $VIRTIO_MMIO_WINDOWS, %edx
        jb      3f
        cmp     $VIRTIO_MMIO_WINDOWS_END, %edx
        jae     3f
        or      $CONFIG_HALF, %edx
3:      cmp     $DEBUG_EXIT_MMIO, %edx
        jne     1f
        add     $4, %edx                        /* offset 0 would stop the VM */
1:      call    size_bits
        shr     $32, %rax
2:      call    mmio_write
        jmp     chaos_next

/* N accesses done: the 8250 back to DLAB and loopback off, so that our
 * line comes out; say so; end the VM with status 0. */
chaos_done:
        cmpb    $0, serial_absent(%rip)
        jne     1f
        mov     $COM1_LCR, %dx
        mov     $LCR_8N1, %al
        out     %al, %dx
        mov     $COM1_MCR, %dx
        xor     %eax, %eax
        out     %al, %dx
        cmpb    $0, opt_quiet(%rip)
        jne     1f
        KPUTS   msg_done                        /* "tiny: chaos: done, generator at 0x..." */
        mov     %r14, %rax
        call    print_hex
        KPUTS   msg_newline
1:      xor     %edi, %edi
        jmp     kernel_exit

/* ---- Helpers (rax = the operation's random bits) ---------------- */
chaos_rand:             /* rax = next of xorshift64 (Marsaglia, JSS 2003) */
        mov     %r14, %rax
        shl     $13, %rax
        xor     %rax, %r14
        mov     %r14, %rax
        shr     $7, %rax
        xor     %rax, %r14
        mov     %r14, %rax
        shl     $17, %rax
        xor     %rax, %r14
        mov     %r14, %rax
        ret
dev_port:               /* edx = dev_ports[bits 8-11] */
        mov     %eax, %edx
        shr     $8, %edx
        and     $15, %edx
        movzwl  dev_ports(, %rdx, 2), %edx
        ret
size_bits:              /* ecx = bits 5-6: 0, 1, 2, 3 for 1, 2, 4, 8 bytes */
        mov     %eax, %ecx
        shr     $5, %ecx
        and     $3, %ecx
        ret
gap_addr:               /* edx = 3 GiB + bits 8-37, page offset <= 0xff7 */
        mov     %rax, %rdx
        shr     $8, %rdx
        and     $0x3ffffff7, %edx
        add     $MMIO_GAP_START, %edx           /* 32 bits: no sign extension */
        ret
page_offset:            /* rdx += bits 12-23, at most 0xff7; clobbers rdi */
        mov     %eax, %edi
        shr     $12, %edi
        and     $0xff7, %edi
        add     %rdi, %rdx
        ret
/* Ports (dx) and MMIO (rdx) by size (ecx); writes take the value in rax. */
no_stop_port:           /* never the debug-exit port: 0xf4 becomes 0xf5 */
        cmp     $DEBUG_EXIT_PORT, %dx
        jne     1f
        inc     %edx
1:      ret
port_write:             /* and never the i8042 reset: 0xfe to 0x64 is 0xfd */
        call    no_stop_port
        cmp     $I8042_COMMAND, %dx
        jne     port_out
        cmp     $I8042_RESET_CPU, %al
        jne     port_out
        dec     %eax
port_out:  BY_SIZE "out %al, %dx", "out %ax, %dx", "out %eax, %dx", "out %eax, %dx"
port_read: BY_SIZE "in %dx, %al", "in %dx, %ax", "in %dx, %eax", "in %dx, %eax"
mmio_read: BY_SIZE "mov (%rdx), %al", "mov (%rdx), %ax", "mov (%rdx), %eax", "mov (%rdx), %rax"
mmio_write: BY_SIZE "mov %al, (%rdx)", "mov %ax, (%rdx)", "mov %eax, (%rdx)", "mov %rax, (%rdx)"

        .section .rodata, "a"
        .balign 8
op_table:               /* 32 slots: how often each operation runs */
        .quad   op_port_read_any, op_port_read_any, op_port_read_dev, op_port_read_dev
        .quad   op_port_write_dev, op_port_write_dev, op_port_write_dev, op_port_write_dev
        .quad   op_port_write_any, op_string_io, op_mmio_read_gap, op_mmio_read_gap
        .quad   op_mmio_read_dev, op_mmio_read_dev, op_mmio_write_marker, op_mmio_write_exit_page
        .quad   op_mmio_write_gap, op_virtio_read, op_virtio_read, op_virtio_status
        .quad   op_virtio_status, op_virtio_script, op_virtio_notify, op_virtio_notify
        .quad   op_virtio_notify, op_virtio_notify, op_virtio_write, op_virtio_write
        .quad   op_virtio_write, op_virtio_write, op_virtio_write, op_virtio_write
dev_ports:              /* 8250, i8042 (0x61: KVM's PIT speaker), POST, debug-exit */
        .word   COM1_THR, COM1_THR + 1, COM1_THR + 2, COM1_THR + 3
        .word   COM1_THR + 4, COM1_THR + 5, COM1_THR + 6, COM1_THR + 7
        .word   0x60, 0x61, 0x62, 0x63, I8042_COMMAND, POST_PORT, DEBUG_EXIT_PORT, 0xf7
chaos_text:     .ascii "chaos monkey!!\r\n"     /* 16 bytes for rep outsb */
msg_start:      .asciz "tiny: chaos: seed "
msg_start_2:    .asciz ", "
msg_start_3:    .asciz " accesses\n"
msg_done:       .asciz "\ntiny: chaos: done, generator at "

        .section .data, "aw"
        .balign 8
chaos_seed:     .quad 0                         /* tiny.chaos=SEED,N (cmdline.S) */
chaos_ops:      .quad 0                         /* N */
chaos_pages:                                    /* op_mmio_read_dev's pages */
        .quad   BOOT_MARKER_ADDR, DEBUG_EXIT_MMIO, IOAPIC_PAGE, LAPIC_PAGE
opt_chaos:      .byte 0                         /* tiny.chaos was given */

        .section .bss, "aw", @nobits
chaos_inbuf:    .skip 16                        /* rep insb lands here */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
