/*
 * virtio.S - the tiny guest's virtio console driver (issue 4, step 3).
 *
 * The smallest driver that follows the virtio 1.2 rules for one device: a
 * virtio console (device type 3) on the virtio-mmio transport, used for
 * output only. The device side of the same conversation is the VMM's
 * virtio-mmio transport and console in src/devices/virtio/, so a reader can
 * follow every register access and ring update from both ends.
 *
 * What happens, in the order of the spec:
 *   1. discovery: the VMM names each device on the kernel command line,
 *      `virtio_mmio.device=4K@0xd0000000:5` (size, base address, IRQ), the
 *      syntax Linux accepts (drivers/virtio/virtio_mmio.c); parse_cmdline in
 *      tiny.S hands every such word to virtio_parse_word [VIRTIO 4.2.1]
 *   2. probe: MagicValue, Version, DeviceID [VIRTIO 4.2.2, 4.2.3.1.1]
 *   3. initialisation: reset, ACKNOWLEDGE, DRIVER, feature negotiation,
 *      FEATURES_OK, queue set-up, DRIVER_OK [VIRTIO 3.1.1, 4.2.3.2]
 *   4. output: each write system call becomes one descriptor chain on the
 *      transmit queue, a notification, and a wait for the used ring
 *      [VIRTIO 2.7.13, 2.7.14, 5.3.6]
 * Whenever something is not as expected, a `tiny: virtio: ...` line goes to
 * the serial port and output stays on (or goes back to) the serial port.
 *
 * No interrupts: the driver asks the device not to send any and polls the
 * used ring instead. The tiny kernel runs with interrupts off throughout,
 * and a poll loop is far less code than interrupt controller set-up.
 *
 * Cost model (see tiny.S and shared/HOST.md): every MMIO access below is a
 * VM exit, and on hosts that emulate guest kernel mode each instruction here
 * costs about a microsecond. So the set-up is done once, and a write is a
 * few dozen instructions plus a single exit (the notification), however
 * many bytes it carries: the device reads the bytes straight out of the
 * user buffer (guest physical = guest virtual here), nothing is copied.
 *
 * [VIRTIO] Virtual I/O Device (VIRTIO) Version 1.2, section numbers and
 * titles as in https://docs.oasis-open.org/virtio/virtio/v1.2/virtio-v1.2.html
 * Everything the device sees is little-endian, like x86.
 */

/* ---------------------------------------------------------------------- */
/* Constants                                                              */
/* ---------------------------------------------------------------------- */

/* virtio-mmio registers, offsets from the device base [VIRTIO 4.2.2 "MMIO
 * Device Register Layout"]. All are 32 bits wide, and the driver must use
 * 32-bit aligned accesses for them [VIRTIO 4.2.2.2]. */
        .equ VIRTIO_MMIO_MAGIC_VALUE,       0x000   /* R: 0x74726976 */
        .equ VIRTIO_MMIO_VERSION,           0x004   /* R: 2 (1 = legacy) */
        .equ VIRTIO_MMIO_DEVICE_ID,         0x008   /* R: device type */
        .equ VIRTIO_MMIO_DEVICE_FEATURES,   0x010   /* R: 32 feature bits... */
        .equ VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0x014 /* W: ...from word n */
        .equ VIRTIO_MMIO_DRIVER_FEATURES,   0x020   /* W: accepted bits... */
        .equ VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0x024 /* W: ...of word n */
        .equ VIRTIO_MMIO_QUEUE_SEL,         0x030   /* W: queue the next 7 act on */
        .equ VIRTIO_MMIO_QUEUE_NUM_MAX,     0x034   /* R: largest size, 0 = none */
        .equ VIRTIO_MMIO_QUEUE_NUM,         0x038   /* W: size chosen */
        .equ VIRTIO_MMIO_QUEUE_READY,       0x044   /* RW: 1 = in use */
        .equ VIRTIO_MMIO_QUEUE_NOTIFY,      0x050   /* W: queue index: "go" */
        .equ VIRTIO_MMIO_STATUS,            0x070   /* RW: device status */
        .equ VIRTIO_MMIO_QUEUE_DESC_LOW,    0x080   /* W: descriptor table */
        .equ VIRTIO_MMIO_QUEUE_DESC_HIGH,   0x084
        .equ VIRTIO_MMIO_QUEUE_DRIVER_LOW,  0x090   /* W: available ring */
        .equ VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0x094
        .equ VIRTIO_MMIO_QUEUE_DEVICE_LOW,  0x0a0   /* W: used ring */
        .equ VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0x0a4
        .equ VIRTIO_MMIO_REGS_SIZE,         0x100   /* device config follows */

        .equ VIRTIO_MAGIC,      0x74726976      /* "virt", little-endian */
        .equ VIRTIO_MMIO_VERSION_MODERN, 2

/* Device status bits [VIRTIO 2.1 "Device Status Field"]. The driver only
 * ever adds bits; writing 0 resets the device [VIRTIO 2.4 "Device
 * Reset"]. */
        .equ VIRTIO_STATUS_ACKNOWLEDGE, 1       /* a driver noticed the device */
        .equ VIRTIO_STATUS_DRIVER,      2       /* ...and knows how to drive it */
        .equ VIRTIO_STATUS_DRIVER_OK,   4       /* ...and it is ready */
        .equ VIRTIO_STATUS_FEATURES_OK, 8       /* features agreed */
        .equ VIRTIO_STATUS_DEVICE_NEEDS_RESET, 64 /* the device gave up */
        .equ VIRTIO_STATUS_FAILED,      128     /* the driver gave up */

/* Device type [VIRTIO 5 "Device Types"] and the console's queues [VIRTIO
 * 5.3.2 "Virtqueues"]: 0 receiveq (port 0), 1 transmitq (port 0); more only
 * with VIRTIO_CONSOLE_F_MULTIPORT, which we do not accept. */
        .equ VIRTIO_ID_CONSOLE,         3
        .equ CONSOLE_TRANSMITQ,         1

/* Feature bits [VIRTIO 2.2 "Feature Bits", 6 "Reserved Feature Bits"].
 * VIRTIO_F_VERSION_1 (bit 32) says "this is a virtio 1.x device, not a
 * legacy one"; a driver that does not accept it gets legacy behaviour, so
 * every modern driver accepts it. It is bit 0 of feature word 1. The
 * console offers its own bits 0-2 (SIZE, MULTIPORT, EMERG_WRITE) and the
 * transport others (INDIRECT_DESC, EVENT_IDX, ...): we take none of them, so
 * the device must work with the plain split queue described here. */
        .equ VIRTIO_F_VERSION_1_WORD1,  1 << (32 - 32)

/* Split virtqueue layout [VIRTIO 2.7 "Split Virtqueues"]. */
        .equ VIRTQ_DESC_ADDR,           0       /* le64 guest physical address */
        .equ VIRTQ_DESC_LEN,            8       /* le32 length in bytes */
        .equ VIRTQ_DESC_FLAGS,          12      /* le16 */
        .equ VIRTQ_DESC_NEXT,           14      /* le16 next descriptor if F_NEXT */
        .equ VIRTQ_DESC_SIZE,           16
        .equ VIRTQ_DESC_F_NEXT,         1       /* the chain continues at .next */
        .equ VIRTQ_AVAIL_F_NO_INTERRUPT, 1      /* driver: no used-buffer interrupts, please */
        .equ VIRTQ_USED_F_NO_NOTIFY,    1       /* device: no notifications needed now */

/* Our choices. */
        .equ VQ_MAX_SIZE,       8       /* descriptors; a power of two [VIRTIO 2.7] */
        /* Largest buffer per descriptor. The len field is 32 bits, and a
         * device should not be handed one giant buffer; 1 MiB is what the
         * payload writes at a time, so a flood write is exactly one
         * descriptor, and longer writes become chains. */
        .equ VIRTIO_DESC_MAX,   1 << 20
        /* Poll the used ring this many times between two looks at the
         * Status register (each look is a VM exit). */
        .equ VIRTIO_POLL_SPINS, 1 << 16
        .equ VIRTIO_MAX_DEVICES, 4      /* command-line entries remembered */
        .equ MMIO_GAP_START,    0xc0000000 /* tiny.S maps 3-4 GiB uncached */
        .equ MMIO_GAP_END,      0x100000000

/* A remembered command-line entry. */
        .equ DEV_BASE,          0
        .equ DEV_SIZE,          8
        .equ DEV_IRQ,           16
        .equ DEV_ENTRY_SIZE,    24

/* ASCII, named (a quote character would upset the C preprocessor). */
        .equ ASCII_0,           0x30
        .equ ASCII_COLON,       0x3a
        .equ ASCII_AT,          0x40
        .equ ASCII_LOWER_A,     0x61
        .equ ASCII_LOWER_G,     0x67
        .equ ASCII_LOWER_K,     0x6b
        .equ ASCII_LOWER_M,     0x6d
        .equ ASCII_LOWER_X,     0x78
        .equ ASCII_CASE_BIT,    0x20    /* OR it in: upper case to lower */

/* Print a NUL-terminated string on the serial port (puts is in tiny.S).
 * Clobbers rax, rdx, rsi. */
        .macro KPUTS label
        lea     \label(%rip), %rsi
        call    puts
        .endm

        .globl  virtio_parse_word
        .globl  virtio_init
        .globl  virtio_write
        .globl  virtio_base

        .section .text, "ax"

/* ====================================================================== */
/* 1. Discovery: virtio_mmio.device=<size>@<base>:<irq>[:<id>]            */
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
 * caller skips to its end). Called from parse_cmdline in tiny.S, before the
 * greeting. Clobbers rax, rcx, rdx, rdi, r8-r11.
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
        /* Only devices whose registers lie in the MMIO gap: tiny.S maps
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
        KPUTS   msg_vio_newline
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

/* ====================================================================== */
/* 2 and 3. Probe and initialise the first console found.                 */
/* ====================================================================== */
/*
 * virtio_init: try each device from the command line in turn; the first
 * virtio console that initialises becomes the output device (virtio_base
 * set). Called once from _start (tiny.S step 3). Clobbers rax, rcx, rdx,
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
         * 32-bit halves. They live in our .data (zeroed by the assembler,
         * as the spec wants fresh queue memory zeroed), aligned as the
         * table "Virtqueue Part Alignment" in [VIRTIO 2.7] requires. */
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
        KPUTS   msg_vio_newline
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
        KPUTS   msg_vio_newline
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
        KPUTS   msg_vio_newline
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

/* ====================================================================== */
/* 4. Output: one write, one descriptor chain, one notification.          */
/* ====================================================================== */
/*
 * virtio_write(rsi = buffer, rcx = length > 0): console_write (tiny.S)
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

/* ---------------------------------------------------------------------- */
/* Read-only data                                                         */
/* ---------------------------------------------------------------------- */
        .section .rodata, "a"
str_virtio_prefix:      .asciz "virtio_mmio.device="
msg_vio_prefix:         .asciz "tiny: virtio: "
msg_vio_colon:          .asciz ": "
msg_vio_newline:        .asciz "\n"
msg_vio_bad_entry:      .asciz "ignoring malformed "
msg_vio_outside_gap:    .asciz "ignoring a device outside 0xc0000000-0xffffffff: "
msg_vio_too_many:       .asciz "ignoring one device too many: "
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
msg_vio_failed:         .asciz "device needs reset; output goes to the serial port from here\n"
msg_vio_ready:          .asciz "console ready, features "
msg_vio_ready_irq:      .asciz ", irq "
msg_vio_ready_size:     .asciz " unused (polled), transmitq size "

/* ---------------------------------------------------------------------- */
/* Data: the virtqueue and the driver state                               */
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
virtio_device_features: .quad 0         /* what it offered (64 bits) */
vq_size:                .long 0         /* queue size in use */
        .balign 8
virtio_device_count:    .quad 0         /* entries in virtio_devices */
virtio_devices:                         /* {base, size, irq} from the command line */
        .fill   VIRTIO_MAX_DEVICES * DEV_ENTRY_SIZE, 1, 0

/* No executable stack wanted (and no warning from ld about it). */
        .section .note.GNU-stack, "", @progbits
