/*
 * syscall.S - the kernel's side of user mode, and the way out of the VM:
 * the two ways a system call arrives (the `syscall` instruction, or the
 * page fault a host that emulates guest kernel mode delivers instead),
 * write and exit, the CPU exception stubs the IDT points to, and
 * kernel_exit (step 6 of boot.S), which ends the VM with a status. The
 * MSRs and the IDT are set up by _start (boot.S); the code that makes the
 * calls is payload.S.
 */
#include "tiny.h"

        .globl  syscall_entry, isr_stubs, kernel_exit

        .section .text, "ax"

/* ====================================================================== */
/* System calls                                                           */
/* ====================================================================== */
/*
 * Two ways in, one way out.
 *
 * On ordinary KVM, `syscall` in the payload lands at syscall_entry at CPL 0
 * with RCX = return RIP and R11 = RFLAGS, still on the user stack.
 *
 * On hosts whose KVM emulates guest kernel mode (kvm_pvm, see tiny.h),
 * `syscall` instead raises a page fault at CPL 3: the CPU tried to fetch
 * the first instruction at LSTAR = syscall_entry still as user code, and
 * that page is supervisor-only in our page tables (tables.S). RCX and R11
 * are set as `syscall` would set them. exception_common recognises that
 * fault and continues at syscall_common, as if the instruction had worked.
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
/* Step 6: end the VM with a status (edi). Also the end of every error.   */
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

        .section .rodata, "a"
msg_space:      .asciz " "
msg_exit_1:     .asciz "tiny: payload exit("
msg_exit_2:     .asciz ")\n"
msg_exc_1:      .asciz "tiny: unexpected exception "
msg_exc_kernel: .asciz " in kernel mode: error="
msg_exc_user:   .asciz " in user mode: error="
msg_exc_rip:    .asciz " rip="
msg_exc_rsp:    .asciz " rsp="
msg_exc_cr2:    .asciz " cr2="

/* Names of the 32 exception vectors, 4 bytes each [SDM Vol. 3A Table 6-1]. */
exception_names:
        .ascii "#DE\0#DB\0NMI\0#BP\0#OF\0#BR\0#UD\0#NM\0"
        .ascii "#DF\0CSO\0#TS\0#NP\0#SS\0#GP\0#PF\0-15\0"
        .ascii "#MF\0#AC\0#MC\0#XM\0#VE\0#CP\0-22\0-23\0"
        .ascii "-24\0-25\0-26\0-27\0#HV\0#VC\0#SX\0-31\0"

        .section .data, "aw"
        .balign 8
user_rsp_scratch:       .quad 0         /* syscall_entry: user RSP while switching */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
