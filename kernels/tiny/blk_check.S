/*
 * blk_check.S - tiny.blk: what the tiny guest does with its first virtio
 * disk instead of steps 4 and 5 of boot.S. blk_run brings the disk up
 * (blk_init, blk.S), makes six checks, prints one `tiny: blk: N ...` line
 * for each on the serial port, and ends the VM through debug-exit: status
 * 0 if every request got the expected status and data, else
 * EXIT_BLK_STEP + n for the first step n that did not (tiny.h):
 *   1 (111)  set-up: a block device found, features, requestq, capacity;
 *            with tiny.blk=ro / tiny.blk=rw, VIRTIO_BLK_F_RO as expected
 *   2 (112)  read sector 0; prints its first 8 bytes and the capacity
 *   3 (113)  writable disk: write BLK_PATTERN to sector 1, FLUSH, read it
 *            back, compare (skipped on a read-only disk)
 *   4 (114)  read the sector just past the end: must be IOERR
 *   5 (115)  GET_ID: prints the disk's ID
 *   6 (116)  read-only disk: a write to sector 1 must be IOERR and leave
 *            the sector as it was (skipped on a writable disk)
 * A failure in step 1 ends the run at once; the others are all tried.
 * Each request also has its used length checked where it is exact: a
 * successful read of one sector is 513 bytes written (data and status).
 */
#include "tiny.h"
#include "virtio.h"

        .globl  blk_run, opt_blk

/* Request types and statuses [VIRTIO 5.2.6 "Device Operation"]. */
        .equ VIRTIO_BLK_T_IN,           0       /* read sectors */
        .equ VIRTIO_BLK_T_OUT,          1       /* write sectors */
        .equ VIRTIO_BLK_T_FLUSH,        4       /* make writes durable */
        .equ VIRTIO_BLK_T_GET_ID,       8       /* the device's ID string */
        .equ VIRTIO_BLK_S_OK,           0
        .equ VIRTIO_BLK_S_IOERR,        1
        .equ VIRTIO_BLK_S_UNSUPP,       2
        .equ VIRTIO_BLK_ID_BYTES,       20      /* no NUL when all 20 are used */
        .equ SECTOR,                    512     /* the unit of `sector`, always */
/* Feature bits, as blk.S accepted them [VIRTIO 5.2.3 "Feature bits"]. */
        .equ VIRTIO_BLK_F_RO,           1 << 5
        .equ VIRTIO_BLK_F_FLUSH,        1 << 9
        .equ PATTERN_SECTOR,            1

/* Remember step \n as failed unless an earlier one already was (r15d =
 * the exit status so far). */
        .macro FAILED n
        mov     $EXIT_BLK_STEP + \n, %eax
        test    %r15d, %r15d
        cmovz   %eax, %r15d
        .endm

/* One-sector request: \type at sector \sector (a register or $value), data
 * at \buf, \flags 0 (device reads) or VIRTQ_DESC_F_WRITE (device writes). */
        .macro SECTOR_REQUEST type, sector, buf, flags
        mov     \sector, %rdx
        mov     $\type, %eax
        lea     \buf(%rip), %rsi
        mov     $SECTOR, %ecx
        mov     $\flags, %edi
        call    blk_request
        .endm

        .section .text, "ax"

/* blk_run: from _start (boot.S) after the console is up. Does not return.
 * r12 = 1 if the disk is read-only, r15d = exit status so far. */
blk_run:
        cld
        xor     %r15d, %r15d
        call    blk_init                        /* prints step 1's line */
        jnc     1f
        mov     $EXIT_BLK_STEP + 1, %r15d
        jmp     blk_done
1:      xor     %r12d, %r12d
        testl   $VIRTIO_BLK_F_RO, blk_features(%rip)
        setnz   %r12b
        /* tiny.blk=ro / =rw: the disk must be what the test expects. */
        lea     msg_expected_ro(%rip), %rsi
        cmpb    $BLK_RO, opt_blk(%rip)
        jne     2f
        test    %r12d, %r12d
        jz      3f
2:      lea     msg_expected_rw(%rip), %rsi
        cmpb    $BLK_RW, opt_blk(%rip)
        jne     step2
        test    %r12d, %r12d
        jz      step2
3:      call    blk_say
        FAILED  1

/* Step 2: read sector 0 [VIRTIO 5.2.6: VIRTIO_BLK_T_IN, data
 * device-writable]. */
step2:
        SECTOR_REQUEST VIRTIO_BLK_T_IN, $0, sector_buf, VIRTQ_DESC_F_WRITE
        lea     msg_step2(%rip), %rsi
        call    expect_read
        jc      2f
        call    step_ok
        KPUTS   msg_first_bytes                 /* ", first bytes 45 4c ..." */
        xor     %ebx, %ebx
1:      movzbl  sector_buf(%rbx), %eax
        call    print_byte
        inc     %ebx
        cmp     $8, %ebx
        jb      1b
        KPUTS   msg_capacity
        mov     blk_capacity(%rip), %rax
        call    print_dec
        KPUTS   msg_sectors
        jmp     step3
2:      FAILED  2

/* Step 3: write, flush, read back (writable disks). */
step3:
        lea     msg_step3(%rip), %rsi
        test    %r12d, %r12d
        jz      1f
        call    blk_say
        KPUTS   msg_skipped_ro
        jmp     step4
        /* VIRTIO_BLK_T_OUT: the data is device-readable [VIRTIO 5.2.6]. */
1:      SECTOR_REQUEST VIRTIO_BLK_T_OUT, $PATTERN_SECTOR, blk_pattern, 0
        lea     msg_step3_write(%rip), %rsi
        call    expect_ok
        jc      9f
        /* VIRTIO_BLK_T_FLUSH: no data, sector 0 [VIRTIO 5.2.6.1 "Driver
         * Requirements"]; only if VIRTIO_BLK_F_FLUSH was negotiated. Once
         * it completes, the write above is on stable storage [VIRTIO
         * 5.2.6.3]. */
        testl   $VIRTIO_BLK_F_FLUSH, blk_features(%rip)
        jz      2f
        mov     $VIRTIO_BLK_T_FLUSH, %eax
        xor     %edx, %edx
        xor     %ecx, %ecx
        call    blk_request
        lea     msg_step3_flush(%rip), %rsi
        call    expect_ok
        jc      9f
2:      call    clear_check_buf
        SECTOR_REQUEST VIRTIO_BLK_T_IN, $PATTERN_SECTOR, check_buf, VIRTQ_DESC_F_WRITE
        lea     msg_step3_read(%rip), %rsi
        call    expect_read
        jc      9f
        lea     blk_pattern(%rip), %rsi
        call    same_as_check_buf
        lea     msg_step3_differs(%rip), %rsi
        jne     8f
        lea     msg_step3(%rip), %rsi
        call    step_ok
        KPUTS   msg_step3_ok
        jmp     step4
8:      call    blk_say
9:      FAILED  3

/* Step 4: one sector past the end. [VIRTIO 5.2.6.1] says a driver MUST
 * NOT do this; we do it on purpose, to see the device refuse it. */
step4:
        mov     blk_capacity(%rip), %rbx
        SECTOR_REQUEST VIRTIO_BLK_T_IN, %rbx, check_buf, VIRTQ_DESC_F_WRITE
        lea     msg_step4(%rip), %rsi
        cmp     $VIRTIO_BLK_S_IOERR, %eax
        je      1f
        call    step_failed
        FAILED  4
        jmp     step5
1:      call    step_ok
        KPUTS   msg_step4_ok
        mov     %rbx, %rax
        call    print_dec
        KPUTS   msg_close_paren

/* Step 5: GET_ID, up to 20 bytes into a device-writable buffer [VIRTIO
 * 5.2.6]; printed up to its first NUL, unprintable bytes as '?'. */
step5:
        lea     id_buf(%rip), %rdi
        mov     $VIRTIO_BLK_ID_BYTES, %ecx
        xor     %eax, %eax
        rep stosb
        mov     $VIRTIO_BLK_T_GET_ID, %eax
        xor     %edx, %edx
        lea     id_buf(%rip), %rsi
        mov     $VIRTIO_BLK_ID_BYTES, %ecx
        mov     $VIRTQ_DESC_F_WRITE, %edi
        call    blk_request
        lea     msg_step5(%rip), %rsi
        call    expect_ok
        jc      3f
        lea     id_buf(%rip), %rsi
        mov     $VIRTIO_BLK_ID_BYTES, %ecx
1:      movzbl  (%rsi), %eax
        test    %al, %al
        jz      2f
        sub     $ASCII_SPACE, %eax
        cmp     $0x7e - ASCII_SPACE, %eax       /* printable ASCII? */
        jbe     4f
        movb    $0x3f, (%rsi)                   /* '?' */
4:      inc     %rsi
        dec     %ecx
        jnz     1b
2:      lea     msg_step5(%rip), %rsi
        call    step_ok
        KPUTS   msg_step5_ok
        KPUTS   id_buf                          /* id_buf[20] stays NUL */
        KPUTS   msg_step5_end
        jmp     step6
3:      FAILED  5

/* Step 6: a read-only disk refuses a write: "A device MUST set the status
 * byte to VIRTIO_BLK_S_IOERR for a write request if the VIRTIO_BLK_F_RO
 * feature if offered, and MUST NOT write any data" [VIRTIO 5.2.6.2
 * "Device Requirements"]. Read sector 1, try to overwrite it, read it
 * again, compare. */
step6:
        lea     msg_step6(%rip), %rsi
        test    %r12d, %r12d
        jnz     1f
        call    blk_say
        KPUTS   msg_skipped_rw
        jmp     blk_done
1:      SECTOR_REQUEST VIRTIO_BLK_T_IN, $PATTERN_SECTOR, sector_buf, VIRTQ_DESC_F_WRITE
        lea     msg_step6_read(%rip), %rsi
        call    expect_read
        jc      9f
        SECTOR_REQUEST VIRTIO_BLK_T_OUT, $PATTERN_SECTOR, blk_pattern, 0
        lea     msg_step6(%rip), %rsi
        cmp     $VIRTIO_BLK_S_IOERR, %eax
        je      2f
        call    step_failed
        jmp     9f
2:      call    clear_check_buf
        SECTOR_REQUEST VIRTIO_BLK_T_IN, $PATTERN_SECTOR, check_buf, VIRTQ_DESC_F_WRITE
        lea     msg_step6_read(%rip), %rsi
        call    expect_read
        jc      9f
        lea     sector_buf(%rip), %rsi
        call    same_as_check_buf
        lea     msg_step6_changed(%rip), %rsi
        jne     8f
        lea     msg_step6(%rip), %rsi
        call    step_ok
        KPUTS   msg_step6_ok
        jmp     blk_done
8:      call    blk_say
9:      FAILED  6

/* The verdict, then debug-exit with it (kernel_exit, syscall.S). */
blk_done:
        test    %r15d, %r15d
        jnz     1f
        KPUTS   msg_all_passed
        jmp     2f
1:      KPUTS   msg_verdict_failed
        mov     %r15d, %eax
        call    print_dec
        KPUTS   msg_newline
2:      mov     %r15d, %edi
        jmp     kernel_exit

/* ---------------------------------------------------------------------- */
/* Helpers. rsi = the step's text, eax/edx = blk_request's status and     */
/* used length. Each clobbers rax, rcx, rdx, rsi, rdi.                    */
/* ---------------------------------------------------------------------- */
/* expect_read: status OK and the sector and status written (513 bytes);
 * else the failure line and CF = 1. */
expect_read:
        cmp     $SECTOR + 1, %edx
        jne     step_failed
/* expect_ok: status OK; else the failure line and CF = 1. */
expect_ok:
        cmp     $VIRTIO_BLK_S_OK, %eax
        jne     step_failed
        clc
        ret
/* "tiny: blk: <text>: FAILED, status S, used length L" (status 255: the
 * device wrote none, or it needs a reset); CF = 1. */
step_failed:
        push    %rdx
        push    %rax
        call    blk_say
        KPUTS   msg_failed_status
        pop     %rax
        call    print_dec
        KPUTS   msg_used_length
        pop     %rax
        call    print_dec
        KPUTS   msg_newline
        stc
        ret
/* "tiny: blk: <text>: ok" (the caller ends the line). */
step_ok:
        call    blk_say
        KPUTS   msg_ok
        ret
/* check_buf = zeroes, so that a read that writes nothing shows. */
clear_check_buf:
        lea     check_buf(%rip), %rdi
        mov     $SECTOR, %ecx
        xor     %eax, %eax
        rep stosb
        ret
/* same_as_check_buf(rsi = a sector): ZF = 1 if check_buf holds the same. */
same_as_check_buf:
        lea     check_buf(%rip), %rdi
        mov     $SECTOR, %ecx
        repe cmpsb
        ret
/* print_byte(eax): a space and two hex digits. */
print_byte:
        lea     hex_pair(%rip), %rsi
        mov     %eax, %edx
        shr     $4, %edx
        movzbl  hex_chars(%rdx), %edx
        mov     %dl, 1(%rsi)
        and     $0xf, %eax
        movzbl  hex_chars(%rax), %eax
        mov     %al, 2(%rsi)
        jmp     puts

        .section .rodata, "a"
msg_expected_ro:  .asciz "1 set-up: FAILED: tiny.blk=ro, but the device does not offer VIRTIO_BLK_F_RO\n"
msg_expected_rw:  .asciz "1 set-up: FAILED: tiny.blk=rw, but the device offers VIRTIO_BLK_F_RO\n"
msg_step2:        .asciz "2 read sector 0"
msg_first_bytes:  .asciz ", first bytes"
msg_capacity:     .asciz ", capacity "
msg_sectors:      .asciz " sectors\n"
msg_step3:        .asciz "3 write sector 1, flush, read back"
msg_step3_write:  .asciz "3 write sector 1"
msg_step3_flush:  .asciz "3 flush"
msg_step3_read:   .asciz "3 read back sector 1"
msg_step3_differs: .asciz "3 read back sector 1: FAILED: the data differs from what was written\n"
msg_step3_ok:     .asciz ", 512 bytes as written\n"
msg_step4:        .asciz "4 read past the end"
msg_step4_ok:     .asciz ", IOERR as expected (sector "
msg_close_paren:  .asciz ")\n"
msg_step5:        .asciz "5 get id"
msg_step5_ok:     .asciz ", id \""
msg_step5_end:    .asciz "\"\n"
msg_step6:        .asciz "6 write to the read-only disk"
msg_step6_read:   .asciz "6 read sector 1"
msg_step6_changed: .asciz "6 write to the read-only disk: FAILED: sector 1 changed\n"
msg_step6_ok:     .asciz ", IOERR and sector 1 unchanged\n"
msg_skipped_ro:   .asciz ": skipped (read-only disk)\n"
msg_skipped_rw:   .asciz ": skipped (writable disk)\n"
msg_ok:           .asciz ": ok"
msg_failed_status: .asciz ": FAILED, status "
msg_used_length:  .asciz ", used length "
msg_all_passed:   .asciz "tiny: blk: all steps passed\n"
msg_verdict_failed: .asciz "tiny: blk: FAILED, exit status "
hex_chars:        .ascii "0123456789abcdef"

/* What step 3 writes to sector 1 (and step 6 tries to): this 64-byte line
 * 8 times, so that the host can find it in the image (tests/blk_tiny.rs). */
        .balign 512
blk_pattern:
        .rept   SECTOR / 64
        .ascii  "sector 1 as the tiny guest wrote it (tiny.blk, blk_check.S), 8x\n"
        .endr

        .section .data, "aw"
opt_blk:        .byte   BLK_OFF         /* tiny.blk[=ro|=rw] (cmdline.S) */
hex_pair:       .asciz  " 00"
id_buf:         .fill   VIRTIO_BLK_ID_BYTES + 1, 1, 0   /* + a NUL for puts */

        .section .bss, "aw", @nobits
        .balign 512
sector_buf:     .skip   SECTOR          /* sector 0 (step 2), sector 1 (step 6) */
check_buf:      .skip   SECTOR          /* what a read back found */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
