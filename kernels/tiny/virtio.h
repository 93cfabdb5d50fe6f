/*
 * virtio.h - the virtio constants the tiny guest's virtio files share
 * (cmdline.S, virtio_mmio.S, console.S, blk.S, blk_check.S, chaos_virtio.S):
 * the virtio-mmio register layout,
 * device status and feature bits, the split-virtqueue layout, and the
 * driver's own limits. Constants only: no code, no data.
 *
 * [VIRTIO] Virtual I/O Device (VIRTIO) Version 1.2, section numbers and
 * titles as in https://docs.oasis-open.org/virtio/virtio/v1.2/virtio-v1.2.html
 * Everything the device sees is little-endian, like x86.
 */
#ifndef VIRTIO_H
#define VIRTIO_H

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
        .equ VIRTIO_MMIO_CONFIG_GENERATION, 0x0fc   /* R: changes with the config */
        .equ VIRTIO_MMIO_REGS_SIZE,         0x100   /* device config follows */
        .equ VIRTIO_MMIO_CONFIG,            0x100   /* device-specific config */

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
        .equ VIRTQ_DESC_F_WRITE,        2       /* the device writes this buffer */
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

/* A remembered command-line entry (virtio_devices in virtio_mmio.S). */
        .equ DEV_BASE,          0
        .equ DEV_SIZE,          8
        .equ DEV_IRQ,           16
        .equ DEV_ENTRY_SIZE,    24

#endif /* VIRTIO_H */
