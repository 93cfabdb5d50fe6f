/*
 * tiny.S - the tinyvmm tiny guest kernel: one file, x86_64, GNU assembler
 * (AT&T syntax, as in Linux's arch/x86 and in `objdump -d`).
 *
 * build.rs assembles it and its virtio console driver, virtio.S (`gcc -c`,
 * which runs the C preprocessor on a .S file, hence the C-style comments),
 * and links both with kernels/tiny/tiny.ld into a static ELF. The VMM boots
 * that ELF exactly like a Linux vmlinux: linux-loader copies each PT_LOAD
 * segment to its physical address and the vCPU starts at the ELF entry
 * point, `_start`, already in 64-bit mode.
 *
 * What it does, in order (the numbers are the steps of issue 4):
 *   0. take over the CPU: own stack, page tables, GDT+TSS, IDT, syscall MSRs
 *   1. read the kernel command line from boot_params and parse tiny.* options
 *   2. print a greeting on the 8250 serial port
 *   3. drive the virtio console found on the command line (virtio.S)
 *   4. write the boot marker
 *   5. drop to user mode (CPL 3) and run a payload that makes system calls
 *   6. the exit system call hands the payload's status to the VMM
 *
 * Command line options (decimal numbers):
 *   tiny.exit=N    payload exit status (default 0)
 *   tiny.loop=N    burn N loop iterations in user mode before exiting
 *   tiny.touch=M   write one byte per 4 KiB page to M MiB of RAM from user
 *                  mode, starting at 4 MiB (checked against the e820 map)
 *   tiny.flood=B   write B bytes of a known pattern to the console: byte i
 *                  is "ABC...XYZabc...xyz0123456789-\n"[i % 64]
 *   tiny.fault     triple-fault on purpose (the VMM reports code 121)
 *   tiny.quiet     no greeting, no exit line, no virtio success line
 * and, from the VMM, one entry per virtio-mmio device (see virtio.S):
 *   virtio_mmio.device=<size>@<base>:<irq>   e.g. 4K@0xd0000000:5
 *
 * Exit statuses the guest itself chooses (through the debug-exit port):
 *   tiny.exit=N  N, normally 0
 *   100          unexpected CPU exception (message on serial)
 *   101          bad tiny.* option, or tiny.touch larger than guest RAM
 *   102          the payload's write system call failed
 *
 * Memory map (guest physical = guest virtual, identity mapped):
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
 *
 * Costs worth knowing: every port or MMIO access is a VM exit (the VMM runs
 * and comes back), so the serial port costs one exit per byte, the virtio
 * console one exit per write system call (up to 1 MiB here). On hosts
 * whose KVM emulates guest kernel mode (see shared/HOST.md: about 1 us per
 * instruction) kernel code should be short; this kernel runs a few thousand
 * instructions in all and does every heavy loop in user mode.
 *
 * References:
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

/* ---------------------------------------------------------------------- */
/* Constants                                                              */
/* ---------------------------------------------------------------------- */

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
        .equ I8042_COMMAND,     0x64    /* keyboard controller command port */
        .equ I8042_RESET_CPU,   0xfe    /* pulse the CPU reset line */

/* struct boot_params ("zero page") offsets [ZP]. */
        .equ BP_EXT_CMD_LINE_PTR, 0x0c8 /* u32: bits 63:32 of the cmdline address */
        .equ BP_E820_ENTRIES,   0x1e8   /* u8: number of e820 entries */
        .equ BP_CMD_LINE_PTR,   0x228   /* u32: hdr.cmd_line_ptr, bits 31:0 */
        .equ BP_E820_TABLE,     0x2d0   /* struct boot_e820_entry[128] */
        .equ E820_ENTRY_SIZE,   20      /* u64 addr, u64 size, u32 type (packed) */
        .equ E820_RAM,          1

/* GDT selectors (index * 8 | requested privilege level). See `gdt` below. */
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

/* Our memory layout (see the map at the top and tiny.ld). */
        .equ USER_START,        0x200000   /* first user-accessible byte */
        .equ TOUCH_BASE,        0x400000   /* tiny.touch starts here */
        .equ USER_END,          0xc0000000 /* user mappings stop at the MMIO gap */
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

/* Exit statuses chosen by the tiny guest itself (see the header). */
        .equ EXIT_EXCEPTION,    100
        .equ EXIT_BAD_OPTION,   101
        .equ EXIT_WRITE_FAILED, 102

/* ASCII, named (a quote character would upset the C preprocessor). */
        .equ ASCII_NL,          0x0a
        .equ ASCII_SPACE,       0x20
        .equ ASCII_0,           0x30
        .equ ASCII_EQUALS,      0x3d

/* Shared with the virtio console driver, virtio.S (linked with this file). */
        .globl  puts, print_word, print_hex, print_dec, serial_write
        .globl  match_prefix, at_word_end, last_byte, opt_quiet

/* Print a NUL-terminated string from .rodata. Clobbers rax, rdx, rsi. */
        .macro KPUTS label
        lea     \label(%rip), %rsi
        call    puts
        .endm

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
        .section .text.entry, "ax"
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

        /* Our own stack, inside our image (see .bss). */
        lea     kstack_top(%rip), %rsp

        /*
         * Page tables. The VMM's map covers 1 GiB with every page
         * supervisor-only; we need 4 GiB (the MMIO gap holds the boot marker
         * and virtio devices) and user pages for the payload. Ours are built
         * by the assembler (see `pml4` in .data) so this is a single store
         * into CR3: from the next instruction fetch on, the CPU walks our
         * tables. The code keeps running because both maps are identity maps
         * of this address.  [SDM Vol. 3A 4.5]
         */
        lea     pml4(%rip), %rax
        mov     %rax, %cr3

        /*
         * GDT and TSS. The VMM's GDT has no user segments, so load ours.
         * The TSS descriptor holds the TSS address split into four pieces,
         * which the assembler cannot compute from a relocatable symbol, so
         * fill it in here.  [SDM Vol. 3A 7.2.3 "TSS Descriptor in 64-bit
         * mode"]
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
         * vectors, each pointing to a 16-byte stub in `isr_stubs` (so stub
         * n is at isr_stubs + 16 * n). Gate layout [SDM Vol. 3A 6.14.1
         * "64-Bit Mode IDT"]:
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

/* ====================================================================== */
/* Step 3: the virtio console (the driver is kernels/tiny/virtio.S).      */
/* ====================================================================== */
        /* The VMM appends `virtio_mmio.device=4K@0xd0000000:5` for each
         * virtio-mmio device, and parse_cmdline has handed those entries
         * to the driver. Probe them; the first virtio console that comes up
         * carries the payload's output from now on (console_write). Our own
         * messages, like the greeting above and the exit line, stay on the
         * serial port: it needs no set-up, so it works even when virtio
         * does not. Without a usable device nothing changes. */
        call    virtio_init

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

/* ====================================================================== */
/* System calls                                                           */
/* ====================================================================== */
/*
 * Two ways in, one way out.
 *
 * On ordinary KVM, `syscall` in the payload lands at syscall_entry at CPL 0
 * with RCX = return RIP and R11 = RFLAGS, still on the user stack.
 *
 * On hosts whose KVM emulates guest kernel mode (shared/HOST.md), `syscall`
 * instead raises a page fault at CPL 3: the CPU tried to fetch the first
 * instruction at LSTAR = syscall_entry still as user code, and that page is
 * supervisor-only in our page tables. RCX and R11 are set as `syscall`
 * would set them. exception_common recognises that fault and continues at
 * syscall_common, as if the instruction had worked.
 *
 * Both paths build the same 5-word IRETQ frame on the kernel stack and
 * return with IRETQ (SYSRETQ would do on the first path only).
 * Calling convention (Linux's): rax = number, rdi/rsi/rdx = arguments,
 * rax = result (negative errno on failure); rcx and r11 are clobbered,
 * every other register is preserved.
 */
syscall_entry:
        mov     %rsp, user_rsp_scratch(%rip)    /* one CPU, interrupts off */
        lea     kstack_top(%rip), %rsp
        pushq   $USER_DS                        /* SS */
        pushq   user_rsp_scratch(%rip)          /* RSP */
        push    %r11                            /* RFLAGS */
        pushq   $USER_CS                        /* CS */
        push    %rcx                            /* RIP */
        /* fall through */

syscall_common:
        /* Stack: 0 RIP, 8 CS, 16 RFLAGS, 24 RSP, 32 SS. */
        cld                     /* the string instructions below count up */
        /* Hand back only the arithmetic flags: never IOPL, IF or TF. */
        andq    $RFLAGS_USER_BITS, 16(%rsp)
        orq     $RFLAGS_RESERVED, 16(%rsp)
        push    %rdi
        push    %rsi
        push    %rdx
        cmp     $SYS_WRITE, %rax
        jne     1f
        call    sys_write
        jmp     2f
1:      cmp     $SYS_EXIT, %rax
        je      sys_exit
        cmp     $SYS_EXIT_GROUP, %rax
        je      sys_exit
        mov     $-ENOSYS, %rax
2:      pop     %rdx
        pop     %rsi
        pop     %rdi
        iretq

/* write(fd = rdi, buf = rsi, len = rdx) -> rax = len or -errno.
 * Only stdout and stderr exist; the buffer must lie in user memory (the
 * kernel must not be tricked into printing its own memory). */
sys_write:
        cmp     $1, %rdi
        je      1f
        cmp     $2, %rdi
        je      1f
        mov     $-EBADF, %rax
        ret
1:      mov     %rsi, %rax
        add     %rdx, %rax                      /* end of buffer */
        jc      2f                              /* wrapped around */
        cmp     $USER_START, %rsi
        jb      2f
        mov     $USER_END, %ecx
        cmp     %rcx, %rax
        ja      2f
        mov     %rdx, %rcx
        push    %rdx
        call    console_write
        pop     %rax
        ret
2:      mov     $-EFAULT, %rax
        ret

/* exit(status = rdi): print it, then step 6. Does not return. */
sys_exit:
        mov     %rdi, %rbx
        cmpb    $0, opt_quiet(%rip)
        jne     1f
        call    newline_if_needed
        KPUTS   msg_exit_1
        mov     %rbx, %rax
        call    print_dec
        KPUTS   msg_exit_2
1:      mov     %ebx, %edi
        /* fall through */

/* ====================================================================== */
/* Step 6: end the VM with a status (edi).                                */
/* ====================================================================== */
kernel_exit:
        /* A 32-bit write to port 0xf4 (QEMU's isa-debug-exit port; tinyvmm
         * exits with the value itself, QEMU with value * 2 + 1). The VMM
         * stops the VM here: nothing below runs under tinyvmm. */
        mov     %edi, %eax
        out     %eax, $DEBUG_EXIT_PORT
        /* Without a debug-exit device: ask the i8042 keyboard controller
         * to reset the CPU, which VMMs turn into a clean exit (status lost),
         * and failing that, halt for good. */
        mov     $I8042_RESET_CPU, %al
        out     %al, $I8042_COMMAND
1:      cli
        hlt
        jmp     1b

/* ====================================================================== */
/* Exceptions                                                             */
/* ====================================================================== */
/*
 * The CPU delivers exception n through IDT gate n: it switches to the stack
 * in TSS.RSP0 if it comes from CPL 3, pushes SS, RSP, RFLAGS, CS, RIP, and
 * for some vectors an error code, and jumps to the handler with IF clear
 * [SDM Vol. 3A 6.14.2 "64-Bit Mode Stack Frame"]. Each stub pushes a dummy
 * error code where the CPU pushes none, then its vector number, so that
 * exception_common always sees the same frame:
 *   0 vector, 8 error code, 16 RIP, 24 CS, 32 RFLAGS, 40 RSP, 48 SS
 * Vectors with an error code [SDM Vol. 3A 6.15]: 8, 10-14, 17, 21, 29, 30.
 */
        .balign 16
isr_stubs:
        .set    vector, 0
        .rept   32
        .balign 16
        .if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
        /* the CPU pushed an error code */
        .else
        pushq   $0
        .endif
        pushq   $vector
        jmp     exception_common
        .set    vector, vector + 1
        .endr

exception_common:
        /* Is this the system call in disguise (see "System calls")? A page
         * fault (vector 14) from CPL 3 whose faulting RIP is our LSTAR.
         * Touch no register before deciding: they hold the call's
         * arguments. */
        cmpq    $14, (%rsp)
        jne     unexpected_exception
        testq   $PF_USER, 8(%rsp)
        jz      unexpected_exception
        cmpq    $syscall_entry, 16(%rsp)
        jne     unexpected_exception
        /* Turn the fault frame into the frame `syscall` implies: return
         * to RCX with flags R11, on the user stack the fault saved. */
        add     $16, %rsp                       /* drop vector, error code */
        mov     %rcx, (%rsp)                    /* RIP */
        movq    $USER_CS, 8(%rsp)               /* CS */
        mov     %r11, 16(%rsp)                  /* RFLAGS */
        movq    $USER_DS, 32(%rsp)              /* SS; RSP at 24 stays */
        jmp     syscall_common

/* Anything else: say what happened and end the VM with status 100.
 * "tiny: unexpected exception 14 #PF in user mode: error=0x6 rip=0x...
 *  rsp=0x... cr2=0x..." */
unexpected_exception:
        cld
        mov     %rsp, %rbp
        call    newline_if_needed
        KPUTS   msg_exc_1
        mov     (%rbp), %rax
        call    print_dec
        KPUTS   msg_space
        mov     (%rbp), %rax
        lea     exception_names(%rip), %rsi
        lea     (%rsi, %rax, 4), %rsi
        call    puts
        lea     msg_exc_kernel(%rip), %rsi
        testq   $3, 24(%rbp)                    /* CS.RPL = CPL at the fault */
        jz      1f
        lea     msg_exc_user(%rip), %rsi
1:      call    puts
        mov     8(%rbp), %rax
        call    print_hex
        KPUTS   msg_exc_rip
        mov     16(%rbp), %rax
        call    print_hex
        KPUTS   msg_exc_rsp
        mov     40(%rbp), %rax
        call    print_hex
        cmpq    $14, (%rbp)
        jne     2f
        KPUTS   msg_exc_cr2                     /* #PF: CR2 = faulting address */
        mov     %cr2, %rax
        call    print_hex
2:      KPUTS   msg_newline
        mov     $EXIT_EXCEPTION, %edi
        jmp     kernel_exit

/* ====================================================================== */
/* Command line parsing                                                   */
/* ====================================================================== */
/*
 * parse_cmdline(rsi = NUL-terminated command line). Space-separated words;
 * words starting with "tiny." are looked up in `options`; the VMM's
 * virtio_mmio.device=... entries go to the virtio driver (virtio.S); others
 * (console=..., Linux options) are skipped.
 * Registers: rsi = cursor, r12 = start of the current word, rbx = option.
 */
parse_cmdline:
        push    %rbx
next_word:
        movzbl  (%rsi), %eax
        test    %al, %al
        jz      parse_done
        cmp     $ASCII_SPACE, %al
        jne     1f
        inc     %rsi
        jmp     next_word
1:      mov     %rsi, %r12
        lea     str_tiny_prefix(%rip), %rdi
        call    match_prefix
        test    %eax, %eax
        jz      other_word                      /* not a tiny.* option */
        mov     %rsi, %r13                      /* just after "tiny." */
        lea     options(%rip), %rbx
2:      mov     (%rbx), %rdi                    /* option name */
        test    %rdi, %rdi
        jz      unknown_option
        mov     %r13, %rsi
        call    match_prefix
        test    %eax, %eax
        jz      3f
        cmpb    $ASCII_EQUALS, -1(%rsi)         /* "name=": a number follows */
        je      parse_number
        call    at_word_end                     /* a flag: "name" alone */
        jne     3f
        mov     8(%rbx), %rdi
        movb    $1, (%rdi)
        jmp     next_word
3:      add     $16, %rbx
        jmp     2b

parse_number:
        xor     %eax, %eax                      /* value */
        call    at_word_end
        je      bad_number                      /* "tiny.exit=" alone */
4:      call    at_word_end
        je      5f
        movzbl  (%rsi), %ecx
        sub     $ASCII_0, %ecx
        cmp     $9, %ecx
        ja      bad_number                      /* not a digit */
        imul    $10, %rax, %rax
        add     %rcx, %rax
        inc     %rsi
        jmp     4b
5:      mov     8(%rbx), %rdi
        mov     %rax, (%rdi)
        jmp     next_word

/* Not ours, but it may describe a virtio device; virtio.S decides. */
other_word:
        call    virtio_parse_word
        jmp     skip_word

unknown_option:
        KPUTS   msg_unknown
        mov     %r12, %rsi
        call    print_word
        KPUTS   msg_newline
        mov     %r12, %rsi
skip_word:
        call    at_word_end
        je      next_word
        inc     %rsi
        jmp     skip_word

parse_done:
        pop     %rbx
        ret

bad_number:
        KPUTS   msg_bad_number
        mov     %r12, %rsi
        call    print_word
        KPUTS   msg_newline
        mov     $EXIT_BAD_OPTION, %edi
        jmp     kernel_exit

/* at_word_end: ZF = 1 if the byte at rsi is a space or NUL. */
at_word_end:
        cmpb    $0, (%rsi)
        je      1f
        cmpb    $ASCII_SPACE, (%rsi)
1:      ret

/* match_prefix(rsi = text, rdi = NUL-terminated word): if text starts with
 * word, eax = 1 and rsi points just past it; else eax = 0, rsi unchanged.
 * Clobbers rdx, rdi. */
match_prefix:
        mov     %rsi, %rdx
1:      movzbl  (%rdi), %eax
        test    %al, %al
        jz      2f
        cmp     (%rdx), %al
        jne     3f
        inc     %rdi
        inc     %rdx
        jmp     1b
2:      mov     %rdx, %rsi
        mov     $1, %eax
        ret
3:      xor     %eax, %eax
        ret

/* ====================================================================== */
/* Console output                                                         */
/* ====================================================================== */
/*
 * The 8250 UART: a byte written to the transmit holding register (THR,
 * port 0x3f8) is sent. Real hardware wants the driver to wait for LSR
 * (port 0x3fd) bit 5, "THR empty", and to program the baud rate first;
 * the VMM's emulated UART sends immediately and needs neither, so we skip
 * both and save a VM exit per byte. [8250] Without a UART at all (see
 * serial_absent in _start) every serial routine returns at once.
 */

/* console_write(rsi = buffer, rcx = length): the payload's output, from
 * the write system call. The one place that chooses between virtio and
 * serial: the virtio console once virtio_init found one (virtio.S), else the
 * serial port. Clobbers rax, rcx, rdx, rsi, rdi. */
console_write:
        test    %rcx, %rcx
        jz      2f
        cmpq    $0, virtio_base(%rip)
        jne     virtio_write                    /* returns to our caller */
/* serial_write(rsi = buffer, rcx = length > 0): the 8250. Clobbers rax,
 * rcx, rdx, rsi. */
serial_write:
        cmpb    $0, serial_absent(%rip)
        jne     2f
        mov     $COM1_THR, %dx
1:      lodsb
        out     %al, %dx                        /* one VM exit per byte */
        dec     %rcx
        jnz     1b
        mov     %al, last_byte(%rip)
2:      ret

/* puts(rsi = NUL-terminated string). Clobbers rax, rdx, rsi. */
puts:
        cmpb    $0, serial_absent(%rip)
        jne     2f
        mov     $COM1_THR, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        mov     %al, last_byte(%rip)
        jmp     1b
2:      ret

/* print_word(rsi): print up to the next space or NUL. Clobbers rax, rdx,
 * rsi. */
print_word:
        cmpb    $0, serial_absent(%rip)
        jne     2f
        mov     $COM1_THR, %dx
1:      call    at_word_end
        je      2f
        lodsb
        out     %al, %dx
        jmp     1b
2:      ret

/* newline_if_needed: start a new line unless the last byte printed ended
 * one (a tiny.flood may stop mid-line). Clobbers rax, rdx. */
newline_if_needed:
        cmpb    $0, serial_absent(%rip)
        jne     1f
        cmpb    $ASCII_NL, last_byte(%rip)
        je      1f
        mov     $ASCII_NL, %al
        mov     %al, last_byte(%rip)
        mov     $COM1_THR, %dx
        out     %al, %dx
1:      ret

/* print_dec / print_hex(rax): print an unsigned number on the serial port,
 * hex with "0x". Clobbers rax, rcx, rdx, rsi, rdi. */
print_hex:
        push    %rax
        KPUTS   msg_0x
        pop     %rax
        mov     $16, %ecx
        jmp     print_uint
print_dec:
        mov     $10, %ecx
print_uint:
        lea     numbuf_end(%rip), %rdi
1:      xor     %edx, %edx
        div     %rcx                            /* rax = quotient, rdx = digit */
        lea     hex_digits(%rip), %rsi
        movzbl  (%rsi, %rdx), %edx
        dec     %rdi
        mov     %dl, (%rdi)
        test    %rax, %rax
        jnz     1b
        mov     %rdi, %rsi
        lea     numbuf_end(%rip), %rcx
        sub     %rdi, %rcx
        jmp     serial_write

/* ---------------------------------------------------------------------- */
/* Kernel read-only data                                                  */
/* ---------------------------------------------------------------------- */
        .section .rodata, "a"
msg_hello:      .asciz "tiny: hello from the tiny guest\n"
msg_cmdline:    .asciz "tiny: cmdline: "
msg_newline:    .asciz "\n"
msg_space:      .asciz " "
msg_0x:         .asciz "0x"
msg_fault:      .asciz "tiny: triple-faulting on purpose (tiny.fault)\n"
msg_touch_1:    .asciz "tiny: tiny.touch="
msg_touch_2:    .asciz " MiB does not fit in guest RAM (the region starts at 4 MiB, see e820)\n"
msg_unknown:    .asciz "tiny: ignoring unknown option "
msg_bad_number: .asciz "tiny: bad number in option "
msg_exit_1:     .asciz "tiny: payload exit("
msg_exit_2:     .asciz ")\n"
msg_exc_1:      .asciz "tiny: unexpected exception "
msg_exc_kernel: .asciz " in kernel mode: error="
msg_exc_user:   .asciz " in user mode: error="
msg_exc_rip:    .asciz " rip="
msg_exc_rsp:    .asciz " rsp="
msg_exc_cr2:    .asciz " cr2="
hex_digits:     .ascii "0123456789abcdef"
str_tiny_prefix: .asciz "tiny."

/* Names of the 32 exception vectors, 4 bytes each [SDM Vol. 3A Table 6-1]. */
exception_names:
        .ascii "#DE\0#DB\0NMI\0#BP\0#OF\0#BR\0#UD\0#NM\0"
        .ascii "#DF\0CSO\0#TS\0#NP\0#SS\0#GP\0#PF\0-15\0"
        .ascii "#MF\0#AC\0#MC\0#XM\0#VE\0#CP\0-22\0-23\0"
        .ascii "-24\0-25\0-26\0-27\0#HV\0#VC\0#SX\0-31\0"

/* The options: name, address of the value. A name ending in '=' takes a
 * decimal number (stored as a quad); other names are flags (a byte set to
 * 1). The numbers live in the payload's data, where user mode reads them. */
        .balign 8
options:
        .quad   opt_name_exit,  user_exit_status
        .quad   opt_name_loop,  user_loop_count
        .quad   opt_name_touch, user_touch_mib
        .quad   opt_name_flood, user_flood_bytes
        .quad   opt_name_fault, opt_fault
        .quad   opt_name_quiet, opt_quiet
        .quad   0
opt_name_exit:  .asciz "exit="
opt_name_loop:  .asciz "loop="
opt_name_touch: .asciz "touch="
opt_name_flood: .asciz "flood="
opt_name_fault: .asciz "fault"
opt_name_quiet: .asciz "quiet"

/* ---------------------------------------------------------------------- */
/* Kernel data: page tables, GDT, TSS, IDT, variables                     */
/* ---------------------------------------------------------------------- */
        .section .data, "aw"

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

        .balign 8
boot_params:            .quad 0         /* physical address, from rsi */
cmdline:                .quad 0         /* physical address of the command line */
user_rsp_scratch:       .quad 0         /* syscall_entry: user RSP while switching */
cpu_claimed:            .byte 0         /* set by the first CPU in _start */
opt_fault:              .byte 0         /* tiny.fault */
opt_quiet:              .byte 0         /* tiny.quiet */
serial_absent:          .byte 0         /* no 8250: skip serial output */
last_byte:              .byte ASCII_NL  /* last byte sent to the console */
numbuf:                 .fill 24, 1, 0  /* print_uint builds digits here */
numbuf_end:

/* The kernel stack: used from _start on, and (as TSS.RSP0) on every entry
 * from user mode. Nothing here needs to start as zero: the Linux boot
 * protocol leaves clearing .bss to the kernel, and this one has no need. */
        .section .bss, "aw", @nobits
        .balign 16
kstack:
        .skip   8192
kstack_top:

/* ====================================================================== */
/* The user-mode payload (CPL 3), linked at 2 MiB in user pages.          */
/* ====================================================================== */
/*
 * Runs at native speed even where kernel mode is emulated. It can only
 * reach its own pages (2 MiB - 3 GiB); the kernel's are supervisor-only.
 * It talks to the kernel only through `syscall`.
 */
        .section .user.text, "ax"
user_entry:
        /* write(1, "TINYVMM-GUEST-OK\n", 17): the marker line every
         * comparison in the project looks for. */
        mov     $SYS_WRITE, %eax
        mov     $1, %edi
        lea     ok_line(%rip), %rsi
        mov     $ok_line_end - ok_line, %edx
        syscall
        cmp     $ok_line_end - ok_line, %rax
        jne     write_failed

        /* tiny.loop=N: burn N iterations. */
        mov     user_loop_count(%rip), %rcx
        test    %rcx, %rcx
        jz      2f
1:      dec     %rcx
        jnz     1b
2:

        /* tiny.touch=M: one write per 4 KiB page of M MiB from 4 MiB up
         * (the kernel checked that this is RAM). Each first write to a page
         * makes the host allocate it: this is how much memory the guest
         * costs the host. */
        mov     user_touch_mib(%rip), %rcx
        shl     $8, %rcx                        /* MiB -> 4 KiB pages */
        jz      4f
        mov     $TOUCH_BASE, %edi
3:      mov     %edi, (%rdi)
        add     $PAGE_4K, %rdi
        dec     %rcx
        jnz     3b
4:

        /* tiny.flood=B: write B bytes of the pattern. First fill flood_buf
         * (1 MiB) with copies of the 64-byte flood_line, 8 bytes at a time
         * (user mode: native speed), only as far as B needs; then write
         * from it, up to 1 MiB per call, so 1 GiB takes 1024 system calls
         * (kernel code, which is what costs on an emulating host). Every
         * write starts at the buffer start and all but the last are a
         * whole number of lines long, so byte i of the output is
         * flood_line[i % 64]. (Our kernel writes all or nothing: no short
         * writes to resume.) */
        mov     user_flood_bytes(%rip), %rbx
        test    %rbx, %rbx
        jz      6f
        mov     $FLOOD_BUF_SIZE, %ecx
        cmp     %rcx, %rbx
        cmovb   %rbx, %rcx                      /* rcx = min(B, 1 MiB) */
        add     $7, %rcx
        shr     $3, %rcx                        /* in quadwords */
        lea     flood_buf(%rip), %rdi
        lea     flood_line(%rip), %rsi
        xor     %edx, %edx                      /* offset in the line */
7:      mov     (%rsi, %rdx), %rax
        mov     %rax, (%rdi)
        add     $8, %rdi
        add     $8, %edx
        and     $63, %edx
        dec     %rcx
        jnz     7b
5:      mov     $FLOOD_BUF_SIZE, %edx
        cmp     %rdx, %rbx
        cmovb   %rbx, %rdx                      /* rdx = min(left, 1 MiB) */
        mov     $SYS_WRITE, %eax
        mov     $1, %edi
        lea     flood_buf(%rip), %rsi
        syscall
        cmp     %rdx, %rax
        jne     write_failed
        sub     %rax, %rbx
        jnz     5b
6:

        /* exit(tiny.exit): does not return. */
        mov     $SYS_EXIT, %eax
        mov     user_exit_status(%rip), %rdi
        syscall
        ud2                                     /* not reached */

write_failed:
        mov     $SYS_EXIT, %eax
        mov     $EXIT_WRITE_FAILED, %edi
        syscall
        ud2

        .section .user.data, "aw"
        .balign 8
/* Written by the kernel's command-line parser, read here. */
user_exit_status:       .quad 0         /* tiny.exit */
user_loop_count:        .quad 0         /* tiny.loop */
user_touch_mib:         .quad 0         /* tiny.touch */
user_flood_bytes:       .quad 0         /* tiny.flood */

ok_line:
        .ascii  "TINYVMM-GUEST-OK\n"
ok_line_end:

        .balign 64
flood_line:
        .ascii  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-\n"
flood_line_end:
        .if flood_line_end - flood_line != 64
        .error "flood_line must be 64 bytes"
        .endif

        .section .user.bss, "aw", @nobits
        .balign 16
user_stack:
        .skip   4096
user_stack_top:
        .balign PAGE_4K
flood_buf:                              /* tiny.flood: filled by the payload */
        .skip   FLOOD_BUF_SIZE

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
