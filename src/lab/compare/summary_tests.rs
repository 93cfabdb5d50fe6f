//! Unit tests of `summary.rs`.

use super::*;
use crate::host::procfs::{MemSizes, ProcStatus};
use std::time::Duration;

pub(crate) fn proc_rec(name: &str, root: bool, hwm: u64, guest: Option<u64>) -> ProcRecord {
    ProcRecord {
        pid: 1,
        root,
        status: ProcStatus {
            name: name.into(),
            vm_hwm_kib: Some(hwm),
            seccomp: Some(0),
            cap_eff: Some(0x2000_0420),
            ..ProcStatus::default()
        },
        mem: Some(MemSizes {
            rss_kib: hwm,
            pss_kib: hwm / 2,
        }),
        guest: guest.map(|g| MemSizes {
            rss_kib: g,
            pss_kib: g,
        }),
        namespaces_apart: if root {
            vec![]
        } else {
            vec!["mnt".into(), "pid".into()]
        },
    }
}

pub(crate) fn record(marker_ms: u64, exit_ms: u64, procs: Vec<ProcRecord>) -> RunRecord {
    RunRecord {
        marker: Some(Duration::from_millis(marker_ms)),
        exit: Duration::from_millis(exit_ms),
        ending: Ending::Exited(0),
        processes: procs,
        root_maxrss_kib: Some(1),
        stdout_tail: String::new(),
        stderr_tail: "tinyvmm: boot marker: user space (port 0x80 = 0x41) at 2.5 ms after process start, 2.4 ms after VM build start\n\
                      tinyvmm: boot marker: boot timer (123 at 0xc0000000) at 2.4 ms after process start, 2.3 ms after VM build start".into(),
        charged_kib: None,
    }
}

#[test]
fn boot_timer_line_is_parsed() {
    assert_eq!(
        vmm_boot_timer_ms(&record(1, 2, vec![]).stderr_tail),
        Some(2.4)
    );
    assert_eq!(
        vmm_boot_timer_ms("tinyvmm: boot marker: kernel start at 1.0 ms"),
        None
    );
}

#[test]
fn vm_memory_splits_guest_from_vmm() {
    let procs = [proc_rec("tinyvmm", true, 5000, Some(3000))];
    assert_eq!(
        process_memory(&procs),
        InstanceMemory {
            launcher: 2000,
            guest: Some(3000),
            workload: None,
            pss: 2500,
            charged: None,
        }
    );
}

#[test]
fn container_memory_adds_runtime_and_workload() {
    let procs = [
        proc_rec("crun", true, 3000, None),
        proc_rec("tinyvmm-workloa", false, 1000, None),
    ];
    assert_eq!(
        process_memory(&procs),
        InstanceMemory {
            launcher: 3000,
            guest: None,
            workload: Some(1000),
            pss: 2000,
            charged: None,
        }
    );
    let r = record(5, 9, procs.to_vec());
    let f = footprint(&[&r]).unwrap();
    assert_eq!((f.total_kib.median, f.processes), (4000.0, 2));
    // With a cgroup figure (tmpfs files counted), the total is the charge.
    let mut charged = record(5, 9, procs.to_vec());
    charged.charged_kib = Some(12_000);
    let f = footprint(&[&charged]).unwrap();
    assert_eq!(f.total_kib.median, 12_000.0);
    assert_eq!(f.charged_kib.unwrap().median, 12_000.0);
    let iso = isolation(PathId::Crun, &procs, Some(470), "6.1", "kvm_pvm").unwrap();
    assert!(iso.host_kernel_shared && iso.workload_is_host_process);
    assert_eq!(
        (iso.seccomp.as_str(), iso.host_syscalls, iso.capabilities),
        ("off", Some(470), Some(3))
    );
    assert!(iso.boundary.contains("mnt, pid"));
}

#[test]
fn vm_isolation_faces_the_vmm() {
    let procs = [proc_rec("tinyvmm", true, 5000, Some(3000))];
    let iso = isolation(PathId::TinyvmmTiny, &procs, Some(470), "6.1", "kvm_pvm").unwrap();
    assert!(!iso.host_kernel_shared && !iso.workload_is_host_process);
    assert!(iso.kernel.contains("tiny guest"));
}

#[test]
fn startup_and_density_summaries() {
    let a = record(2, 3, vec![proc_rec("tinyvmm", true, 5000, Some(3000))]);
    let b = record(4, 6, vec![proc_rec("tinyvmm", true, 5000, Some(3000))]);
    let s = startup(&[&a, &b]).unwrap();
    assert_eq!((s.marker_ms.median, s.exit_ms.max), (3.0, 6.0));
    assert_eq!(s.vmm_boot_timer_ms.unwrap().median, 2.4);
    let d = density(&[a, b], 0);
    assert_eq!(
        (d.instances, d.succeeded, d.all_markers_ms),
        (2, 2, Some(4.0))
    );
    assert_eq!(
        (d.all_exited_ms, d.total_peak_kib, d.total_pss_kib),
        (6.0, 10000, 5000)
    );
}

#[test]
fn failures_say_what_went_wrong() {
    let mut r = record(1, 2, vec![]);
    r.marker = None;
    r.ending = Ending::Exited(122);
    r.stderr_tail = "tinyvmm: KVM could not run the guest\n".into();
    assert!(!run_ok(&r, 0));
    let line = failure_line(3, &r);
    assert!(
        line.contains("run 3") && line.contains("Exited(122)") && line.contains("KVM could not"),
        "{line}"
    );
}

#[test]
fn the_vm_boundary_names_what_the_host_has() {
    assert!(vm_boundary("kvm_pvm").contains("emulated by the host kernel"));
    assert!(vm_boundary("kvm_intel").contains("VT-x"));
    assert!(vm_boundary("kvm_amd").contains("SVM"));
    assert!(vm_boundary("kvm").starts_with("KVM (kvm)"));
    assert!(vm_boundary("kvm_pvm").starts_with("KVM without hardware virtualization"));
}
