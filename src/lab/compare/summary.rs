//! From run records to results: which runs count, their startup and
//! memory summaries, density, and the isolation facts read at exit.

use super::paths::PathId;
use super::results::{Density, Footprint, Isolation, Startup};
use crate::lab::measure::trace::ProcRecord;
use crate::lab::measure::{Ending, RunRecord, Summary};
/// Whether a run did what the workload asks.
pub fn run_ok(r: &RunRecord, expected_exit: i32) -> bool {
    r.marker.is_some() && r.ending == Ending::Exited(expected_exit)
}

/// One line about a failed run.
pub fn failure_line(n: usize, r: &RunRecord) -> String {
    let last = |s: &str| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    format!(
        "run {n}: {:?} after {:.1} ms, marker {}; stderr: {}; stdout: {}",
        r.ending,
        ms(r.exit.as_secs_f64()),
        if r.marker.is_some() {
            "seen"
        } else {
            "not seen"
        },
        last(&r.stderr_tail),
        last(&r.stdout_tail)
    )
}

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

/// Startup summary of the successful runs.
pub fn startup(ok: &[&RunRecord]) -> Option<Startup> {
    let marker: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.marker)
        .map(|d| ms(d.as_secs_f64()))
        .collect();
    let exit: Vec<f64> = ok.iter().map(|r| ms(r.exit.as_secs_f64())).collect();
    let timer: Vec<f64> = ok
        .iter()
        .filter_map(|r| vmm_boot_timer_ms(&r.stderr_tail))
        .collect();
    Some(Startup {
        marker_ms: Summary::of(&marker)?,
        exit_ms: Summary::of(&exit)?,
        vmm_boot_timer_ms: Summary::of(&timer),
    })
}

/// tinyvmm's `--boot-timer` lines: the earliest "user space reached"
/// marker (MMIO boot timer or port 0x80 value 0x41), ms after its start.
pub fn vmm_boot_timer_ms(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("boot marker:") && (l.contains("boot timer") || l.contains("user space"))
        })
        .filter_map(|l| {
            let before = l.split(" ms after process start").next()?;
            before.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .min_by(f64::total_cmp)
}

/// Memory figures of one traced instance, KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceMemory {
    /// Peak RSS of the VMM or runtime processes, guest RAM excluded.
    pub launcher: u64,
    /// Guest RAM touched (VMs).
    pub guest: Option<u64>,
    /// Peak RSS of the workload process (containers).
    pub workload: Option<u64>,
    /// PSS of all processes at their exit.
    pub pss: u64,
    /// Peak memory the kernel charged to the instance's cgroup: processes,
    /// guest RAM, tmpfs files and page cache (the same yardstick for VMs
    /// and containers).
    pub charged: Option<u64>,
}

impl InstanceMemory {
    /// The per-instance total: the cgroup's peak charge where measured,
    /// else launcher + guest + workload peak RSS.
    pub fn total(&self) -> u64 {
        self.charged
            .unwrap_or(self.launcher + self.guest.unwrap_or(0) + self.workload.unwrap_or(0))
    }
}

/// Memory figures of one traced instance.
pub fn instance_memory(rec: &RunRecord) -> InstanceMemory {
    let mut m = process_memory(&rec.processes);
    m.charged = rec.charged_kib;
    m
}

/// Memory figures of the traced processes alone.
pub fn process_memory(procs: &[ProcRecord]) -> InstanceMemory {
    let launcher = procs
        .iter()
        .filter(|p| !p.is_workload())
        .map(ProcRecord::own_peak_kib)
        .sum();
    let guest = procs
        .iter()
        .find(|p| p.root)
        .and_then(|p| p.guest)
        .map(|g| g.rss_kib);
    let workload: Vec<u64> = procs
        .iter()
        .filter(|p| p.is_workload())
        .map(|p| p.status.vm_hwm_kib.unwrap_or(0))
        .collect();
    let workload = (!workload.is_empty()).then(|| workload.iter().sum());
    let pss = procs.iter().filter_map(|p| p.mem).map(|m| m.pss_kib).sum();
    InstanceMemory {
        launcher,
        guest,
        workload,
        pss,
        charged: None,
    }
}

/// Footprint summary of the traced successful runs.
pub fn footprint(traced: &[&RunRecord]) -> Option<Footprint> {
    let figures: Vec<_> = traced
        .iter()
        .filter(|r| !r.processes.is_empty())
        .map(|r| instance_memory(r))
        .collect();
    let col = |f: &dyn Fn(&InstanceMemory) -> Option<u64>| {
        Summary::of(
            &figures
                .iter()
                .filter_map(f)
                .map(|v| v as f64)
                .collect::<Vec<_>>(),
        )
    };
    Some(Footprint {
        launcher_peak_kib: col(&|f| Some(f.launcher))?,
        guest_touched_kib: col(&|f| f.guest),
        workload_peak_kib: col(&|f| f.workload),
        charged_kib: col(&|f| f.charged),
        total_kib: col(&|f| Some(f.total()))?,
        pss_kib: col(&|f| Some(f.pss))?,
        processes: traced.iter().map(|r| r.processes.len()).max().unwrap_or(0),
    })
}

/// Density figures of K simultaneous launches.
pub fn density(records: &[RunRecord], expected_exit: i32) -> Density {
    let ok: Vec<&RunRecord> = records
        .iter()
        .filter(|r| run_ok(r, expected_exit))
        .collect();
    let all_markers = records.iter().map(|r| r.marker).collect::<Option<Vec<_>>>();
    let (mut peak, mut pss) = (0, 0);
    for r in records {
        let m = instance_memory(r);
        peak += m.total();
        pss += m.pss;
    }
    Density {
        instances: records.len(),
        succeeded: ok.len(),
        all_markers_ms: all_markers
            .and_then(|m| m.into_iter().max())
            .map(|d| ms(d.as_secs_f64())),
        all_exited_ms: records
            .iter()
            .map(|r| ms(r.exit.as_secs_f64()))
            .fold(0.0, f64::max),
        total_peak_kib: peak,
        total_pss_kib: pss,
    }
}

/// Isolation facts from a traced run of path `id`.
pub fn isolation(
    id: PathId,
    procs: &[ProcRecord],
    host_syscalls: Option<usize>,
    host_kernel: &str,
    kvm_module: &str,
) -> Option<Isolation> {
    let workload = procs.iter().find(|p| p.is_workload());
    let facing = if id.is_vm() {
        procs.iter().find(|p| p.root)?
    } else {
        workload?
    };
    let seccomp = match facing.status.seccomp {
        Some(0) => "off".to_string(),
        Some(1) => "strict".to_string(),
        Some(2) => format!(
            "filter ({} filters)",
            facing.status.seccomp_filters.unwrap_or(0)
        ),
        _ => "unknown".to_string(),
    };
    let kernel = match id {
        PathId::TinyvmmTiny | PathId::TinyvmmTinyRestored => {
            "its own (tiny guest kernel)".to_string()
        }
        PathId::TinyvmmLinux
        | PathId::TinyvmmDisk
        | PathId::QemuLinux
        | PathId::TinyvmmLinuxRestored
        | PathId::Firecracker
        | PathId::CloudHypervisor
        | PathId::TinyvmmBundle
        | PathId::QemuBundle => "its own (guest Linux, vmlinux)".to_string(),
        PathId::Crun | PathId::Runc => format!("the host's (Linux {host_kernel})"),
    };
    let boundary = if id.is_vm() {
        vm_boundary(kvm_module)
    } else {
        format!(
            "namespaces ({}) and capabilities on the shared host kernel",
            facing.namespaces_apart.join(", ")
        )
    };
    Some(Isolation {
        host_kernel_shared: !id.is_vm(),
        kernel,
        workload_is_host_process: workload.is_some(),
        host_syscalls: if facing.status.seccomp == Some(0) {
            host_syscalls
        } else {
            None
        },
        seccomp,
        capabilities: facing.status.cap_eff.map(u64::count_ones),
        namespaces_apart: facing.namespaces_apart.clone(),
        boundary,
    })
}

/// What separates a VM's guest from the host, from the KVM module loaded.
pub fn vm_boundary(kvm_module: &str) -> String {
    let how = match kvm_module {
        "kvm_intel" => {
            "hardware virtualization (Intel VT-x): the guest runs on the CPU in VMX non-root mode"
        }
        "kvm_amd" => "hardware virtualization (AMD SVM): the guest runs on the CPU in guest mode",
        "kvm_pvm" => {
            "KVM without hardware virtualization (kvm_pvm): guest kernel mode is emulated by the host kernel, \
             guest user mode runs on the CPU under page tables the host manages"
        }
        other => return format!("KVM ({other}); host reached only through the VMM process"),
    };
    format!("{how}; host reached only through the VMM process")
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
