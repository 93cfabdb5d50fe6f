/*
 * console.S - the virtio console's output path, step 4 of the virtio
 * driver (the list is in virtio_mmio.S): virtio_write turns each write
 * system call into one descriptor chain on the console's transmit queue,
 * one notification, and a poll of the used ring. Also the memory of that
 * queue, which virtio_mmio.S hands to the device at set-up, and
 * virtio_base, the console in use (console_write in serial.S reads it to
 * choose between virtio and the serial port).
 *
 * Nothing is copied: the device reads the bytes straight out of the user
 * buffer (guest physical = guest virtual here), and each chain (up to
 * VQ_MAX_SIZE descriptors of VIRTIO_DESC_MAX bytes) costs one VM exit, the
 * notification, however many bytes it carries.
 */
#include "tiny.h"
#include "virtio.h"

        .globl  virtio_write, virtio_base
        .globl  vq_desc, vq_avail, vq_used, vq_size

        .section .text, "ax"

/* ====================================================================== */
/* 4. Output: one write, one descriptor chain, one notification.          */
/* ====================================================================== */
/*
 * virtio_write(rsi = buffer, rcx = length > 0): console_write (serial.S)
 * jumps here when virtio_base is set. The buffer is the user payload's own
 * memory, already checked to lie in user pages; identity mapping makes its
 * virtual address the guest physical address the device needs.
 *
 * The driver hands buffers over and waits for each batch to come back
 * before it returns, so when it starts, every descriptor is free again:
 * the chain always starts at descriptor 0 and the bookkeeping of free
 * descriptors that a real driver needs is not needed here.
 *
 * Clobbers rax, rcx, rdx, rsi, rdi (all saved or clobbered by the system
 * call convention). If the device fails (DEVICE_NEEDS_RESET), says so on
 * the serial port, stops using it and sends the whole buffer to the serial
 * port instead (bytes the device already took may then appear twice).
 */
virtio_write:
        push    %rsi                            /* for the fallback */
        push    %rcx

vw_round:
        /* [VIRTIO 2.7.13.1 "Placing Buffers Into The Descriptor Table"],
         * [VIRTIO 2.7.5 "The Virtqueue Descriptor Table"]: one descriptor
         * per VIRTIO_DESC_MAX bytes, linked by .next, up to vq_size of
         * them. flags has no VIRTQ_DESC_F_WRITE: the device only reads
         * these buffers, as a transmitq requires [VIRTIO 5.3.6.1]. */
        lea     vq_desc(%rip), %rdi
        xor     %edx, %edx                      /* descriptors so far */
1:      mov     $VIRTIO_DESC_MAX, %eax
        cmp     %rax, %rcx
        jae     2f
        mov     %ecx, %eax                      /* the rest fits */
2:      mov     %rsi, VIRTQ_DESC_ADDR(%rdi)
        mov     %eax, VIRTQ_DESC_LEN(%rdi)
        inc     %edx
        movw    $VIRTQ_DESC_F_NEXT, VIRTQ_DESC_FLAGS(%rdi)
        mov     %dx, VIRTQ_DESC_NEXT(%rdi)
        add     %rax, %rsi
        add     $VIRTQ_DESC_SIZE, %rdi
        sub     %rax, %rcx
        jz      3f
        cmp     vq_size(%rip), %edx
        jb      1b
3:      movw    $0, VIRTQ_DESC_FLAGS - VIRTQ_DESC_SIZE(%rdi) /* end of chain */

        /* [VIRTIO 2.7.13.2 "Updating The Available Ring"]: the chain head
         * (descriptor 0) goes into slot avail.idx mod size. */
        movzwl  vq_avail_idx(%rip), %edx
        mov     vq_size(%rip), %eax
        dec     %eax
        and     %edx, %eax
        movw    $0, vq_avail_ring(, %rax, 2)

        /* [VIRTIO 2.7.13.3 "Updating idx"]: only now may the device see the
         * new idx, after the descriptors and the ring slot. x86 never
         * reorders stores with older stores, so plain stores would do; the
         * `xchg` (a locked operation: a full barrier [SDM Vol. 3A 9.2.3.9
         * "Loads and Stores Are Not Reordered with Locked Instructions"])
         * also orders this store before the load of used.flags below,
         * which [VIRTIO 2.7.13.4] asks for. idx is free-running: it wraps
         * at 65536, never at the queue size. */
        inc     %edx                            /* edx = idx after this chain */
        mov     %edx, %eax
        xchg    %ax, vq_avail_idx(%rip)

        /* [VIRTIO 2.7.13.4 "Notifying The Device"], [VIRTIO 2.7.10
         * "Available Buffer Notification Suppression"]: notify unless the
         * device set VIRTQ_USED_F_NO_NOTIFY. The notification is a write of
         * the queue index to QueueNotify [VIRTIO 4.2.3.3]: the one VM exit
         * of this write, however many bytes it carries. */
        testw   $VIRTQ_USED_F_NO_NOTIFY, vq_used_flags(%rip)
        jnz     4f
        mov     virtio_base(%rip), %rax
        movl    $CONSOLE_TRANSMITQ, VIRTIO_MMIO_QUEUE_NOTIFY(%rax)

        /* [VIRTIO 2.7.14 "Receiving Used Buffers From The Device"]: the
         * device puts the chain head into the used ring and then advances
         * used.idx. We asked for no interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT,
         * [VIRTIO 2.7.7]), so poll used.idx until it reaches our avail.idx:
         * then the device is done with every byte, and the user may reuse
         * the buffer. A VMM that completes the request while handling the
         * notification exit makes this loop end at once. Once in a while,
         * check that the device has not given up. */
4:      mov     $VIRTIO_POLL_SPINS, %edi
5:      cmp     vq_used_idx(%rip), %dx
        je      6f
        dec     %edi
        jnz     5b
        mov     virtio_base(%rip), %rax
        mov     VIRTIO_MMIO_STATUS(%rax), %eax
        test    $VIRTIO_STATUS_DEVICE_NEEDS_RESET, %eax
        jz      4b
        jmp     vw_failed

6:      test    %rcx, %rcx                      /* more than one chain's worth? */
        jnz     vw_round
        movzbl  -1(%rsi), %eax                  /* for newline_if_needed */
        mov     %al, last_byte(%rip)
        add     $16, %rsp                       /* drop the fallback copy */
        ret

vw_failed:
        push    %r8                             /* a user register: keep it */
        mov     virtio_base(%rip), %r8
        lea     msg_vio_failed(%rip), %rsi
        call    virtio_say
        pop     %r8
        movq    $0, virtio_base(%rip)           /* serial from now on */
        pop     %rcx
        pop     %rsi
        jmp     serial_write

        .section .rodata, "a"
msg_vio_failed:         .asciz "device needs reset; output goes to the serial port from here\n"

/* ---------------------------------------------------------------------- */
/* Data: the transmit virtqueue and the console in use                    */
/* ---------------------------------------------------------------------- */
/*
 * The transmitq as a split virtqueue [VIRTIO 2.7], sized for VQ_MAX_SIZE
 * (a device offering less gets a smaller queue in the same memory). Three
 * parts, each with its alignment from [VIRTIO 2.7] table "Virtqueue Part
 * Alignment", and each written by one side only:
 *   descriptor table (16)  driver: where each buffer is, how long, next
 *   available ring   (2)   driver: which chains the device may take
 *   used ring        (4)   device: which chains it is done with
 * In .data, not .bss, so that they start zeroed without code to zero them.
 */
        .section .data, "aw"
        .balign 16
vq_desc:                                        /* struct virtq_desc[8] */
        .fill   VQ_MAX_SIZE * VIRTQ_DESC_SIZE, 1, 0

        .balign 2
vq_avail:                                       /* struct virtq_avail */
        .word   VIRTQ_AVAIL_F_NO_INTERRUPT      /* flags: we poll [VIRTIO 2.7.7] */
vq_avail_idx:
        .word   0                               /* idx: next slot to fill */
vq_avail_ring:
        .fill   VQ_MAX_SIZE, 2, 0               /* ring: chain heads */
        .word   0                               /* used_event (VIRTIO_F_EVENT_IDX only) */

        .balign 4
vq_used:                                        /* struct virtq_used */
vq_used_flags:
        .word   0                               /* flags: VIRTQ_USED_F_NO_NOTIFY */
vq_used_idx:
        .word   0                               /* idx: next slot the device fills */
        .fill   VQ_MAX_SIZE * 8, 1, 0           /* ring: {le32 id, le32 len} */
        .word   0                               /* avail_event (EVENT_IDX only) */

        .balign 8
virtio_base:            .quad 0         /* registers of the console in use; 0: serial */
vq_size:                .long 0         /* queue size in use */

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
