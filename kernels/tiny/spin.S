/*
 * spin.S - tiny.spin=N: a known kernel-mode busy loop for the profiler
 * (tinyvmm run --profile, tests/profile.rs). _start calls spin_run just
 * before step 3 (boot.S); with tiny.spin=N (decimal, parsed by cmdline.S)
 * it runs N rounds of spin_loop, a short loop of a known length, then
 * returns; without it, it returns at once.
 *
 * Both functions keep a frame pointer (`push %rbp; mov %rsp, %rbp`, as
 * gcc -fno-omit-frame-pointer does), so a profiler that walks RBP sees
 * the chain _start -> spin_run -> spin_loop, and spin_loop is where the
 * samples land. Kernel mode on purpose: where KVM emulates guest kernel
 * mode (kvm_pvm, ~1 us per instruction) this is the mode that a profile
 * of a Linux boot is about. One round is 64 iterations of 2 instructions.
 */
#include "tiny.h"

        .globl  spin_run, spin_loop, opt_spin

        .section .text, "ax"

/* spin_run(): tiny.spin rounds of spin_loop. Clobbers rax, rcx. */
spin_run:
        push    %rbp
        mov     %rsp, %rbp
        mov     opt_spin(%rip), %rax
1:      test    %rax, %rax
        jz      2f
        call    spin_loop
        dec     %rax
        jmp     1b
2:      pop     %rbp
        ret

/* spin_loop(): one round. Clobbers rcx. */
spin_loop:
        push    %rbp
        mov     %rsp, %rbp
        mov     $64, %ecx
1:      dec     %ecx
        jnz     1b
        pop     %rbp
        ret

        .section .data, "aw"
        .balign 8
opt_spin:               .quad 0         /* tiny.spin: rounds */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
