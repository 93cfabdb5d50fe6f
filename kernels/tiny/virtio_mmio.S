/*
 * virtio_mmio.S - the virtio-mmio transport side of the tiny guest's
 * virtio console driver: virtio_init tries each device the command line
 * named and brings the first console up, following the virtio 1.2 rules
 * for one device: probe its registers, reset it, negotiate features, set
 * up its transmit queue and set DRIVER_OK. Also virtio_say, the driver's
 * way of reporting on the serial port, and the table of devices found on
 * the command line. The device side of the same conversation is the VMM's
 * virtio-mmio transport and console in src/devices/virtio/, so a reader can
 * follow every register access and ring update from both ends.
 *
 * The driver, in the order of the spec (the file each part lives in):
 *   1. discovery: the VMM names each device on the kernel command line,
 *      `virtio_mmio.device=4K@0xd0000000:5` (size, base address, IRQ), the
 *      syntax Linux accepts (drivers/virtio/virtio_mmio.c); parse_cmdline
 *      hands every such word to virtio_parse_word [VIRTIO 4.2.1] (cmdline.S)
 *   2. probe: MagicValue, Version, DeviceID [VIRTIO 4.2.2, 4.2.3.1.1]
 *      (here)
 *   3. initialisation: reset, ACKNOWLEDGE, DRIVER, feature negotiation,
 *      FEATURES_OK, queue set-up, DRIVER_OK [VIRTIO 3.1.1, 4.2.3.2] (here)
 *   4. output: each write system call becomes one descriptor chain on the
 *      transmit queue, a notification, and a wait for the used ring
 *      [VIRTIO 2.7.13, 2.7.14, 5.3.6] (console.S, which also holds the
 *      queue's memory)
 * Whenever something is not as expected, a `tiny: virtio: ...` line goes to
 * the serial port and output stays on (or goes back to) the serial port.
 *
 * No interrupts: the driver asks the device not to send any and polls the
 * used ring instead. The tiny kernel runs with interrupts off throughout,
 * and a poll loop is far less code than interrupt controller set-up.
 *
 * Cost model (see tiny.h): every MMIO access below is a VM exit, and on
 * hosts that emulate guest kernel mode each instruction here costs about a
 * microsecond. So the set-up is done once, and a write is a few dozen
 * instructions plus a single exit (the notification), however many bytes
 * it carries.
 */
#include "tiny.h"
#include "virtio.h"

        .globl  virtio_init, virtio_say, msg_vio_prefix
        .globl  virtio_devices, virtio_device_count

        .section .text, "ax"

/* ====================================================================== */
/* 2 and 3. Probe and initialise the first console found.                 */
/* ====================================================================== */
/*
 * virtio_init: try each device from the command line in turn; the first
 * virtio console that initialises becomes the output device (virtio_base
 * set). Called once from _start (boot.S step 3). Clobbers rax, rcx, rdx,
 * rsi, rdi, r8.
 */
virtio_init:
        push    %rbx
        push    %r12
        lea     virtio_devices(%rip), %rbx
        mov     virtio_device_count(%rip), %r12
1:      test    %r12, %r12
        jz      2f
        mov     DEV_BASE(%rbx), %r8
        call    virtio_probe
        jnc     3f                              /* found one */
        add     $DEV_ENTRY_SIZE, %rbx
        dec     %r12
        jmp     1b
2:      cmpq    $0, virtio_device_count(%rip)
        je      3f                              /* none given: say nothing */
        KPUTS   msg_vio_no_console
3:      pop     %r12
        pop     %rbx
        ret

/*
 * virtio_probe(r8 = register base, rbx = its command-line entry): returns
 * CF = 0 and virtio_base = r8 if a console is now ready, else CF = 1 after
 * one line on the serial port. r8 and rbx survive.
 *
 * Device registers are read and written with plain 32-bit `mov`s. Each one
 * leaves the guest: KVM finds no memory at the address, decodes the
 * instruction and hands the VMM a KVM_EXIT_MMIO with address, size and
 * data; the VMM answers (for a read) and resumes the vCPU.
 */
virtio_probe:
        /* [VIRTIO 4.2.3.1.1 "Driver Requirements: Device Initialization"]:
         * first MagicValue and Version; then DeviceID, and a DeviceID of 0
         * means "transport without a device": touch nothing else. */
        mov     VIRTIO_MMIO_MAGIC_VALUE(%r8), %eax
        cmp     $VIRTIO_MAGIC, %eax
        je      1f
        lea     msg_vio_magic(%rip), %rsi
        jmp     fail_with_hex
1:      mov     VIRTIO_MMIO_VERSION(%r8), %eax
        cmp     $VIRTIO_MMIO_VERSION_MODERN, %eax
        je      2f
        lea     msg_vio_version(%rip), %rsi
        jmp     fail_with_dec
2:      mov     VIRTIO_MMIO_DEVICE_ID(%r8), %eax
        cmp     $VIRTIO_ID_CONSOLE, %eax
        je      3f
        lea     msg_vio_not_console(%rip), %rsi
        test    %eax, %eax
        jnz     fail_with_dec
        lea     msg_vio_no_device(%rip), %rsi
        call    virtio_say
        jmp     fail_newline

        /* [VIRTIO 3.1.1 "Driver Requirements: Device Initialization"],
         * steps 1-8. */
3:      /* 1. Reset: write 0 to Status, then wait until it reads back 0
         * [VIRTIO 2.4.2 "Driver Requirements: Device Reset"]. */
        xor     %eax, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
        mov     $1000, %ecx
4:      mov     VIRTIO_MMIO_STATUS(%r8), %eax
        test    %eax, %eax
        jz      5f
        dec     %ecx
        jnz     4b
        lea     msg_vio_reset(%rip), %rsi
        jmp     fail_with_hex
5:      /* 2. ACKNOWLEDGE: we have seen the device. 3. DRIVER: we can drive
         * it. The Status register holds all bits set so far. */
        mov     $VIRTIO_STATUS_ACKNOWLEDGE, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
        or      $VIRTIO_STATUS_DRIVER, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)

        /* 4. Features, 32 bits at a time through a selector [VIRTIO 4.2.2]:
         * read what the device offers (kept for the success line), accept
         * VIRTIO_F_VERSION_1 and nothing else. */
        xor     %eax, %eax
        mov     %eax, VIRTIO_MMIO_DEVICE_FEATURES_SEL(%r8)
        mov     VIRTIO_MMIO_DEVICE_FEATURES(%r8), %eax
        mov     %eax, virtio_device_features(%rip)
        mov     $1, %eax
        mov     %eax, VIRTIO_MMIO_DEVICE_FEATURES_SEL(%r8)
        mov     VIRTIO_MMIO_DEVICE_FEATURES(%r8), %eax
        mov     %eax, virtio_device_features + 4(%rip)
        test    $VIRTIO_F_VERSION_1_WORD1, %eax
        jnz     6f
        lea     msg_vio_no_version_1(%rip), %rsi
        jmp     fail_and_mark
6:      xor     %eax, %eax
        mov     %eax, VIRTIO_MMIO_DRIVER_FEATURES_SEL(%r8)
        mov     %eax, VIRTIO_MMIO_DRIVER_FEATURES(%r8)   /* word 0: none */
        mov     $1, %eax
        mov     %eax, VIRTIO_MMIO_DRIVER_FEATURES_SEL(%r8)
        mov     $VIRTIO_F_VERSION_1_WORD1, %eax
        mov     %eax, VIRTIO_MMIO_DRIVER_FEATURES(%r8)   /* word 1: VERSION_1 */

        /* 5. FEATURES_OK: no more feature changes. 6. Read Status back:
         * the device clears FEATURES_OK if it cannot work with our subset
         * (for example a device that needs a feature we declined). */
        mov     $VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
        mov     VIRTIO_MMIO_STATUS(%r8), %eax
        test    $VIRTIO_STATUS_FEATURES_OK, %eax
        jnz     7f
        lea     msg_vio_features_refused(%rip), %rsi
        jmp     fail_and_mark

7:      /* 7. Device-specific set-up: the console's transmitq, queue 1
         * [VIRTIO 4.2.3.2 "Virtqueue Configuration"]. The receiveq (0) stays
         * unset: we never read from the console. */
        mov     $CONSOLE_TRANSMITQ, %eax
        mov     %eax, VIRTIO_MMIO_QUEUE_SEL(%r8)        /* select it */
        mov     VIRTIO_MMIO_QUEUE_READY(%r8), %eax      /* must not be in use */
        test    %eax, %eax
        jnz     8f
        mov     VIRTIO_MMIO_QUEUE_NUM_MAX(%r8), %eax    /* 0: no such queue */
        test    %eax, %eax
        jnz     9f
8:      lea     msg_vio_no_queue(%rip), %rsi
        jmp     fail_and_mark
9:      /* Size: VQ_MAX_SIZE, halved until the device can take it (a split
         * queue size is a power of two [VIRTIO 2.7]). */
        mov     $VQ_MAX_SIZE, %ecx
10:     cmp     %eax, %ecx
        jbe     11f
        shr     %ecx
        jmp     10b
11:     mov     %ecx, vq_size(%rip)
        mov     %ecx, VIRTIO_MMIO_QUEUE_NUM(%r8)
        /* The three parts' guest physical addresses, 64 bits each as two
         * 32-bit halves. They live in console.S's .data (zeroed by the
         * assembler, as the spec wants fresh queue memory zeroed), aligned
         * as the table "Virtqueue Part Alignment" in [VIRTIO 2.7]
         * requires. */
        lea     vq_desc(%rip), %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DESC_LOW(%r8)
        shr     $32, %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DESC_HIGH(%r8)
        lea     vq_avail(%rip), %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DRIVER_LOW(%r8)
        shr     $32, %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DRIVER_HIGH(%r8)
        lea     vq_used(%rip), %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DEVICE_LOW(%r8)
        shr     $32, %rax
        mov     %eax, VIRTIO_MMIO_QUEUE_DEVICE_HIGH(%r8)
        mov     $1, %eax
        mov     %eax, VIRTIO_MMIO_QUEUE_READY(%r8)

        /* 8. DRIVER_OK: the device is live. A device that could not accept
         * our set-up says so with DEVICE_NEEDS_RESET. */
        mov     $VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
        mov     VIRTIO_MMIO_STATUS(%r8), %eax
        test    $VIRTIO_STATUS_DEVICE_NEEDS_RESET, %eax
        jz      12f
        lea     msg_vio_needs_reset(%rip), %rsi
        jmp     fail_and_mark

12:     mov     %r8, virtio_base(%rip)          /* console_write uses it now */
        cmpb    $0, opt_quiet(%rip)
        jne     13f
        /* "tiny: virtio: 0xd0000000: console ready, features 0x...,
         *  irq 5 unused (polled), transmitq size 8" */
        lea     msg_vio_ready(%rip), %rsi
        call    virtio_say
        mov     virtio_device_features(%rip), %rax
        call    print_hex
        KPUTS   msg_vio_ready_irq
        mov     DEV_IRQ(%rbx), %rax
        call    print_dec
        KPUTS   msg_vio_ready_size
        mov     vq_size(%rip), %eax
        call    print_dec
        KPUTS   msg_newline
13:     clc
        ret

/* Failure exits of virtio_probe: rsi = reason, rax = the value read. */
fail_with_hex:
        push    %rax
        call    virtio_say
        pop     %rax
        call    print_hex
        jmp     fail_newline
fail_with_dec:
        push    %rax
        call    virtio_say
        pop     %rax
        call    print_dec
fail_newline:
        KPUTS   msg_newline
        stc
        ret
/* After ACKNOWLEDGE: also tell the device we gave up (FAILED) [VIRTIO
 * 3.1.1: "If any of these steps go irrecoverably wrong, the driver SHOULD
 * set the FAILED status bit"]. */
fail_and_mark:
        mov     VIRTIO_MMIO_STATUS(%r8), %eax
        or      $VIRTIO_STATUS_FAILED, %eax
        mov     %eax, VIRTIO_MMIO_STATUS(%r8)
        call    virtio_say
        KPUTS   msg_newline
        stc
        ret

/* virtio_say(rsi = text, r8 = device): "tiny: virtio: 0x<base>: <text>"
 * on the serial port. Clobbers rax, rcx, rdx, rsi, rdi. */
virtio_say:
        push    %rsi
        KPUTS   msg_vio_prefix
        mov     %r8, %rax
        call    print_hex
        KPUTS   msg_vio_colon
        pop     %rsi
        jmp     puts

        .section .rodata, "a"
msg_vio_prefix:         .asciz "tiny: virtio: "
msg_vio_colon:          .asciz ": "
msg_vio_no_console:     .asciz "tiny: virtio: no usable console; output stays on the serial port\n"
msg_vio_magic:          .asciz "no virtio-mmio device here, MagicValue "
msg_vio_version:        .asciz "legacy or unknown virtio-mmio device (need Version 2), Version "
msg_vio_not_console:    .asciz "not a console (DeviceID 3), DeviceID "
msg_vio_no_device:      .asciz "DeviceID 0: a transport without a device"
msg_vio_reset:          .asciz "reset did not complete, Status "
msg_vio_no_version_1:   .asciz "device does not offer VIRTIO_F_VERSION_1"
msg_vio_features_refused: .asciz "device refused FEATURES_OK"
msg_vio_no_queue:       .asciz "transmitq (queue 1) unavailable or already in use"
msg_vio_needs_reset:    .asciz "device needs reset after DRIVER_OK"
msg_vio_ready:          .asciz "console ready, features "
msg_vio_ready_irq:      .asciz ", irq "
msg_vio_ready_size:     .asciz " unused (polled), transmitq size "

        .section .data, "aw"
        .balign 8
virtio_device_features: .quad 0         /* what it offered (64 bits) */
virtio_device_count:    .quad 0         /* entries in virtio_devices */
virtio_devices:                         /* {base, size, irq} from the command line */
        .fill   VIRTIO_MAX_DEVICES * DEV_ENTRY_SIZE, 1, 0

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
