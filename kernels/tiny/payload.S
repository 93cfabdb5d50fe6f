/*
 * payload.S - the user-mode payload: the program the kernel runs at CPL 3
 * (boot.S step 5 `iretq`s to user_entry), linked at 2 MiB in user pages
 * (tiny.ld). It prints the marker line TINYVMM-GUEST-OK, does what the
 * tiny.loop, tiny.touch and tiny.flood options ask, and exits with
 * tiny.exit. Its options live here, in user data, where cmdline.S writes
 * them and the payload can read them; its system calls are handled in
 * syscall.S.
 */
#include "tiny.h"

        .globl  user_entry, user_stack_top
        .globl  user_exit_status, user_loop_count, user_touch_mib
        .globl  user_flood_bytes

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
