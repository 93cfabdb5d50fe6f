/*
 * blk.S - the tiny guest's virtio-blk driver: blk_init finds the first
 * virtio block device among the command line's virtio_mmio.device=
 * entries, initialises it (features, the one request queue, DRIVER_OK)
 * and reads its capacity; blk_request sends one request (header, data,
 * status) and polls the used ring until the device has answered. Also the
 * request queue's memory and the request header and status byte. What is
 * done with the disk (tiny.blk) is blk_check.S; the device side of the
 * same conversation is the VMM's src/devices/virtio/block/.
 *
 * A virtio-blk request is one descriptor chain [VIRTIO 5.2.6 "Device
 * Operation"]:
 *   descriptor 0  16-byte header, device-readable: le32 type, le32
 *                 reserved, le64 sector (in 512-byte units, whatever the
 *                 disk's blk_size)
 *   descriptor 1  the data, if the type has any: device-readable for a
 *                 write (OUT), device-writable for a read (IN) or GET_ID
 *   descriptor 2  one status byte, device-writable, last in the chain
 * One request at a time, and interrupts stay off: blk_request waits for
 * each answer, so every descriptor is free again when the next starts, and
 * a 4-entry queue is all we need.
 *
 * Cost model (tiny.h): each register access is a VM exit; a request costs
 * one (the notification) however large its data.
 */
#include "tiny.h"
#include "virtio.h"

        .globl  blk_init, blk_request, blk_say
        .globl  blk_base, blk_capacity, blk_features

/* Device type [VIRTIO 5 "Device Types"] and its one queue [VIRTIO 5.2.2
 * "Virtqueues"]: 0 requestq (more only with VIRTIO_BLK_F_MQ, not taken). */
        .equ VIRTIO_ID_BLOCK,           2
        .equ BLK_REQUESTQ,              0

/* Feature bits we accept when offered [VIRTIO 5.2.3 "Feature bits"]; all
 * in word 0. The device also offers DISCARD (13) and WRITE_ZEROES (14) on
 * writable disks: declined, we send neither request. */
        .equ VIRTIO_BLK_F_SEG_MAX,      1 << 2  /* config seg_max is valid */
        .equ VIRTIO_BLK_F_RO,           1 << 5  /* the disk is read-only */
        .equ VIRTIO_BLK_F_BLK_SIZE,     1 << 6  /* config blk_size is valid */
        .equ VIRTIO_BLK_F_FLUSH,        1 << 9  /* VIRTIO_BLK_T_FLUSH works */
        .equ BLK_ACCEPTED, VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_RO | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH

/* Configuration space, after the registers [VIRTIO 5.2.4 "Device
 * configuration layout"]: le64 capacity (512-byte sectors), le32 size_max,
 * le32 seg_max, a geometry struct, le32 blk_size, ... */
        .equ BLK_CFG_CAPACITY,          VIRTIO_MMIO_CONFIG + 0
        .equ BLK_CFG_BLK_SIZE,          VIRTIO_MMIO_CONFIG + 20

/* The request header [VIRTIO 5.2.6 "Device Operation"]. */
        .equ BLK_HDR_TYPE,              0
        .equ BLK_HDR_RESERVED,          4
        .equ BLK_HDR_SECTOR,            8
        .equ BLK_HDR_SIZE,              16

/* Our choices. */
        .equ BLK_VQ_MAX,        4       /* header + data + status, rounded up */
        .equ BLK_NO_STATUS,     0xff    /* in the status byte until the device writes one */

        .section .text, "ax"

/* ====================================================================== */
/* Finding and initialising the disk                                      */
/* ====================================================================== */
/*
 * blk_init: returns CF = 0 with blk_base, blk_features (what we accepted)
 * and blk_capacity set, after a line saying so; or CF = 1 after a line
 * saying why not (rsi points to it). Clobbers rax, rcx, rdx, rsi, rdi,
 * r8, r9.
 */
blk_init:
        /* [VIRTIO 4.2.1 "MMIO Device Discovery"]: the command line named
         * the windows (cmdline.S); the first whose MagicValue, Version
         * and DeviceID say "virtio-mmio 2, block device" is ours
         * [VIRTIO 4.2.3.1.1]. Other devices (the console) are left alone. */
        lea     virtio_devices(%rip), %r9
        mov     virtio_device_count(%rip), %rcx
1:      lea     msg_blk_none(%rip), %rsi
        test    %rcx, %rcx
        jz      blk_fail_say
        mov     DEV_BASE(%r9), %r8
        cmpl    $VIRTIO_MAGIC, VIRTIO_MMIO_MAGIC_VALUE(%r8)
        jne     2f
        cmpl    $VIRTIO_MMIO_VERSION_MODERN, VIRTIO_MMIO_VERSION(%r8)
        jne     2f
        cmpl    $VIRTIO_ID_BLOCK, VIRTIO_MMIO_DEVICE_ID(%r8)
        je      3f
2:      add     $DEV_ENTRY_SIZE, %r9
        dec     %rcx
        jmp     1b

        /* [VIRTIO 3.1.1 "Driver Requirements: Device Initialization"]
         * steps 1-8, exactly as virtio_mmio.S does them for the console.
         * 1. Reset: write 0 to Status, wait until it reads 0 [VIRTIO 2.4.2]. */
3:      xor     %eax, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
        mov     $1000, %ecx
4:      lea     msg_blk_reset(%rip), %rsi
        dec     %ecx
        jz      blk_fail_say
        cmpl    $0, VIRTIO_MMIO_STATUS(%r8)
        jne     4b
        /* 2. ACKNOWLEDGE, 3. DRIVER [VIRTIO 2.1 "Device Status Field"]. */
        movl    $VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_MMIO_STATUS(%r8)
        movl    $VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, VIRTIO_MMIO_STATUS(%r8)

        /* 4. Features [VIRTIO 2.2 "Feature Bits"], 32 at a time through
         * the selectors [VIRTIO 4.2.2]. Word 1 must offer VIRTIO_F_VERSION_1
         * (bit 32) [VIRTIO 6.1]; from word 0 we take RO, FLUSH, BLK_SIZE
         * and SEG_MAX where offered [VIRTIO 5.2.3], nothing else. */
        movl    $1, VIRTIO_MMIO_DEVICE_FEATURES_SEL(%r8)
        lea     msg_blk_no_version_1(%rip), %rsi
        testl   $VIRTIO_F_VERSION_1_WORD1, VIRTIO_MMIO_DEVICE_FEATURES(%r8)
        jz      blk_fail_mark
        movl    $0, VIRTIO_MMIO_DEVICE_FEATURES_SEL(%r8)
        mov     VIRTIO_MMIO_DEVICE_FEATURES(%r8), %eax
        and     $BLK_ACCEPTED, %eax
        mov     %eax, blk_features(%rip)
        movl    $0, VIRTIO_MMIO_DRIVER_FEATURES_SEL(%r8)
        mov     %eax, VIRTIO_MMIO_DRIVER_FEATURES(%r8)      /* word 0 */
        movl    $1, VIRTIO_MMIO_DRIVER_FEATURES_SEL(%r8)
        movl    $VIRTIO_F_VERSION_1_WORD1, VIRTIO_MMIO_DRIVER_FEATURES(%r8)
        /* 5. FEATURES_OK, 6. read it back: the device may refuse. */
        movl    $VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, VIRTIO_MMIO_STATUS(%r8)
        lea     msg_blk_features_refused(%rip), %rsi
        testl   $VIRTIO_STATUS_FEATURES_OK, VIRTIO_MMIO_STATUS(%r8)
        jz      blk_fail_mark

        /* 7. The requestq [VIRTIO 4.2.3.2 "Virtqueue Configuration"]:
         * select it, check it is not in use and exists, choose a size (a
         * power of two, at most QueueNumMax [VIRTIO 2.7]), give the three
         * parts' addresses, QueueReady. */
        movl    $BLK_REQUESTQ, VIRTIO_MMIO_QUEUE_SEL(%r8)
        lea     msg_blk_no_queue(%rip), %rsi
        cmpl    $0, VIRTIO_MMIO_QUEUE_READY(%r8)
        jne     blk_fail_mark
        mov     VIRTIO_MMIO_QUEUE_NUM_MAX(%r8), %eax
        mov     $BLK_VQ_MAX, %ecx
        cmp     %ecx, %eax                      /* too small for 3 descriptors? */
        jb      blk_fail_mark
        mov     %ecx, blk_vq_size(%rip)
        mov     %ecx, VIRTIO_MMIO_QUEUE_NUM(%r8)
        lea     blk_desc(%rip), %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DESC_LOW(%r8)
        shr     $32, %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DESC_HIGH(%r8)
        lea     blk_avail(%rip), %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DRIVER_LOW(%r8)
        shr     $32, %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DRIVER_HIGH(%r8)
        lea     blk_used(%rip), %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DEVICE_LOW(%r8)
        shr     $32, %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DEVICE_HIGH(%r8)
        movl    $1, VIRTIO_MMIO_QUEUE_READY(%r8)

        /* 8. DRIVER_OK: the device is live, unless it says it needs a
         * reset. */
        movl    $VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, VIRTIO_MMIO_STATUS(%r8)
        lea     msg_blk_needs_reset(%rip), %rsi
        testl   $VIRTIO_STATUS_DEVICE_NEEDS_RESET, VIRTIO_MMIO_STATUS(%r8)
        jnz     blk_fail_mark
        mov     %r8, blk_base(%rip)

        /* The capacity, a 64-bit field read as two 32-bit halves (the only
         * access size virtio-mmio allows for it [VIRTIO 4.2.2.2]). The two
         * reads are not atomic: read ConfigGeneration before and after,
         * and start over if it changed [VIRTIO 2.5.1 "Driver
         * Requirements: Device Configuration Space"]. */
5:      mov     VIRTIO_MMIO_CONFIG_GENERATION(%r8), %ecx
        mov     BLK_CFG_CAPACITY + 4(%r8), %eax
        shl     $32, %rax
        mov     BLK_CFG_CAPACITY(%r8), %edx     /* zero-extends */
        or      %rdx, %rax
        cmp     VIRTIO_MMIO_CONFIG_GENERATION(%r8), %ecx
        jne     5b
        mov     %rax, blk_capacity(%rip)

        /* "tiny: blk: 1 set-up: ok, 0xd0001000 (irq 6 unused, polled),
         *  features 0x264, capacity 128 sectors, blk_size 512, requestq
         *  size 4" */
        lea     msg_blk_ready(%rip), %rsi
        call    blk_say
        mov     %r8, %rax
        call    print_hex
        KPUTS   msg_blk_irq
        mov     DEV_IRQ(%r9), %rax
        call    print_dec
        KPUTS   msg_blk_features
        mov     blk_features(%rip), %eax
        call    print_hex
        KPUTS   msg_blk_capacity
        mov     blk_capacity(%rip), %rax
        call    print_dec
        KPUTS   msg_blk_sectors
        testl   $VIRTIO_BLK_F_BLK_SIZE, blk_features(%rip)
        jz      6f
        KPUTS   msg_blk_blk_size                /* the disk's preferred unit */
        mov     BLK_CFG_BLK_SIZE(%r8), %eax
        call    print_dec
6:      KPUTS   msg_blk_qsize
        mov     blk_vq_size(%rip), %eax
        call    print_dec
        KPUTS   msg_newline
        clc
        ret

/* Failures: rsi = why. After ACKNOWLEDGE the device is told we gave up
 * (FAILED) [VIRTIO 3.1.1]. */
blk_fail_mark:
        mov     VIRTIO_MMIO_STATUS(%r8), %eax
        or      $VIRTIO_STATUS_FAILED, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
blk_fail_say:
        push    %rsi
        lea     msg_blk_failed(%rip), %rsi
        call    blk_say
        mov     (%rsp), %rsi
        call    puts
        KPUTS   msg_newline
        pop     %rsi
        stc
        ret

/* blk_say(rsi = text): "tiny: blk: <text>" on the serial port. Clobbers
 * rax, rdx, rsi. */
blk_say:
        push    %rsi
        KPUTS   msg_blk_prefix
        pop     %rsi
        jmp     puts

/* ====================================================================== */
/* One request                                                            */
/* ====================================================================== */
/*
 * blk_request(eax = type, rdx = sector, rsi = data, ecx = data length (0:
 * no data descriptor), edi = the data's flags: 0 if the device reads it,
 * VIRTQ_DESC_F_WRITE if it writes it). Returns eax = the status byte
 * (BLK_NO_STATUS if the device wrote none) and edx = the used length (the
 * bytes the device says it wrote, status included), CF = 0; or, if the
 * device gave up (DEVICE_NEEDS_RESET), eax = BLK_NO_STATUS, edx = 0, CF =
 * 1. Clobbers rcx, rsi, rdi.
 */
blk_request:
        /* The header, and a status byte the device has not written. */
        mov     %eax, blk_hdr + BLK_HDR_TYPE(%rip)
        movl    $0, blk_hdr + BLK_HDR_RESERVED(%rip)
        mov     %rdx, blk_hdr + BLK_HDR_SECTOR(%rip)
        movb    $BLK_NO_STATUS, blk_status(%rip)

        /* The chain [VIRTIO 2.7.5 "The Virtqueue Descriptor Table"]:
         * 0 -> 1 -> 2, or 0 -> 2 without data (FLUSH). */
        lea     blk_hdr(%rip), %rax
        mov     %rax, blk_desc + VIRTQ_DESC_ADDR(%rip)
        movl    $BLK_HDR_SIZE, blk_desc + VIRTQ_DESC_LEN(%rip)
        movw    $VIRTQ_DESC_F_NEXT, blk_desc + VIRTQ_DESC_FLAGS(%rip)
        movw    $2, blk_desc + VIRTQ_DESC_NEXT(%rip)
        test    %ecx, %ecx
        jz      1f
        movw    $1, blk_desc + VIRTQ_DESC_NEXT(%rip)
        mov     %rsi, blk_desc + VIRTQ_DESC_SIZE + VIRTQ_DESC_ADDR(%rip)
        mov     %ecx, blk_desc + VIRTQ_DESC_SIZE + VIRTQ_DESC_LEN(%rip)
        or      $VIRTQ_DESC_F_NEXT, %edi
        mov     %di, blk_desc + VIRTQ_DESC_SIZE + VIRTQ_DESC_FLAGS(%rip)
        movw    $2, blk_desc + VIRTQ_DESC_SIZE + VIRTQ_DESC_NEXT(%rip)
1:      lea     blk_status(%rip), %rax
        mov     %rax, blk_desc + 2 * VIRTQ_DESC_SIZE + VIRTQ_DESC_ADDR(%rip)
        movl    $1, blk_desc + 2 * VIRTQ_DESC_SIZE + VIRTQ_DESC_LEN(%rip)
        movw    $VIRTQ_DESC_F_WRITE, blk_desc + 2 * VIRTQ_DESC_SIZE + VIRTQ_DESC_FLAGS(%rip)

        /* Head 0 into the available ring, then publish the new idx
         * [VIRTIO 2.7.13.2, 2.7.13.3]; the locked xchg orders it after
         * everything above and before the used.flags load [VIRTIO
         * 2.7.13.4] (console.S explains the ordering). */
        movzwl  blk_avail_idx(%rip), %edx
        mov     blk_vq_size(%rip), %eax
        dec     %eax
        and     %edx, %eax
        movw    $0, blk_avail_ring(, %rax, 2)
        inc     %edx
        mov     %edx, %eax
        xchg    %ax, blk_avail_idx(%rip)

        /* Notify: write the queue index to QueueNotify [VIRTIO 4.2.3.3],
         * unless the device said it needs none [VIRTIO 2.7.10]. */
        mov     blk_base(%rip), %rcx
        testw   $VIRTQ_USED_F_NO_NOTIFY, blk_used_flags(%rip)
        jnz     2f
        movl    $BLK_REQUESTQ, VIRTIO_MMIO_QUEUE_NOTIFY(%rcx)

        /* Poll used.idx until it reaches ours [VIRTIO 2.7.14 "Receiving
         * Used Buffers From The Device"]; now and then (a VM exit) check
         * that the device has not given up. No time limit: the VMM answers
         * or marks the device DEVICE_NEEDS_RESET. */
2:      mov     $VIRTIO_POLL_SPINS, %edi
3:      cmp     blk_used_idx(%rip), %dx
        je      4f
        dec     %edi
        jnz     3b
        testl   $VIRTIO_STATUS_DEVICE_NEEDS_RESET, VIRTIO_MMIO_STATUS(%rcx)
        jz      2b
        mov     $BLK_NO_STATUS, %eax
        xor     %edx, %edx
        stc
        ret

        /* The used element {le32 id, le32 len} of our request: slot
         * (idx - 1) mod size [VIRTIO 2.7.8 "The Virtqueue Used Ring"]. x86
         * does not reorder loads, so it and the status byte are read after
         * used.idx. */
4:      dec     %edx
        mov     blk_vq_size(%rip), %eax
        dec     %eax
        and     %eax, %edx
        mov     blk_used_ring + 4(, %rdx, 8), %edx
        movzbl  blk_status(%rip), %eax
        clc
        ret

        .section .rodata, "a"
msg_blk_prefix:         .asciz "tiny: blk: "
msg_blk_failed:         .asciz "1 set-up: FAILED: "
msg_blk_none:           .asciz "no virtio-blk device (DeviceID 2) among the virtio_mmio.device= entries"
msg_blk_reset:          .asciz "reset did not complete"
msg_blk_no_version_1:   .asciz "device does not offer VIRTIO_F_VERSION_1"
msg_blk_features_refused: .asciz "device refused FEATURES_OK"
msg_blk_no_queue:       .asciz "requestq (queue 0) in use or smaller than 4"
msg_blk_needs_reset:    .asciz "device needs reset after DRIVER_OK"
msg_blk_ready:          .asciz "1 set-up: ok, "
msg_blk_irq:            .asciz " (irq "
msg_blk_features:       .asciz " unused, polled), features "
msg_blk_capacity:       .asciz ", capacity "
msg_blk_sectors:        .asciz " sectors"
msg_blk_blk_size:       .asciz ", blk_size "
msg_blk_qsize:          .asciz ", requestq size "

/* ---------------------------------------------------------------------- */
/* Data: the requestq, one request's header and status, the disk in use   */
/* ---------------------------------------------------------------------- */
/* The split virtqueue [VIRTIO 2.7], each part aligned as its table
 * "Virtqueue Part Alignment" says, zeroed by the assembler (console.S has
 * the same layout, commented field by field). */
        .section .data, "aw"
        .balign 16
blk_desc:       .fill   BLK_VQ_MAX * VIRTQ_DESC_SIZE, 1, 0
        .balign 2
blk_avail:      .word   VIRTQ_AVAIL_F_NO_INTERRUPT      /* we poll [VIRTIO 2.7.7] */
blk_avail_idx:  .word   0
blk_avail_ring: .fill   BLK_VQ_MAX, 2, 0
                .word   0                               /* used_event */
        .balign 4
blk_used:
blk_used_flags: .word   0
blk_used_idx:   .word   0
blk_used_ring:  .fill   BLK_VQ_MAX * 8, 1, 0
                .word   0                               /* avail_event */

        .balign 8
blk_hdr:        .fill   BLK_HDR_SIZE, 1, 0      /* struct virtio_blk_req's header */
blk_base:       .quad   0       /* registers of the disk in use */
blk_capacity:   .quad   0       /* in 512-byte sectors */
blk_features:   .long   0       /* word 0 as accepted */
blk_vq_size:    .long   0
blk_status:     .byte   0       /* the request's last byte: its status */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
