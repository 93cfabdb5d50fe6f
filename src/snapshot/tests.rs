//! The state file's format: round trip, and every kind of bad file refused
//! with its own error (never a panic).

use super::*;
use crate::devices::manager::DevicesState;
use crate::kvm::state::{VcpuState, VmState};
use kvm_bindings::{
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, kvm_irqchip,
};

/// A small valid state: one vCPU, no devices.
pub(crate) fn sample() -> SnapshotState {
    let chip = |chip_id| kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    SnapshotState {
        machine: MachineConfig {
            memory: 128 << 20,
            vcpus: 1,
            console: "virtio".into(),
            serial: true,
        },
        vm: VmState {
            pic_master: chip(KVM_IRQCHIP_PIC_MASTER),
            pic_slave: chip(KVM_IRQCHIP_PIC_SLAVE),
            ioapic: chip(KVM_IRQCHIP_IOAPIC),
            pit: Default::default(),
            clock: Default::default(),
        },
        vcpus: vec![VcpuState {
            id: 0,
            cpuid: vec![Default::default(); 3],
            tsc_khz: Some(2_000_000),
            mp_state: Default::default(),
            regs: kvm_bindings::kvm_regs {
                rip: 0x1234,
                ..Default::default()
            },
            sregs: Default::default(),
            xsave: Default::default(),
            xcrs: None,
            debugregs: Default::default(),
            lapic: Default::default(),
            msrs: vec![(0x10, 99), (0xc000_0080, 0x500)],
            events: Default::default(),
        }],
        devices: DevicesState {
            serial: None,
            marker_writes: 1,
            virtio: vec![],
        },
    }
}

#[test]
fn a_state_round_trips() {
    let bytes = encode(&sample()).unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    let back = decode(&bytes).unwrap();
    assert_eq!(back.machine, sample().machine);
    assert_eq!(back.vcpus[0].regs.rip, 0x1234);
    assert_eq!(back.vcpus[0].msrs, sample().vcpus[0].msrs);
    assert_eq!(back.vcpus[0].tsc_khz, Some(2_000_000));
}

#[test]
fn bad_files_are_refused_each_with_its_reason() {
    let good = encode(&sample()).unwrap();
    // Truncated: in the header, and in the payload.
    assert!(matches!(decode(&good[..10]), Err(SnapshotError::Format(m)) if m.contains("header")));
    assert!(
        matches!(decode(&good[..good.len() - 1]), Err(SnapshotError::Format(m)) if m.contains("truncated"))
    );
    // Not a snapshot.
    assert!(
        matches!(decode(b"hello world, this is not a snapshot"), Err(SnapshotError::Format(m)) if m.contains("magic"))
    );
    // Another version.
    let mut other = good.clone();
    other[8] = 3;
    assert!(matches!(decode(&other), Err(SnapshotError::Version(3))));
    other[8] = 0;
    assert!(matches!(decode(&other), Err(SnapshotError::Version(0))));
    // Version 1 (no socket device state) is read as well; its checksum
    // covers the payload only.
    other[8] = 1;
    assert!(decode(&other).is_ok());
    // One flipped payload byte.
    let mut corrupt = good.clone();
    let at = HEADER_LEN + 40;
    corrupt[at] ^= 0x20;
    assert!(matches!(
        decode(&corrupt),
        Err(SnapshotError::Checksum { .. })
    ));
}

#[test]
fn a_well_checksummed_but_inconsistent_state_is_refused() {
    let mut s = sample();
    s.machine.vcpus = 2; // one vCPU state for two vCPUs
    assert!(
        matches!(decode(&encode(&s).unwrap()), Err(SnapshotError::Format(m)) if m.contains("vCPU"))
    );
    let mut s = sample();
    s.vm.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
    assert!(decode(&encode(&s).unwrap()).is_err());
    let mut s = sample();
    s.machine.memory = 12345;
    assert!(decode(&encode(&s).unwrap()).is_err());
    let mut s = sample();
    s.machine.console = "telepathy".into();
    assert!(decode(&encode(&s).unwrap()).is_err());
}
