//! The KVM state of a paused VM, saved and put back: each vCPU's registers,
//! special registers, FPU/XSAVE, XCRs, LAPIC, the MSRs KVM lists, events,
//! MP state, debug registers, TSC frequency and CPUID; and the VM's PIC
//! (master and slave), IOAPIC, PIT and kvmclock.
//!
//! The order of the `set` calls follows the KVM API's constraints (the
//! same order Firecracker and QEMU use): CPUID first (it decides which MSRs
//! and XSAVE features exist), the TSC frequency before the MSRs that hold a
//! TSC value, SREGS before the LAPIC (SREGS carries the APIC base), and
//! vCPU events last (they may carry a pending exception that the other
//! calls would clear). What this host supports is recorded in
//! docs/snapshot.md; a call the host refuses is an error naming it.

use kvm_bindings::CpuId;
use kvm_bindings::{
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, Msrs, kvm_clock_data,
    kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

use super::vm::{KvmError, kvm_err};

/// One vCPU's state.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// Index and APIC ID.
    pub id: u8,
    /// The CPUID the guest was given (the guest may rely on every bit).
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// TSC frequency in kHz (`KVM_GET_TSC_KHZ`), when the host reports it.
    pub tsc_khz: Option<u32>,
    /// Runnable, halted, waiting for SIPI...
    pub mp_state: kvm_mp_state,
    /// General-purpose registers.
    pub regs: kvm_regs,
    /// Segments, control registers, EFER, APIC base.
    pub sregs: kvm_sregs,
    /// FPU/SSE (and AVX...) state in the 4 KiB XSAVE layout.
    pub xsave: kvm_xsave,
    /// XCR0, when the host has KVM_CAP_XCRS.
    pub xcrs: Option<kvm_xcrs>,
    /// DR0-3, DR6, DR7.
    pub debugregs: kvm_debugregs,
    /// The in-kernel local APIC's registers.
    pub lapic: kvm_lapic_state,
    /// Every MSR of `KVM_GET_MSR_INDEX_LIST` KVM would read, as (index, value).
    pub msrs: Vec<(u32, u64)>,
    /// Pending exceptions, interrupts, NMIs, SMM.
    pub events: kvm_vcpu_events,
}

/// The VM-wide state: interrupt controllers, timer, clock.
#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    /// The master 8259.
    pub pic_master: kvm_irqchip,
    /// The slave 8259.
    pub pic_slave: kvm_irqchip,
    /// The IOAPIC.
    pub ioapic: kvm_irqchip,
    /// The i8254 PIT.
    pub pit: kvm_pit_state2,
    /// kvmclock.
    pub clock: kvm_clock_data,
}

/// MSRs read per `KVM_GET_MSRS` call.
const MSR_BATCH: usize = 64;

fn msrs_err(what: &'static str) -> KvmError {
    KvmError {
        what,
        source: kvm_ioctls::Error::new(libc::EINVAL),
    }
}

/// Reads every MSR of `index_list` KVM will give. `KVM_GET_MSRS` stops at
/// the first MSR it cannot read (some listed ones depend on CPUID): that
/// one is skipped and reading goes on after it.
pub fn read_msrs(fd: &VcpuFd, index_list: &[u32]) -> Result<Vec<(u32, u64)>, KvmError> {
    let mut out = Vec::with_capacity(index_list.len());
    let mut rest = index_list;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_BATCH)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs =
            Msrs::from_entries(&entries).map_err(|_| msrs_err("building the MSR list"))?;
        let read = fd.get_msrs(&mut msrs).map_err(kvm_err("KVM_GET_MSRS"))?;
        out.extend(msrs.as_slice()[..read].iter().map(|e| (e.index, e.data)));
        // Skip the refused one (if any) and go on.
        let consumed = if read < chunk.len() { read + 1 } else { read };
        rest = &rest[consumed..];
    }
    Ok(out)
}

/// Reads vCPU `id`'s state. The vCPU must not be in `KVM_RUN`, and any
/// pending MMIO or port exit must have been completed first (`Pause`).
/// `cpuid` is the CPUID the VMM set: saved as given, not read back with
/// KVM_GET_CPUID2, which on kvm_pvm answers the host's CPUID instead.
pub fn save_vcpu(
    fd: &VcpuFd,
    id: u8,
    cpuid: &[kvm_cpuid_entry2],
    msr_list: &[u32],
    has_xcrs: bool,
) -> Result<VcpuState, KvmError> {
    Ok(VcpuState {
        id,
        cpuid: cpuid.to_vec(),
        tsc_khz: fd.get_tsc_khz().ok(),
        mp_state: fd.get_mp_state().map_err(kvm_err("KVM_GET_MP_STATE"))?,
        regs: fd.get_regs().map_err(kvm_err("KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?,
        xsave: fd.get_xsave().map_err(kvm_err("KVM_GET_XSAVE"))?,
        xcrs: if has_xcrs {
            Some(fd.get_xcrs().map_err(kvm_err("KVM_GET_XCRS"))?)
        } else {
            None
        },
        debugregs: fd.get_debug_regs().map_err(kvm_err("KVM_GET_DEBUGREGS"))?,
        lapic: fd.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?,
        msrs: read_msrs(fd, msr_list)?,
        events: fd
            .get_vcpu_events()
            .map_err(kvm_err("KVM_GET_VCPU_EVENTS"))?,
    })
}

/// Puts `state` into a fresh vCPU (created, nothing set yet).
pub fn restore_vcpu(kvm: &Kvm, fd: &VcpuFd, state: &VcpuState) -> Result<(), KvmError> {
    let cpuid =
        CpuId::from_entries(&state.cpuid).map_err(|_| msrs_err("CPUID: too many entries"))?;
    fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
    if let Some(khz) = state.tsc_khz {
        // Only when it differs: hosts without TSC scaling refuse any set.
        if fd.get_tsc_khz().ok() != Some(khz) {
            fd.set_tsc_khz(khz).map_err(kvm_err("KVM_SET_TSC_KHZ"))?;
        }
    }
    fd.set_mp_state(state.mp_state)
        .map_err(kvm_err("KVM_SET_MP_STATE"))?;
    fd.set_regs(&state.regs).map_err(kvm_err("KVM_SET_REGS"))?;
    fd.set_sregs(&state.sregs)
        .map_err(kvm_err("KVM_SET_SREGS"))?;
    let xsave_size = kvm.check_extension_int(Cap::Xsave2);
    if xsave_size > std::mem::size_of::<kvm_xsave>() as i32 {
        // The host's XSAVE area is larger than the 4 KiB one we saved.
        return Err(msrs_err(
            "KVM_SET_XSAVE: this host's XSAVE area is larger than 4 KiB (KVM_CAP_XSAVE2)",
        ));
    }
    // SAFETY: `state.xsave` is a whole `kvm_xsave` (4096 bytes), and the
    // check above makes sure KVM reads no more than that (KVM_CAP_XSAVE2
    // is 0 or at most 4096 here).
    unsafe { fd.set_xsave(&state.xsave) }.map_err(kvm_err("KVM_SET_XSAVE"))?;
    if let Some(xcrs) = &state.xcrs {
        fd.set_xcrs(xcrs).map_err(kvm_err("KVM_SET_XCRS"))?;
    }
    fd.set_debug_regs(&state.debugregs)
        .map_err(kvm_err("KVM_SET_DEBUGREGS"))?;
    fd.set_lapic(&state.lapic)
        .map_err(kvm_err("KVM_SET_LAPIC"))?;
    let entries: Vec<kvm_msr_entry> = state
        .msrs
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    for chunk in entries.chunks(MSR_BATCH) {
        let msrs = Msrs::from_entries(chunk).map_err(|_| msrs_err("building the MSR list"))?;
        let set = fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
        if set != chunk.len() {
            crate::say!(
                "tinyvmm: KVM refused MSR {:#x} of the snapshot",
                chunk[set].index
            );
            return Err(msrs_err("KVM_SET_MSRS refused a saved MSR"));
        }
    }
    fd.set_vcpu_events(&state.events)
        .map_err(kvm_err("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}

fn irqchip(fd: &VmFd, chip_id: u32, what: &'static str) -> Result<kvm_irqchip, KvmError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    fd.get_irqchip(&mut chip).map_err(kvm_err(what))?;
    Ok(chip)
}

/// Reads the VM's interrupt controllers, PIT and clock.
pub fn save_vm(fd: &VmFd) -> Result<VmState, KvmError> {
    let mut clock = fd.get_clock().map_err(kvm_err("KVM_GET_CLOCK"))?;
    // KVM_SET_CLOCK takes no flags it reported (TSC_STABLE and friends).
    clock.flags = 0;
    Ok(VmState {
        pic_master: irqchip(fd, KVM_IRQCHIP_PIC_MASTER, "KVM_GET_IRQCHIP (PIC master)")?,
        pic_slave: irqchip(fd, KVM_IRQCHIP_PIC_SLAVE, "KVM_GET_IRQCHIP (PIC slave)")?,
        ioapic: irqchip(fd, KVM_IRQCHIP_IOAPIC, "KVM_GET_IRQCHIP (IOAPIC)")?,
        pit: fd.get_pit2().map_err(kvm_err("KVM_GET_PIT2"))?,
        clock,
    })
}

/// Puts `state` into a VM whose irqchip and PIT exist (`Vm::new`).
pub fn restore_vm(fd: &VmFd, state: &VmState) -> Result<(), KvmError> {
    fd.set_irqchip(&state.pic_master)
        .map_err(kvm_err("KVM_SET_IRQCHIP (PIC master)"))?;
    fd.set_irqchip(&state.pic_slave)
        .map_err(kvm_err("KVM_SET_IRQCHIP (PIC slave)"))?;
    fd.set_irqchip(&state.ioapic)
        .map_err(kvm_err("KVM_SET_IRQCHIP (IOAPIC)"))?;
    fd.set_pit2(&state.pit).map_err(kvm_err("KVM_SET_PIT2"))?;
    fd.set_clock(&state.clock)
        .map_err(kvm_err("KVM_SET_CLOCK"))?;
    Ok(())
}

/// Whether the chips in `state` are the ones they claim to be (a parsed
/// snapshot is untrusted: KVM_SET_IRQCHIP picks the chip by `chip_id`).
pub fn vm_state_is_consistent(state: &VmState) -> bool {
    state.pic_master.chip_id == KVM_IRQCHIP_PIC_MASTER
        && state.pic_slave.chip_id == KVM_IRQCHIP_PIC_SLAVE
        && state.ioapic.chip_id == KVM_IRQCHIP_IOAPIC
}

/// CPUID feature registers a guest may rely on: (leaf, subleaf, register
/// index eax=0..edx=3, bits KVM changes by itself at run time).
const FEATURE_WORDS: [(u32, u32, usize, u32); 7] = [
    (1, 0, 2, 1 << 27),          // ecx; OSXSAVE follows CR4
    (1, 0, 3, 1 << 9 | 1 << 28), // edx; APIC follows the APIC base MSR, HTT the topology the VMM set
    (7, 0, 1, 0),                // ebx
    (7, 0, 2, 1 << 4),           // ecx; OSPKE follows CR4
    (7, 0, 3, 0),                // edx
    (0x8000_0001, 0, 2, 0),
    (0x8000_0001, 0, 3, 0),
];

fn word(entries: &[kvm_cpuid_entry2], leaf: u32, sub: u32, reg: usize) -> u32 {
    entries
        .iter()
        .find(|e| e.function == leaf && (e.index == sub || leaf != 7))
        .map_or(0, |e| [e.eax, e.ebx, e.ecx, e.edx][reg])
}

/// The CPUID feature bits the saved guest saw that this host's KVM does
/// not offer, as "leaf.reg:bit" names (empty: this host can run it).
pub fn missing_cpu_features(saved: &[kvm_cpuid_entry2], host: &[kvm_cpuid_entry2]) -> Vec<String> {
    let mut missing = Vec::new();
    for (leaf, sub, reg, dynamic) in FEATURE_WORDS {
        let lacking = word(saved, leaf, sub, reg) & !word(host, leaf, sub, reg) & !dynamic;
        for bit in (0..32).filter(|b| lacking & (1 << b) != 0) {
            missing.push(format!(
                "{leaf:#x}.{}:{bit}",
                ["eax", "ebx", "ecx", "edx"][reg]
            ));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn a_feature_the_host_lacks_is_named_and_dynamic_bits_are_not() {
        let host = [entry(1, 0b1, 0), entry(0x8000_0001, 0, 1 << 20)];
        let saved = [
            entry(1, 0b11 | 1 << 27, 1 << 9),
            entry(0x8000_0001, 0, 1 << 20),
        ];
        assert_eq!(missing_cpu_features(&saved, &host), ["0x1.ecx:1"]);
        assert!(missing_cpu_features(&host, &host).is_empty());
    }

    #[test]
    fn chips_must_be_where_they_claim() {
        let mut s = VmState {
            pic_master: kvm_irqchip {
                chip_id: KVM_IRQCHIP_PIC_MASTER,
                ..Default::default()
            },
            pic_slave: kvm_irqchip {
                chip_id: KVM_IRQCHIP_PIC_SLAVE,
                ..Default::default()
            },
            ioapic: kvm_irqchip {
                chip_id: KVM_IRQCHIP_IOAPIC,
                ..Default::default()
            },
            pit: Default::default(),
            clock: Default::default(),
        };
        assert!(vm_state_is_consistent(&s));
        s.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
        assert!(!vm_state_is_consistent(&s));
    }
}
