/*
 * chaos_virtio.S - the virtio half of the chaos monkey (chaos.S has the
 * loop, the generator and the port and MMIO operations): what `tiny.chaos`
 * does to each virtio-mmio window the command line names. Random reads and
 * writes of every register and config byte at every size; status values
 * out of order; notifications; and, 1 operation in 32, a driver's whole
 * set-up [VIRTIO 3.1.1] with random queue sizes and ring addresses, so
 * that the device goes live on rings we wrote and walks hostile chains:
 * descriptors with random lengths, NEXT, WRITE and INDIRECT flags, next
 * indices and buffer addresses, in four scratch pages that each notify
 * scribbles on again. The device may end up in DEVICE_NEEDS_RESET: fine,
 * a later set-up starts it over.
 *
 * The device writes guest RAM (its used rings; buffers, when stdin has
 * input), so every value written to a ring-address register is half of a
 * guest_addr: a scratch page, RAM below 3 GiB outside [1 MiB - 8 KiB,
 * kernel_end) (this kernel: code, data, stack, page tables), or an address
 * whose low half lies in the MMIO gap (never RAM). A used ring of 256
 * entries is 2 KiB; input stops 4 KiB past a buffer's start. Descriptors
 * the device reads from RAM we did not write (an indirect table anywhere)
 * may point anywhere: run chaos with stdin empty.
 *
 * Register conventions are chaos.S's (r13 = end of RAM, r14 = generator,
 * r15 = accesses left, rax = the operation's random bits).
 */
#include "tiny.h"
#include "virtio.h"

        .globl  chaos_virtio_init, window
        .globl  op_virtio_read, op_virtio_write, op_virtio_status
        .globl  op_virtio_notify, op_virtio_script

        .equ SAFE_LO, MIB - 0x2000      /* device-written RAM ends below this */
                                        /* or starts at kernel_end (tiny.ld) */
        .equ RING_REGS, VIRTIO_MMIO_QUEUE_DESC_LOW /* 0x80-0xa7: ring addresses */
        .equ RING_REGS_SIZE, 0x28
        /* Set-up script steps (see `script`): what to write. */
        .equ K_VALUE, 0                 /* the step's value */
        .equ K_QUEUE, 1                 /* queue 0 (1/2), 1 or 2 (1/4 each) */
        .equ K_SIZE, 2                  /* 1 << 0..7 descriptors */
        .equ K_ADDR, 3                  /* a fresh guest_addr, low half */
        .equ K_HIGH, 4                  /* its high half */
        .equ K_END, 5

        .section .text, "ax"
/* The windows: slot i is the i-th device cmdline.S found, if its page lies
 * in [0xc000_2000, IOAPIC_PAGE) (not on the stops, not on the APICs); else
 * 0xd000_0000, the VMM's first window, device or not. */
chaos_virtio_init:
        lea     virtio_devices(%rip), %rsi
        xor     %edi, %edi
1:      cmp     virtio_device_count(%rip), %rdi
        jae     3f
        mov     DEV_BASE(%rsi), %rax
        cmp     $DEBUG_EXIT_MMIO + PAGE_4K, %eax
        jb      2f
        cmp     $IOAPIC_PAGE - PAGE_4K, %eax
        ja      2f
        mov     %rax, chaos_windows(, %rdi, 8)
2:      add     $DEV_ENTRY_SIZE, %rsi
        inc     %edi
        jmp     1b
3:      ret

/* virtio: any register or config byte, any size; reads and writes. */
op_virtio_read:
        call    virtio_reg
        call    mmio_read
        jmp     chaos_next
op_virtio_write:
        call    virtio_reg
        shr     $32, %rax
        call    ring_guard
        call    mmio_write
        jmp     chaos_next
/* Status: a set-up's values in any order, and more [VIRTIO 2.1]. */
op_virtio_status:
        call    window
        mov     %eax, %ecx
        shr     $12, %ecx
        and     $7, %ecx
        movzbl  status_values(%rcx), %ecx
        mov     %ecx, VIRTIO_MMIO_STATUS(%rdx)
        jmp     chaos_next
/* QueueNotify 0, 1 or 2 (1 in 4 anything), after scribbling on the
 * scratch rings the device may be walking. */
op_virtio_notify:
        call    window
        push    %rdx
        push    %rax
        call    scramble
        pop     %rax
        pop     %rdx
        mov     %rax, %rcx
        shr     $32, %rcx
        test    $3 << 12, %eax
        jz      1f
        call    queue_number
1:      mov     %ecx, VIRTIO_MMIO_QUEUE_NOTIFY(%rdx)
        jmp     chaos_next

/* A driver's whole set-up (virtio_probe in virtio_mmio.S, with care), one
 * access a step, random queue sizes and rings: the way to get the device
 * live on rings we write. 1 step in 32 is a random register write instead
 * (out of order); 1 in 32 the script stops there. */
op_virtio_script:
        call    window
        mov     %rdx, %r12
        lea     chaos_scratch(%rip), %rdx       /* fresh rings: avail.idx 0 */
        movw    $0, 2(%rdx)
        movw    $0, PAGE_4K + 2(%rdx)
        movw    $0, 2 * PAGE_4K + 2(%rdx)
        movw    $0, 3 * PAGE_4K + 2(%rdx)
        lea     script(%rip), %rbx
1:      movzbl  1(%rbx), %ecx                   /* the step's kind */
        cmp     $K_END, %ecx
        je      chaos_loop
        test    %r15, %r15
        jz      chaos_loop
        call    chaos_rand
        test    $31, %eax
        jz      chaos_loop
        movzbl  (%rbx), %edi                    /* its register */
        movzwl  2(%rbx), %esi                   /* its value */
        test    $31 << 5, %eax
        jnz     2f
        mov     %eax, %edi                      /* out of order: any register */
        shr     $12, %edi
        and     $0xfc, %edi
        shr     $32, %rax
        mov     $2, %ecx                        /* 4 bytes */
        call    ring_guard
        mov     %eax, %esi
        jmp     9f
2:      shr     $32, %rax                       /* fresh bits for the kinds */
        cmp     $K_QUEUE, %ecx
        jne     3f
        mov     %eax, %ecx
        call    queue_number
        mov     %ecx, %esi
        jmp     9f
3:      cmp     $K_SIZE, %ecx
        jne     4f
        and     $7, %eax
        xchg    %eax, %ecx
        mov     $1, %esi
        shl     %cl, %esi
        jmp     9f
4:      cmp     $K_ADDR, %ecx
        jne     5f
        call    guest_addr
        mov     %eax, %esi
        shr     $32, %rax
        mov     %eax, chaos_high(%rip)
        jmp     9f
5:      cmp     $K_HIGH, %ecx
        jne     9f
        mov     chaos_high(%rip), %esi
9:      mov     %esi, (%r12, %rdi)
        dec     %r15
        add     $4, %rbx
        jmp     1b

/* ---- Helpers (rax = the operation's random bits) ---------------- */
/* ecx = a queue number from ecx's low bits: 0, 1 or 2 (the socket device's
 * event queue; on a two-queue device a refused QueueSel, which is chaos
 * too). */
queue_number:
        and     $3, %ecx
        cmp     $3, %ecx
        jne     1f
        xor     %ecx, %ecx
1:      ret
window:                 /* rdx = virtio window number bits 8-9 */
        mov     %eax, %edx
        shr     $8, %edx
        and     $3, %edx
        mov     chaos_windows(, %rdx, 8), %rdx
        ret
virtio_reg:             /* rdx = window + (rdi = bits 12-20, aligned if 4 bytes) */
        call    window
        call    size_bits
        mov     %eax, %edi
        shr     $12, %edi
        and     $0x1ff, %edi
        cmp     $2, %ecx
        jne     1f
        and     $0x1fc, %edi
1:      add     %rdi, %rdx
        ret
/* ring_guard(rdi = register, ecx = size, rax = value): a 4-byte write to a
 * ring-address register (the only kind the device takes) writes half of a
 * guest_addr instead. Clobbers rsi. */
ring_guard:
        cmp     $2, %ecx
        jne     1f
        lea     -RING_REGS(%rdi), %esi
        cmp     $RING_REGS_SIZE, %esi
        jae     1f
        push    %rdx
        call    guest_addr
        pop     %rdx
        mov     $2, %ecx
        test    $4, %edi                        /* 0x84, 0x94, 0xa4: high halves */
        jz      1f
        shr     $32, %rax
1:      ret
/* rax = an address for the device: a scratch page (1/2), RAM (1/4), not
 * RAM (1/4: low half in the MMIO gap, high half 0 or random). RAM:
 * random mod RAM end, aligned to 16, with this kernel skipped. Clobbers
 * rdx. */
guest_addr:
        call    chaos_rand
        test    $2, %al
        jnz     1f
        and     $3 << 12, %eax
        add     $chaos_scratch, %rax
        ret
1:      test    $1, %al
        jnz     2f
        shr     $8, %rax
        xor     %edx, %edx
        div     %r13
        mov     %rdx, %rax
        and     $-16, %rax
        cmp     $SAFE_LO, %rax
        jb      3f
        cmp     $kernel_end, %rax
        jae     3f
        add     $kernel_end - SAFE_LO, %rax
3:      ret
2:      mov     %rax, %rdx
        shr     $2, %eax
        or      $MMIO_GAP_START, %eax           /* zero-extends */
        test    $1 << 4, %edx
        jz      3b
        shr     $32, %rdx
        shl     $32, %rdx
        or      %rdx, %rax
        ret
/* One random descriptor in slot 0-7 of a scratch page (length < 4 KiB or
 * >= 2 GiB; NEXT, WRITE, INDIRECT and next 0-7 at random), then one page's
 * avail.idx moved on by 1-4 and head 0-7 put in slot 0-7 [VIRTIO 2.7].
 * Clobbers rcx, rdx, rsi. */
scramble:
        call    chaos_rand
        mov     %rax, %rsi
        and     $0x3070, %esi                   /* page, slot */
        call    guest_addr
        mov     %rax, chaos_scratch + VIRTQ_DESC_ADDR(%rsi)
        call    chaos_rand
        mov     %eax, %ecx
        and     $0x80000fff, %ecx
        mov     %ecx, chaos_scratch + VIRTQ_DESC_LEN(%rsi)
        shr     $32, %rax
        and     $0x00070007, %eax               /* flags | next << 16 */
        mov     %eax, chaos_scratch + VIRTQ_DESC_FLAGS(%rsi)
        call    chaos_rand
        mov     %eax, %ecx
        and     $3 << 12, %ecx                  /* the page */
        mov     %eax, %edx
        and     $3, %edx
        inc     %edx
        add     %dx, chaos_scratch + 2(%rcx)
        mov     %eax, %edx
        shr     $8, %edx
        and     $7, %edx                        /* the slot */
        shr     $16, %eax
        and     $7, %eax                        /* the head */
        mov     %ax, chaos_scratch + 4(%rcx, %rdx, 2)
        ret
        .section .rodata, "a"
status_values:          /* reset, each set-up step, FAILED, NEEDS_RESET + all */
        .byte   0, 1, 3, 0xb, 0xf, VIRTIO_STATUS_FAILED, 0x4f, 0xff
/* The set-up script [VIRTIO 3.1.1]: register, kind, 16-bit value. */
        .macro  STEP reg, kind, value=0
        .byte   \reg, \kind
        .word   \value
        .endm
        .balign 4
script:
        STEP    VIRTIO_MMIO_STATUS, K_VALUE, 0
        STEP    VIRTIO_MMIO_STATUS, K_VALUE, VIRTIO_STATUS_ACKNOWLEDGE
        STEP    VIRTIO_MMIO_STATUS, K_VALUE, 3
        STEP    VIRTIO_MMIO_DRIVER_FEATURES_SEL, K_VALUE, 1
        STEP    VIRTIO_MMIO_DRIVER_FEATURES, K_VALUE, VIRTIO_F_VERSION_1_WORD1
        STEP    VIRTIO_MMIO_STATUS, K_VALUE, 0xb
        .rept   3                               /* three queues (or one twice) */
        STEP    VIRTIO_MMIO_QUEUE_SEL, K_QUEUE
        STEP    VIRTIO_MMIO_QUEUE_NUM, K_SIZE
        STEP    VIRTIO_MMIO_QUEUE_DESC_LOW, K_ADDR
        STEP    VIRTIO_MMIO_QUEUE_DESC_HIGH, K_HIGH
        STEP    VIRTIO_MMIO_QUEUE_DRIVER_LOW, K_ADDR
        STEP    VIRTIO_MMIO_QUEUE_DRIVER_HIGH, K_HIGH
        STEP    VIRTIO_MMIO_QUEUE_DEVICE_LOW, K_ADDR
        STEP    VIRTIO_MMIO_QUEUE_DEVICE_HIGH, K_HIGH
        STEP    VIRTIO_MMIO_QUEUE_READY, K_VALUE, 1
        .endr
        STEP    VIRTIO_MMIO_STATUS, K_VALUE, 0xf
        STEP    VIRTIO_MMIO_QUEUE_NOTIFY, K_QUEUE
        STEP    0, K_END

        .section .data, "aw"
        .balign 8
chaos_high:     .quad 0                         /* high half of the last K_ADDR */
chaos_windows:                                  /* set by chaos_virtio_init */
        .quad   VIRTIO_MMIO_WINDOWS, VIRTIO_MMIO_WINDOWS
        .quad   VIRTIO_MMIO_WINDOWS, VIRTIO_MMIO_WINDOWS

/* Four pages the device may take for rings and buffers (.bss: not zeroed,
 * which is chaos too). */
        .section .bss, "aw", @nobits
        .balign PAGE_4K
chaos_scratch:  .skip 4 * PAGE_4K

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
