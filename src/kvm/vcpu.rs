//! A vCPU: its configuration before boot (CPUID, MSRs, LAPIC, boot
//! registers) and the run loop on its thread.
//!
//! The loop is a small state machine: running until an exit handler
//! (`super::exits::handle_exit`), an error or a kick says it is finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kvm_bindings::{
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
    KVM_MAX_CPUID_ENTRIES, Msrs,
};
use kvm_ioctls::{Kvm, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::exit_stats::ExitStats;
use super::exits::{ExitAction, handle_exit};
use super::pause::Pause;
use super::vm::{KvmError, Vm, kvm_err};
use crate::arch::x86_64::{cpuid, msr, regs};
use crate::config::CpuTemplate;
use crate::devices::bus::IoBuses;
use crate::exit::{ExitSignal, VmEnd};
use crate::seccomp::{self, Sandbox};
use crate::signals;

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
    /// The KVM vCPU fd. Declared before `memory`, so dropped first.
    pub fd: VcpuFd,
    /// Guest RAM: read for error reports, and held so the mappings behind
    /// the VM's memory slots outlive this fd (see `Vm`).
    memory: GuestMemoryMmap,
    /// The CPUID set with KVM_SET_CPUID2, which a snapshot saves (where KVM
    /// emulates guest kernel mode, KVM_GET_CPUID2 answers the host's own).
    cpuid: Vec<kvm_bindings::kvm_cpuid_entry2>,
    /// The profiler's probe (`--profile`, `--boot-timer`), if any.
    pub probe: Option<crate::profile::probe::VcpuProbe>,
}

impl Vcpu {
    /// Creates vCPU `id` and configures CPUID, MSRs and LAPIC; the boot vCPU
    /// (0) also gets long-mode registers at the kernel entry. The others wait
    /// in the in-kernel LAPIC for the INIT/SIPI the guest sends them.
    pub fn new(vm: &Vm, id: u8, setup: &VcpuSetup) -> Result<Self, KvmError> {
        let (fd, memory) = vm.create_vcpu(id)?;
        let mut cpuid = setup.base_cpuid.clone();
        cpuid::set_topology(cpuid.as_mut_slice(), id, setup.count);
        fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        let cpuid = cpuid.as_slice().to_vec();

        let entries = msr::supported_only(msr::boot_msrs(), setup.supported_msrs);
        let msrs = Msrs::from_entries(&entries).map_err(|_| KvmError {
            what: "building the MSR list",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        let set = fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
        if set != entries.len() {
            // KVM stops at the first MSR it refuses; say which, keep going.
            crate::say!(
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
        Ok(Vcpu {
            id,
            fd,
            memory,
            cpuid,
            probe: None,
        })
    }

    /// Creates vCPU `id` with nothing configured: a restore puts its saved
    /// state in (`super::state::restore_vcpu`), starting with `cpuid`.
    pub fn bare(
        vm: &Vm,
        id: u8,
        cpuid: Vec<kvm_bindings::kvm_cpuid_entry2>,
    ) -> Result<Self, KvmError> {
        let (fd, memory) = vm.create_vcpu(id)?;
        Ok(Vcpu {
            id,
            fd,
            memory,
            cpuid,
            probe: None,
        })
    }

    /// Runs until the VM ends or `stop` is set; returns this vCPU's counters.
    /// Every ending goes through `exit`; nothing here exits the process.
    pub fn run(
        mut self,
        buses: &IoBuses,
        exit: &ExitSignal,
        stop: &AtomicBool,
        pause: &Pause,
        sandbox: Sandbox,
    ) -> ExitStats {
        let mut stats = ExitStats::default();
        // The vCPU's own seccomp filter goes in before the first KVM_RUN.
        if sandbox != Sandbox::Off {
            if let Err(e) = seccomp::install_vcpu_filter() {
                exit.request(VmEnd::KvmCall(format!("vCPU {}: {e}", self.id)));
                return stats;
            }
            if let Sandbox::Test(v) = sandbox {
                if v.on_vcpu && self.id == 0 {
                    v.attempt();
                }
            }
        }
        let id = self.id;
        let cpuid = &self.cpuid;
        let probe = self.probe.as_mut();
        let ending = signals::with_kick_target(&mut self.fd, |fd| {
            run_loop(
                fd,
                (id, cpuid),
                buses,
                (exit, stop, pause),
                &mut stats,
                probe,
            )
        });
        match ending {
            Some(ExitAction::Stop(why)) => exit.request(why),
            Some(ExitAction::InternalError) => {
                exit.request(VmEnd::KvmRun(self.internal_error_details()))
            }
            Some(ExitAction::Continue) | None => {}
        }
        stats
    }

    /// RIP, the failing instruction's bytes, and KVM's suberror.
    fn internal_error_details(&mut self) -> String {
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
                if self
                    .memory
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

/// `KVM_RUN` until an exit ends the VM (returned), `stop` is set or the
/// VM's ending was decided elsewhere (`None`): the guest runs no further
/// once any device or vCPU has decided the VM's ending (e.g. a debug-exit
/// write).
fn run_loop(
    fd: &mut VcpuFd,
    (id, cpuid): (u8, &[kvm_bindings::kvm_cpuid_entry2]),
    buses: &IoBuses,
    // What makes the loop leave KVM_RUN: the VM's end, a stop, a pause.
    (exit, stop, pause): (&ExitSignal, &AtomicBool, &Pause),
    stats: &mut ExitStats,
    mut probe: Option<&mut crate::profile::probe::VcpuProbe>,
) -> Option<ExitAction> {
    if let Some(p) = probe.as_deref_mut() {
        p.entering();
    }
    while !stop.load(Ordering::Acquire) && !exit.requested() {
        if pause.requested() {
            // A snapshot: finish the last exit, save, wait (kvm/pause.rs).
            pause.park(fd, id, cpuid, || {
                stop.load(Ordering::Acquire) || exit.requested()
            });
            continue;
        }
        let entered = Instant::now();
        let result = fd.run();
        let left = Instant::now();
        stats.in_kvm_run += left - entered;
        let action = match result {
            Ok(vcpu_exit) => handle_exit(vcpu_exit, buses, stats),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // A kick (signal, maybe through immediate_exit) or a
                // transient condition: look at `stop`.
                fd.set_kvm_immediate_exit(0);
                stats.exit("interrupted");
                ExitAction::Continue
            }
            Err(e) => ExitAction::Stop(VmEnd::KvmCall(format!("KVM_RUN on vCPU {id}: {e}"))),
        };
        if let Some(p) = probe.as_deref_mut() {
            p.left_kvm_run(fd); // a profiler sample, when one is due
        }
        stats.in_vmm += left.elapsed();
        if action != ExitAction::Continue {
            return Some(action);
        }
    }
    None
}
