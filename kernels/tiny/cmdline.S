/*
 * cmdline.S - the kernel command line, every word of it: parse_cmdline
 * (called once by _start, boot.S step 1) reads the tiny.* options into
 * their variables and hands each virtio_mmio.device= entry to
 * virtio_parse_word, which remembers the device for virtio_init
 * (virtio_mmio.S). Also the small string helpers the other files use
 * (match_prefix, at_word_end).
 *
 * Options (decimal numbers):
 *   tiny.exit=N    payload exit status (default 0)
 *   tiny.loop=N    burn N loop iterations in user mode before exiting
 *   tiny.touch=M   write one byte per 4 KiB page to M MiB of RAM from user
 *                  mode, starting at 4 MiB (checked against the e820 map)
 *   tiny.flood=B   write B bytes of a known pattern to the console: byte i
 *                  is "ABC...XYZabc...xyz0123456789-\n"[i % 64]
 *   tiny.fault     triple-fault on purpose (the VMM reports code 121)
 *   tiny.quiet     no greeting, no exit line, no virtio success line
 *   tiny.chaos=SEED,N  the chaos monkey (chaos.S): N random device
 *                  accesses chosen by SEED, then exit status 0; SEED and N
 *                  decimal or 0x hex, modulo 2^64
 *   tiny.spin=N    N rounds of a kernel-mode busy loop before step 3
 *                  (spin.S; the profiler's known hot spot)
 *   tiny.blk       check the first virtio disk (blk_check.S) instead of
 *                  running the payload; tiny.blk=rw / tiny.blk=ro also
 *                  require it to be writable / read-only
 * An unknown tiny.* option is reported and ignored; a bad number ends the
 * VM with EXIT_BAD_OPTION. From the VMM, one entry per virtio-mmio device:
 *   virtio_mmio.device=<size>@<base>:<irq>   e.g. 4K@0xd0000000:5
 * Every other word (console=..., Linux options) is skipped.
 */
#include "tiny.h"
#include "virtio.h"

        .globl  parse_cmdline, match_prefix, at_word_end
        .globl  opt_fault, opt_quiet

        .section .text, "ax"

/* ====================================================================== */
/* Command line parsing                                                   */
/* ====================================================================== */
/*
 * parse_cmdline(rsi = NUL-terminated command line). Space-separated words;
 * words starting with "tiny." are looked up in `options`; the VMM's
 * virtio_mmio.device=... entries go to virtio_parse_word (below); others
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
        lea     str_chaos(%rip), %rdi           /* two numbers: not in `options` */
        call    match_prefix
        test    %eax, %eax
        jnz     parse_chaos
        lea     str_blk(%rip), %rdi             /* flag or =rw/=ro: not in `options` */
        call    match_prefix
        test    %eax, %eax
        jnz     parse_blk
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

/* tiny.chaos=SEED,N: two numbers and a comma, nothing else. */
parse_chaos:
        call    parse_uint
        jc      bad_number
        mov     %rax, chaos_seed(%rip)
        cmpb    $ASCII_COMMA, (%rsi)
        jne     bad_number
        inc     %rsi
        call    parse_uint
        jc      bad_number
        mov     %rax, chaos_ops(%rip)
        call    at_word_end
        jne     bad_number
        movb    $1, opt_chaos(%rip)
        jmp     next_word

/* tiny.blk, tiny.blk=rw or tiny.blk=ro (rsi just past "blk"). */
parse_blk:
        mov     $BLK_ANY, %ecx
        call    at_word_end
        je      2f
        cmpb    $ASCII_EQUALS, (%rsi)
        jne     unknown_option                  /* tiny.blkfoo */
        inc     %rsi
        mov     $BLK_RW, %ecx
        lea     str_rw(%rip), %rdi
        call    match_prefix
        test    %eax, %eax
        jnz     1f
        mov     $BLK_RO, %ecx
        lea     str_ro(%rip), %rdi
        call    match_prefix
        test    %eax, %eax
        jz      bad_blk
1:      call    at_word_end
        jne     bad_blk
2:      mov     %cl, opt_blk(%rip)
        jmp     next_word
bad_blk:
        KPUTS   msg_bad_blk
        mov     %r12, %rsi
        call    print_word
        KPUTS   msg_newline
        mov     $EXIT_BAD_OPTION, %edi
        jmp     kernel_exit

/* Not ours, but it may describe a virtio device; virtio_parse_word
 * decides. */
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
/* Virtio discovery: virtio_mmio.device=<size>@<base>:<irq>[:<id>]        */
/* ====================================================================== */
/*
 * MMIO has no bus to enumerate [VIRTIO 4.2.1 "MMIO Device Discovery"]: the
 * platform must say where the devices are. Device trees do it with a node;
 * x86 Linux takes `virtio_mmio.device=` on its command line, and so do we:
 * <size> with an optional K, M or G suffix, <base> in hex (0x...) or
 * decimal, <irq> decimal, and an optional :<id> (a Linux platform device
 * number) that we ignore. Numbers starting with 0 are not octal here.
 *
 * virtio_parse_word(rsi = a command-line word): if it is such an entry,
 * remember the device. Returns with rsi somewhere inside the word (the
 * caller skips to its end). Called from parse_cmdline above, before the
 * greeting; virtio_init (virtio_mmio.S) later probes the devices it
 * remembered. Clobbers rax, rcx, rdx, rdi, r8-r11.
 */
virtio_parse_word:
        mov     %rsi, %r11                      /* word start, for messages */
        lea     str_virtio_prefix(%rip), %rdi
        call    match_prefix
        test    %eax, %eax
        jz      9f                              /* not ours */
        call    parse_uint                      /* <size> */
        jc      bad_entry
        movzbl  (%rsi), %ecx
        or      $ASCII_CASE_BIT, %ecx
        mov     $10, %edx
        cmp     $ASCII_LOWER_K, %ecx
        je      1f
        mov     $20, %edx
        cmp     $ASCII_LOWER_M, %ecx
        je      1f
        mov     $30, %edx
        cmp     $ASCII_LOWER_G, %ecx
        jne     2f
1:      mov     %edx, %ecx
        shl     %cl, %rax
        inc     %rsi
2:      mov     %rax, %r9                       /* r9 = size */
        cmpb    $ASCII_AT, (%rsi)
        jne     bad_entry
        inc     %rsi
        call    parse_uint                      /* <base> */
        jc      bad_entry
        mov     %rax, %r8                       /* r8 = base */
        cmpb    $ASCII_COLON, (%rsi)
        jne     bad_entry
        inc     %rsi
        call    parse_uint                      /* <irq> */
        jc      bad_entry
        mov     %rax, %r10                      /* r10 = irq */
        cmpb    $ASCII_COLON, (%rsi)            /* :<id> may follow */
        je      3f
        call    at_word_end
        jne     bad_entry
3:
        /* Only devices whose registers lie in the MMIO gap: tables.S maps
         * 3-4 GiB uncached and supervisor-only, as device registers must be
         * (a cached mapping could combine or reorder our accesses), and
         * nothing above 4 GiB. */
        cmp     $VIRTIO_MMIO_REGS_SIZE, %r9
        jb      bad_entry
        mov     $MMIO_GAP_START, %eax
        cmp     %rax, %r8
        jb      outside_gap
        lea     VIRTIO_MMIO_REGS_SIZE(%r8), %rax
        mov     $MMIO_GAP_END, %rdx
        cmp     %rdx, %rax
        ja      outside_gap
        mov     virtio_device_count(%rip), %rax
        cmp     $VIRTIO_MAX_DEVICES, %rax
        jae     too_many
        imul    $DEV_ENTRY_SIZE, %rax, %rax
        lea     virtio_devices(%rip), %rdx
        add     %rax, %rdx
        mov     %r8, DEV_BASE(%rdx)
        mov     %r9, DEV_SIZE(%rdx)
        mov     %r10, DEV_IRQ(%rdx)
        incq    virtio_device_count(%rip)
9:      ret

bad_entry:
        lea     msg_vio_bad_entry(%rip), %rsi
        jmp     1f
outside_gap:
        lea     msg_vio_outside_gap(%rip), %rsi
        jmp     1f
too_many:
        lea     msg_vio_too_many(%rip), %rsi
1:      push    %rsi
        KPUTS   msg_vio_prefix
        pop     %rsi
        call    puts
        mov     %r11, %rsi
        call    print_word
        KPUTS   msg_newline
        mov     %r11, %rsi
        ret

/* parse_uint(rsi): a number, "0x" followed by hex digits or else decimal
 * digits. Returns rax = value, rsi just past it, CF = 1 if there was no
 * digit. Clobbers rcx, rdx, rdi. */
parse_uint:
        xor     %eax, %eax
        mov     $10, %edx                       /* base */
        cmpb    $ASCII_0, (%rsi)
        jne     1f
        movzbl  1(%rsi), %ecx
        or      $ASCII_CASE_BIT, %ecx
        cmp     $ASCII_LOWER_X, %ecx
        jne     1f
        add     $2, %rsi
        mov     $16, %edx
1:      mov     %rsi, %rdi                      /* first digit */
2:      movzbl  (%rsi), %ecx
        sub     $ASCII_0, %ecx
        cmp     $9, %ecx
        jbe     3f
        movzbl  (%rsi), %ecx                    /* a-f / A-F */
        or      $ASCII_CASE_BIT, %ecx
        sub     $ASCII_LOWER_A, %ecx
        cmp     $5, %ecx
        ja      4f
        add     $10, %ecx
3:      cmp     %edx, %ecx
        jae     4f                              /* not a digit in this base */
        imul    %rdx, %rax
        add     %rcx, %rax
        inc     %rsi
        jmp     2b
4:      cmp     %rdi, %rsi                      /* no digit at all? */
        je      5f
        clc
        ret
5:      stc
        ret

        .section .rodata, "a"
msg_unknown:    .asciz "tiny: ignoring unknown option "
msg_bad_number: .asciz "tiny: bad number in option "
str_tiny_prefix: .asciz "tiny."
str_chaos:      .asciz "chaos="
str_blk:        .asciz "blk"
str_rw:         .asciz "rw"
str_ro:         .asciz "ro"
msg_bad_blk:    .asciz "tiny: tiny.blk takes no value, =rw or =ro, not "
str_virtio_prefix:      .asciz "virtio_mmio.device="
msg_vio_bad_entry:      .asciz "ignoring malformed "
msg_vio_outside_gap:    .asciz "ignoring a device outside 0xc0000000-0xffffffff: "
msg_vio_too_many:       .asciz "ignoring one device too many: "

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
        .quad   opt_name_spin,  opt_spin
        .quad   0
opt_name_exit:  .asciz "exit="
opt_name_loop:  .asciz "loop="
opt_name_touch: .asciz "touch="
opt_name_flood: .asciz "flood="
opt_name_fault: .asciz "fault"
opt_name_quiet: .asciz "quiet"
opt_name_spin:  .asciz "spin="

        .section .data, "aw"
opt_fault:              .byte 0         /* tiny.fault */
opt_quiet:              .byte 0         /* tiny.quiet */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
