/*
 * serial.S - the 8250 serial port, and everything the kernel prints: puts,
 * print_word, print_dec and print_hex for its own messages, serial_write
 * for bytes, and console_write, the one place that picks the device for
 * the payload's output (the virtio console of console.S once there is one,
 * else the serial port). _start (boot.S) finds out whether a UART exists
 * at all and sets serial_absent.
 */
#include "tiny.h"

        .globl  console_write, serial_write, puts, print_word
        .globl  newline_if_needed, print_hex, print_dec
        .globl  msg_newline, serial_absent, last_byte

        .section .text, "ax"

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
 * the write system call (sys_write, syscall.S). The one place that chooses
 * between virtio and serial: the virtio console once virtio_init found one
 * (virtio_base set; virtio_write is in console.S), else the serial port,
 * by falling through into serial_write. Clobbers rax, rcx, rdx, rsi,
 * rdi. */
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

        .section .rodata, "a"
msg_newline:    .asciz "\n"
msg_0x:         .asciz "0x"
hex_digits:     .ascii "0123456789abcdef"

        .section .data, "aw"
serial_absent:          .byte 0         /* no 8250: skip serial output */
last_byte:              .byte ASCII_NL  /* last byte sent to the console */
numbuf:                 .fill 24, 1, 0  /* print_uint builds digits here */
numbuf_end:

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
