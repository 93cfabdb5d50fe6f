//! vCPUs: configuration before boot, and the run loop on each vCPU thread.
//!
//! The loop is a small state machine: `Running` until an exit handler, an
//! error or a kick says `Finished`. Exit decoding is the free function
//! `handle_exit`, so tests can feed it made-up exits without a VM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kvm_bindings::{
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
    KVM_MAX_CPUID_ENTRIES, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN, Msrs,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::vm::{KvmError, kvm_err};
use crate::arch::x86_64::{cpuid, msr, regs};
use crate::config::CpuTemplate;
use crate::devices::bus::Bus;
use crate::exit::{ExitSignal, VmExit};
use crate::seccomp::{self, Sandbox};
use crate::stats::{Dir, ExitStats, Space};

/// The two buses a vCPU exit can land on.
#[derive(Default)]
pub struct IoBuses {
    /// Port I/O (`in`/`out`).
    pub pio: Bus,
    /// Memory-mapped I/O (accesses to guest-physical addresses with no RAM).
    pub mmio: Bus,
}

/// What the run loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Keep running.
    Continue,
    /// The VM ends for this reason.
    Stop(VmExit),
    /// KVM_EXIT_INTERNAL_ERROR: the loop reads the details from `kvm_run`.
    InternalError,
}

/// Decodes one exit: I/O goes to the buses, the rest decides the VM's fate.
pub fn handle_exit(exit: VcpuExit, buses: &IoBuses, stats: &mut ExitStats) -> ExitAction {
    match exit {
        VcpuExit::IoIn(port, data) => {
            stats.exit("io-in");
            let mapped = buses.pio.read(port.into(), data);
            stats.access(Space::Pio, port.into(), Dir::Read, mapped);
            ExitAction::Continue
        }
        VcpuExit::IoOut(port, data) => {
            stats.exit("io-out");
            let mapped = buses.pio.write(port.into(), data);
            stats.access(Space::Pio, port.into(), Dir::Write, mapped);
            ExitAction::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            stats.exit("mmio-read");
            let mapped = buses.mmio.read(addr, data);
            stats.access(Space::Mmio, addr, Dir::Read, mapped);
            ExitAction::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            stats.exit("mmio-write");
            let mapped = buses.mmio.write(addr, data);
            stats.access(Space::Mmio, addr, Dir::Write, mapped);
            ExitAction::Continue
        }
        VcpuExit::Hlt => {
            stats.exit("hlt");
            ExitAction::Continue
        }
        VcpuExit::Intr => {
            stats.exit("intr");
            ExitAction::Continue
        }
        VcpuExit::Shutdown => {
            stats.exit("shutdown");
            ExitAction::Stop(VmExit::TripleFault)
        }
        VcpuExit::FailEntry(reason, cpu) => {
            stats.exit("fail-entry");
            ExitAction::Stop(VmExit::KvmRun(format!(
                "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x} on host cpu {cpu}"
            )))
        }
        VcpuExit::InternalError => {
            stats.exit("internal-error");
            ExitAction::InternalError
        }
        VcpuExit::SystemEvent(kind, _) => {
            stats.exit("system-event");
            match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET => {
                    ExitAction::Stop(VmExit::Reset)
                }
                KVM_SYSTEM_EVENT_CRASH => ExitAction::Stop(VmExit::Panic),
                _ => ExitAction::Continue,
            }
        }
        other => {
            stats.exit("unhandled");
            ExitAction::Stop(VmExit::KvmRun(format!("unhandled VM exit {other:?}")))
        }
    }
}

/// Static, per-VM facts every vCPU is configured from.
pub struct VcpuSetup<'a> {
    /// CPUID as KVM supports it, before per-vCPU topology.
    pub base_cpuid: &'a kvm_bindings::CpuId,
    /// MSR indices the host supports.
    pub supported_msrs: &'a [u32],
    /// Total vCPUs.
    pub count: u8,
    /// Kernel entry point (the boot vCPU starts there).
    pub entry: u64,
}

/// KVM's CPUID for this host with the template applied.
pub fn base_cpuid(kvm: &Kvm, template: CpuTemplate) -> Result<kvm_bindings::CpuId, KvmError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    cpuid::apply_template(cpuid.as_mut_slice(), template);
    Ok(cpuid)
}

/// One vCPU.
pub struct Vcpu {
    /// Index and APIC ID.
    pub id: u8,
    /// The KVM vCPU fd.
    pub fd: VcpuFd,
}

impl Vcpu {
    /// Creates vCPU `id` and configures CPUID, MSRs and LAPIC; the boot vCPU
    /// (0) also gets long-mode registers at the kernel entry. The others wait
    /// in the in-kernel LAPIC for the INIT/SIPI the guest sends them.
    pub fn new(vm: &VmFd, id: u8, setup: &VcpuSetup) -> Result<Self, KvmError> {
        let fd = vm
            .create_vcpu(id.into())
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = setup.base_cpuid.clone();
        cpuid::set_topology(cpuid.as_mut_slice(), id, setup.count);
        fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;

        let entries = msr::supported_only(msr::boot_msrs(), setup.supported_msrs);
        let msrs = Msrs::from_entries(&entries).map_err(|_| KvmError {
            what: "building the MSR list",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        let set = fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
        if set != entries.len() {
            // KVM stops at the first MSR it refuses; say which, keep going.
            eprintln!(
                "tinyvmm: warning: KVM refused MSR {:#x}; {set} of {} boot MSRs set",
                entries[set].index,
                entries.len()
            );
        }

        let mut lapic = fd.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
        msr::set_lint(&mut lapic);
        fd.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))?;

        if id == 0 {
            let sregs = fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
            fd.set_sregs(&regs::long_mode_sregs(sregs))
                .map_err(kvm_err("KVM_SET_SREGS"))?;
            fd.set_regs(&regs::boot_regs(setup.entry))
                .map_err(kvm_err("KVM_SET_REGS"))?;
            fd.set_fpu(&regs::boot_fpu())
                .map_err(kvm_err("KVM_SET_FPU"))?;
        }
        Ok(Vcpu { id, fd })
    }

    /// Runs until the VM ends or `stop` is set; returns this vCPU's counters.
    /// Every ending goes through `exit`; nothing here exits the process.
    pub fn run(
        mut self,
        buses: &IoBuses,
        mem: &GuestMemoryMmap,
        exit: &ExitSignal,
        stop: &AtomicBool,
        sandbox: Sandbox,
    ) -> ExitStats {
        let mut stats = ExitStats::default();
        // The vCPU's own seccomp filter goes in before the first KVM_RUN.
        if sandbox != Sandbox::Off {
            if let Err(e) = seccomp::install_vcpu_filter() {
                exit.request(VmExit::KvmCall(format!("vCPU {}: {e}", self.id)));
                return stats;
            }
            if sandbox == Sandbox::TestViolation && self.id == 0 {
                // SAFETY: getppid has no arguments; the filter traps it.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
        }
        // Stop when told to, or as soon as any device or vCPU has decided the
        // VM's ending (e.g. a debug-exit write): the guest runs no further.
        while !stop.load(Ordering::Acquire) && !exit.requested() {
            let entered = Instant::now();
            let result = self.fd.run();
            let left = Instant::now();
            stats.in_kvm_run += left - entered;
            let action = match result {
                Ok(vcpu_exit) => handle_exit(vcpu_exit, buses, &mut stats),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    // A kick (signal) or a transient condition: look at `stop`.
                    self.fd.set_kvm_immediate_exit(0);
                    stats.exit("interrupted");
                    ExitAction::Continue
                }
                Err(e) => {
                    ExitAction::Stop(VmExit::KvmCall(format!("KVM_RUN on vCPU {}: {e}", self.id)))
                }
            };
            stats.in_vmm += left.elapsed();
            match action {
                ExitAction::Continue => {}
                ExitAction::Stop(why) => {
                    exit.request(why);
                    break;
                }
                ExitAction::InternalError => {
                    exit.request(VmExit::KvmRun(self.internal_error_details(mem)));
                    break;
                }
            }
        }
        stats
    }

    /// RIP, the failing instruction's bytes, and KVM's suberror.
    fn internal_error_details(&mut self, mem: &GuestMemoryMmap) -> String {
        // SAFETY: after KVM_EXIT_INTERNAL_ERROR, KVM filled the `internal`
        // member of the kvm_run union; it is plain integers.
        let internal = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal };
        let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
        let mut text = format!(
            "KVM_EXIT_INTERNAL_ERROR suberror {}{} on vCPU {} at RIP {rip:#x}",
            internal.suberror,
            if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
                " (instruction emulation failed)"
            } else {
                ""
            },
            self.id
        );
        // With the instruction-bytes flag, data[0] is flags, data[1..3]
        // hold insn_size then up to 15 bytes (struct emulation_failure).
        let ndata = internal.ndata as usize;
        let mut bytes: Vec<u8> = Vec::new();
        if internal.suberror == KVM_INTERNAL_ERROR_EMULATION
            && ndata >= 3
            && internal.data[0] & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)
                != 0
        {
            let raw: Vec<u8> = internal.data[1..3]
                .iter()
                .flat_map(|d| d.to_le_bytes())
                .collect();
            let size = (raw[0] as usize).min(15);
            bytes = raw[1..1 + size].to_vec();
        } else if let Ok(t) = self.fd.translate_gva(rip) {
            // Fall back to reading the code from guest memory.
            if t.valid != 0 {
                let mut buf = [0u8; 15];
                if mem
                    .read_slice(&mut buf, GuestAddress(t.physical_address))
                    .is_ok()
                {
                    bytes = buf.to_vec();
                }
            }
        }
        if !bytes.is_empty() {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            text.push_str(&format!("; instruction bytes: {}", hex.join(" ")));
        }
        let extra: Vec<String> = internal.data[..ndata.min(16)]
            .iter()
            .map(|d| format!("{d:#x}"))
            .collect();
        if !extra.is_empty() {
            text.push_str(&format!("; data: [{}]", extra.join(", ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Echo(Vec<u8>);
    impl crate::devices::bus::BusDevice for Echo {
        fn read(&mut self, _o: u64, d: &mut [u8]) {
            d.fill(0x5a);
        }
        fn write(&mut self, _o: u64, d: &[u8]) {
            self.0.extend_from_slice(d);
        }
    }

    fn buses() -> (IoBuses, Arc<Mutex<Echo>>) {
        let dev = Arc::new(Mutex::new(Echo(vec![])));
        let mut b = IoBuses::default();
        b.pio.insert(0x3f8, 8, dev.clone()).unwrap();
        b.mmio.insert(0xd000_0000, 0x1000, dev.clone()).unwrap();
        (b, dev)
    }

    #[test]
    fn io_exits_reach_devices_and_are_counted() {
        let (b, dev) = buses();
        let mut s = ExitStats::default();
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x3f8, b"A"), &b, &mut s),
            ExitAction::Continue
        );
        let mut data = [0u8; 4];
        handle_exit(VcpuExit::MmioRead(0xd000_0010, &mut data), &b, &mut s);
        assert_eq!(data, [0x5a; 4]);
        handle_exit(VcpuExit::MmioWrite(0xd000_0000, &[1, 2]), &b, &mut s);
        assert_eq!(dev.lock().unwrap().0, vec![b'A', 1, 2]);
        assert_eq!(s.total(), 3);
    }

    #[test]
    fn unmapped_accesses_are_ignored_not_fatal() {
        let (b, _) = buses();
        let mut s = ExitStats::default();
        let mut data = [0u8; 2];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x2f8, &mut data), &b, &mut s),
            ExitAction::Continue
        );
        assert_eq!(data, [0xff, 0xff]);
        assert_eq!(
            handle_exit(VcpuExit::MmioWrite(0x1234_0000, &[1]), &b, &mut s),
            ExitAction::Continue
        );
        assert_eq!(s.unmapped[&Space::Pio], 1);
        assert_eq!(s.unmapped[&Space::Mmio], 1);
    }

    #[test]
    fn fatal_exits_map_to_their_vm_exit() {
        let (b, _) = buses();
        let mut s = ExitStats::default();
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &b, &mut s),
            ExitAction::Stop(VmExit::TripleFault)
        );
        assert!(matches!(
            handle_exit(VcpuExit::FailEntry(0x21, 1), &b, &mut s),
            ExitAction::Stop(VmExit::KvmRun(m)) if m.contains("0x21")
        ));
        assert_eq!(
            handle_exit(VcpuExit::InternalError, &b, &mut s),
            ExitAction::InternalError
        );
        assert_eq!(
            handle_exit(
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[]),
                &b,
                &mut s
            ),
            ExitAction::Stop(VmExit::Reset)
        );
        assert_eq!(
            handle_exit(
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, &[]),
                &b,
                &mut s
            ),
            ExitAction::Stop(VmExit::Panic)
        );
        assert!(matches!(
            handle_exit(VcpuExit::Unknown, &b, &mut s),
            ExitAction::Stop(VmExit::KvmRun(_))
        ));
        assert_eq!(handle_exit(VcpuExit::Hlt, &b, &mut s), ExitAction::Continue);
    }
}
