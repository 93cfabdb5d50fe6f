/*
 * boot.S - the tiny guest's entry point, `_start`, and the kernel's whole
 * life in order: take over the CPU, then steps 1-5 below, one after the
 * other in one straight piece of code (step 6 is kernel_exit in syscall.S).
 * The other files hold what these steps call and the tables they load;
 * tiny.h has the map of the files and the memory map.
 *
 * What the kernel does, in order (the numbers are the steps of issue 4):
 *   0. take over the CPU: own stack, page tables, GDT+TSS, IDT, syscall
 *      MSRs (the tables themselves are data, in tables.S); is there a UART?
 *   1. read the kernel command line from boot_params and parse the tiny.*
 *      options and virtio_mmio.device= entries (cmdline.S)
 *   2. print a greeting on the 8250 serial port (serial.S); tiny.fault and
 *      tiny.touch are checked here too
 *   3. drive the virtio console found on the command line (virtio_mmio.S,
 *      console.S); tiny.chaos and tiny.blk end the VM here instead
 *   4. write the boot marker
 *   5. drop to user mode (CPL 3) and run a payload that makes system calls
 *      (payload.S; the kernel side is syscall.S)
 *   6. the exit system call hands the payload's status to the VMM
 *      (kernel_exit, syscall.S)
 */
#include "tiny.h"

/* ====================================================================== */
/* Step 0: the entry point. Take over the CPU.                            */
/* ====================================================================== */
/*
 * State on entry, set by the VMM per [BOOT] "64-bit Boot Protocol":
 *   - long mode (CR0.PE|PG, CR4.PAE, EFER.LME|LMA), CS = 0x08 (64-bit code),
 *     DS/ES/SS = 0x10, from the VMM's GDT at 0x500;
 *   - paging on, the VMM's identity map of the first 1 GiB (2 MiB pages);
 *   - interrupts off (RFLAGS = 0x2), and the IDT empty: any exception now
 *     would be a triple fault, which the VMM reports as exit code 121;
 *   - rsi = physical address of struct boot_params (0x7000), rsp = 0x8ff0.
 */
        .section .text.entry, "ax"     /* tiny.ld puts it first, at 1 MiB */
        .code64
        .globl  _start
_start:
        /* Only one CPU runs this kernel. With an in-kernel local APIC
         * (tinyvmm, Firecracker, QEMU) the other vCPUs wait for an INIT/SIPI
         * that we never send, so they never get here; should a VMM start
         * them here anyway, the first to arrive wins and the rest park
         * (without touching the stack). `xchg` with memory is atomic even
         * without a lock prefix [SDM Vol. 2D "XCHG"]. Neither the CPUID
         * APIC ID nor the APIC base MSR's BSP flag would do: both depend on
         * what the VMM chose to set up. */
        mov     $1, %al
        xchg    %al, cpu_claimed(%rip)
        test    %al, %al
        jz      1f
0:      cli
        hlt
        jmp     0b
1:
        /* out 0x40 -> port 0x80: a VM exit; the VMM timestamps "kernel
         * start". An `out` from CPL 0 is always allowed. */
        mov     $POST_KERNEL_START, %al
        out     %al, $POST_PORT

        /* The only thing the VMM hands us is the boot_params pointer. */
        mov     %rsi, boot_params(%rip)

        /* Our own stack, inside our image (`kstack`, tables.S). */
        lea     kstack_top(%rip), %rsp

        /*
         * Page tables. The VMM's map covers 1 GiB with every page
         * supervisor-only; we need 4 GiB (the MMIO gap holds the boot marker
         * and virtio devices) and user pages for the payload. Ours are built
         * by the assembler (`pml4` in tables.S) so this is a single store
         * into CR3: from the next instruction fetch on, the CPU walks our
         * tables. The code keeps running because both maps are identity maps
         * of this address.  [SDM Vol. 3A 4.5]
         */
        lea     pml4(%rip), %rax
        mov     %rax, %cr3

        /*
         * GDT and TSS. The VMM's GDT has no user segments, so load ours
         * (`gdt` and `tss` in tables.S). The TSS descriptor holds the TSS
         * address split into four pieces, which the assembler cannot
         * compute from a relocatable symbol, so fill it in here.  [SDM
         * Vol. 3A 7.2.3 "TSS Descriptor in 64-bit mode"]
         */
        lea     tss(%rip), %rax
        mov     %ax, gdt_tss + 2(%rip)          /* base 15:0 */
        shr     $16, %rax
        mov     %al, gdt_tss + 4(%rip)          /* base 23:16 */
        mov     %ah, gdt_tss + 7(%rip)          /* base 31:24 */
        shr     $16, %rax
        mov     %eax, gdt_tss + 8(%rip)         /* base 63:32 */
        lgdt    gdt_ptr(%rip)

        /* Reload CS with a far return (pop RIP, then CS), then the data
         * segment registers. In 64-bit mode only SS matters for data; FS and
         * GS may be null. */
        pushq   $KERNEL_CS
        lea     1f(%rip), %rax
        push    %rax
        lretq
1:      mov     $KERNEL_DS, %eax
        mov     %eax, %ss
        mov     %eax, %ds
        mov     %eax, %es
        xor     %eax, %eax
        mov     %eax, %fs
        mov     %eax, %gs

        /* Task register: the CPU reads TSS.RSP0 from here whenever an
         * interrupt or exception moves it from CPL 3 to CPL 0. `ltr` also
         * marks the descriptor busy (type 0x9 -> 0xb) in our GDT.
         * [SDM Vol. 3A 7.7 "Task Management in 64-bit Mode"] */
        mov     $TSS_SEL, %ax
        ltr     %ax

        /*
         * IDT: one 16-byte interrupt gate for each of the 32 CPU exception
         * vectors, each pointing to a 16-byte stub in `isr_stubs`
         * (syscall.S; stub n is at isr_stubs + 16 * n). Gate layout [SDM
         * Vol. 3A 6.14.1 "64-Bit Mode IDT"]:
         *   bytes 0-1  handler address bits 15:0
         *   bytes 2-3  code segment selector
         *   byte  4    IST index (0: use the normal stack switch)
         *   byte  5    type 0xE (64-bit interrupt gate: clears IF), DPL 0, P
         *   bytes 6-7  handler address bits 31:16
         *   bytes 8-11 handler address bits 63:32
         *   bytes 12-15 reserved, zero
         */
        lea     idt(%rip), %rdi
        lea     isr_stubs(%rip), %rax
        mov     $32, %ecx
2:      mov     %ax, (%rdi)
        movw    $KERNEL_CS, 2(%rdi)
        movw    $0x8e00, 4(%rdi)
        mov     %rax, %rdx
        shr     $16, %rdx
        mov     %dx, 6(%rdi)
        shr     $16, %rdx
        mov     %edx, 8(%rdi)
        add     $16, %rax
        add     $16, %rdi
        dec     %ecx
        jnz     2b
        lidt    idt_ptr(%rip)

        /*
         * SYSCALL set-up [SDM Vol. 3A 5.8.8; Vol. 2B "SYSCALL"]. `syscall`
         * at CPL 3 loads CS = STAR[47:32], SS = STAR[47:32] + 8, RIP = LSTAR,
         * saves the return RIP in RCX and RFLAGS in R11, and clears the
         * RFLAGS bits set in SFMASK. It does not switch stacks.
         * STAR[63:48] is what SYSRET would use (CS = +16, SS = +8); we
         * return with IRETQ instead, but keep it consistent.
         * `wrmsr` writes edx:eax to the MSR numbered by ecx.
         */
        mov     $MSR_EFER, %ecx
        rdmsr
        or      $EFER_SCE, %eax
        wrmsr
        mov     $MSR_STAR, %ecx
        xor     %eax, %eax
        mov     $(USER_BASE_SEL << 16) | KERNEL_CS, %edx
        wrmsr
        mov     $MSR_LSTAR, %ecx
        lea     syscall_entry(%rip), %rax
        mov     %rax, %rdx
        shr     $32, %rdx
        wrmsr
        mov     $MSR_SFMASK, %ecx
        mov     $SYSCALL_RFLAGS_MASK, %eax
        xor     %edx, %edx
        wrmsr

        /* Is there a serial port at all? A read of a port no device claims
         * returns all ones (nothing drives the bus; VMMs answer 0xff too),
         * and no working 8250 has every line-status bit set. Without a
         * UART (tinyvmm --serial off) our messages are skipped instead of
         * costing a VM exit per byte for nothing. One exit to find out. */
        mov     $COM1_LSR, %dx
        in      %dx, %al
        cmp     $NO_DEVICE, %al
        jne     1f
        movb    $1, serial_absent(%rip)
1:

/* ====================================================================== */
/* Step 1: read the command line.                                         */
/* ====================================================================== */
        /* [BOOT] "The kernel command line": its address is
         * hdr.cmd_line_ptr (32 bits, offset 0x228 of boot_params) plus
         * ext_cmd_line_ptr (the upper 32 bits, offset 0x0c8). The VMM put a
         * NUL-terminated string at 0x20000. Addresses above 4 GiB are not
         * mapped here; an address of 0 means no command line. */
        mov     boot_params(%rip), %rbx
        mov     BP_CMD_LINE_PTR(%rbx), %esi     /* 32-bit move zero-extends */
        mov     BP_EXT_CMD_LINE_PTR(%rbx), %eax
        shl     $32, %rax
        or      %rax, %rsi
        mov     %rsi, cmdline(%rip)
        test    %rsi, %rsi
        jz      3f
        call    parse_cmdline
3:

/* ====================================================================== */
/* Step 2: greeting on the serial port.                                   */
/* ====================================================================== */
        cmpb    $0, opt_quiet(%rip)
        jne     4f
        KPUTS   msg_hello
        mov     cmdline(%rip), %rsi
        test    %rsi, %rsi
        jz      4f
        cmpb    $0, (%rsi)                      /* empty: say nothing */
        je      4f
        KPUTS   msg_cmdline
        mov     cmdline(%rip), %rsi
        call    puts
        KPUTS   msg_newline
4:

        /* tiny.fault: triple-fault on purpose. Load an IDT whose limit is
         * 0, so no gate is valid, then read an address our page tables do
         * not map. The #PF cannot be delivered (its gate is beyond the IDT
         * limit) which raises #GP; that cannot be delivered either, which
         * makes a double fault (#DF); failing to deliver #DF is a triple
         * fault: the CPU enters shutdown and KVM returns KVM_EXIT_SHUTDOWN
         * to the VMM, which exits with 121. [SDM Vol. 3A 6.15 "Interrupt
         * 8 - Double Fault Exception (#DF)"] The CPU does all of this
         * itself: no int3 or other instruction an emulator may lack. */
        cmpb    $0, opt_fault(%rip)
        je      5f
        KPUTS   msg_fault
        lidt    idt_null_ptr(%rip)
        movabs  $0x8000000000, %rax     /* 512 GiB: PML4 entry 1, not present */
        mov     (%rax), %al
5:

        /* tiny.touch: check the region fits in RAM before promising it to
         * user space. The VMM describes RAM in the e820 table of
         * boot_params [ZP]; find a RAM entry covering [TOUCH_BASE, end). */
        mov     boot_params(%rip), %rbx
        mov     user_touch_mib(%rip), %rax
        test    %rax, %rax
        jz      touch_ok
        cmp     $(USER_END - TOUCH_BASE) / MIB, %rax
        ja      touch_too_big
        shl     $20, %rax
        add     $TOUCH_BASE, %rax               /* rax = end of region */
        movzbl  BP_E820_ENTRIES(%rbx), %ecx
        lea     BP_E820_TABLE(%rbx), %rdx
6:      test    %ecx, %ecx
        jz      touch_too_big
        cmpl    $E820_RAM, 16(%rdx)
        jne     7f
        mov     (%rdx), %rdi                    /* entry start */
        cmp     $TOUCH_BASE, %rdi
        ja      7f
        add     8(%rdx), %rdi                   /* entry end */
        cmp     %rax, %rdi
        jae     touch_ok
7:      add     $E820_ENTRY_SIZE, %rdx
        dec     %ecx
        jmp     6b
touch_too_big:
        KPUTS   msg_touch_1
        mov     user_touch_mib(%rip), %rax
        call    print_dec
        KPUTS   msg_touch_2
        mov     $EXIT_BAD_OPTION, %edi
        jmp     kernel_exit
touch_ok:
        call    spin_run                        /* tiny.spin (spin.S) */

/* ====================================================================== */
/* Step 3: the virtio console (virtio_mmio.S, console.S).                 */
/* ====================================================================== */
        /* The VMM appends `virtio_mmio.device=4K@0xd0000000:5` for each
         * virtio-mmio device, and parse_cmdline has handed those entries
         * to the driver. Probe them; the first virtio console that comes up
         * carries the payload's output from now on (console_write in
         * serial.S, virtio_write in console.S). Our own messages, like the
         * greeting above and the exit line, stay on the serial port: it
         * needs no set-up, so it works even when virtio does not. Without
         * a usable device nothing changes. */
        call    virtio_init

        /* tiny.chaos=SEED,N: instead of steps 4 and 5, N random device
         * accesses (chaos.S), then debug-exit with status 0. */
        cmpb    $0, opt_chaos(%rip)
        je      8f
        mov     boot_params(%rip), %rsi
        jmp     chaos_run                       /* does not return */
8:
        /* tiny.blk: instead of steps 4 and 5, check the first virtio disk
         * (blk_check.S, blk.S), then debug-exit with the verdict. */
        cmpb    $BLK_OFF, opt_blk(%rip)
        jne     blk_run                         /* does not return */

/* ====================================================================== */
/* Step 4: the boot marker.                                               */
/* ====================================================================== */
        /* A byte write to 0xc000_0000: no RAM there, so KVM exits with
         * KVM_EXIT_MMIO and the VMM records the time (Firecracker's
         * boot-timer device at the same address). Our page tables map the
         * MMIO gap uncached, as device memory should be. A 32-bit
         * immediate would be sign-extended, hence the register. */
        mov     $BOOT_MARKER_ADDR, %eax         /* zero-extends to rax */
        movb    $BOOT_MARKER_VALUE, (%rax)

/* ====================================================================== */
/* Step 5: enter user mode.                                               */
/* ====================================================================== */
        /* Marker 0x41 on port 0x80: "user space reached". */
        mov     $POST_USER_START, %al
        out     %al, $POST_PORT

        /*
         * IRETQ pops RIP, CS, RFLAGS, RSP, SS. With CS.RPL = 3 the CPU
         * switches to CPL 3 [SDM Vol. 3A 6.14.3 "IRET in IA-32e Mode";
         * Vol. 2A "IRET"]. RFLAGS = 0x2: interrupts stay off (nothing
         * would interrupt us anyway) and IOPL = 0, so user space cannot
         * touch I/O ports. From CPL 3 only pages with the U bit at every
         * level are reachable: the payload's, not ours.
         */
        pushq   $USER_DS                /* SS */
        pushq   $user_stack_top         /* RSP */
        pushq   $RFLAGS_RESERVED        /* RFLAGS */
        pushq   $USER_CS                /* CS */
        pushq   $user_entry             /* RIP */
        /* Leave no kernel values in registers. */
        xor     %eax, %eax
        xor     %ebx, %ebx
        xor     %ecx, %ecx
        xor     %edx, %edx
        xor     %esi, %esi
        xor     %edi, %edi
        xor     %ebp, %ebp
        xor     %r8d, %r8d
        xor     %r9d, %r9d
        xor     %r10d, %r10d
        xor     %r11d, %r11d
        xor     %r12d, %r12d
        xor     %r13d, %r13d
        xor     %r14d, %r14d
        xor     %r15d, %r15d
        iretq

        .section .rodata, "a"
msg_hello:      .asciz "tiny: hello from the tiny guest\n"
msg_cmdline:    .asciz "tiny: cmdline: "
msg_fault:      .asciz "tiny: triple-faulting on purpose (tiny.fault)\n"
msg_touch_1:    .asciz "tiny: tiny.touch="
msg_touch_2:    .asciz " MiB does not fit in guest RAM (the region starts at 4 MiB, see e820)\n"

        .section .data, "aw"
        .balign 8
boot_params:            .quad 0         /* physical address, from rsi */
cmdline:                .quad 0         /* physical address of the command line */
cpu_claimed:            .byte 0         /* set by the first CPU in _start */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
