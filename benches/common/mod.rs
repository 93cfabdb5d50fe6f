//! What both benches share: the comparison paths of `tinyvmm compare`,
//! prepared the same way, so a bench measures exactly what `compare` does.

#![allow(dead_code)] // each bench uses part of this

pub mod kib;

use std::time::Duration;

use tinyvmm::lab::compare::paths::{self, Context, PathId, Prepared, Workload};
use tinyvmm::lab::measure::{self, RunRecord};

/// The opt-in for Linux boots (each takes 30-60 s where KVM emulates guest
/// kernel mode; criterion's minimum of 10 samples makes that ~10 minutes).
pub const LINUX_OPT_IN: &str = "TINYVMM_BENCH_LINUX";

/// The context `tinyvmm compare` would use, with the default workload.
pub fn context() -> Context {
    let kernels =
        tinyvmm::kernel_dir::kernel_dir_for(std::path::Path::new(env!("CARGO_BIN_EXE_tinyvmm")));
    Context {
        tinyvmm: env!("CARGO_BIN_EXE_tinyvmm").into(),
        kernels,
        memory: (128 << 20, "128M".into()),
        workload: Workload::default(),
        pvm: tinyvmm::host::kvm_emulates_guest_kernel(),
        scratch: std::env::temp_dir().join(format!("tinyvmm-bench-{}", std::process::id())),
        linux_timeout: Duration::from_secs(300),
        firecracker: None,
        cloud_hypervisor: None,
    }
}

/// The switch (as in the tests) under which a tinyvmm path that is absent
/// for lack of KVM or the built guest fails the bench instead.
pub const REQUIRE_KVM: &str = "TINYVMM_REQUIRE_KVM";

/// The paths to bench: the fast ones, plus Linux ones when opted in. An
/// absent path is reported on stderr with its reason, never silently left
/// out; under `TINYVMM_REQUIRE_KVM=1` an absent tinyvmm path is a failure.
pub fn prepared(ctx: &Context, ids: &[PathId]) -> Vec<Prepared> {
    let linux = std::env::var_os(LINUX_OPT_IN).is_some_and(|v| v == "1");
    ids.iter()
        .filter(|id| {
            let keep = linux || !id.is_linux();
            if !keep {
                eprintln!(
                    "{}: not benched (set {LINUX_OPT_IN}=1 to include Linux boots)",
                    id.label()
                );
            }
            keep
        })
        .filter_map(|&id| match paths::prepare(id, ctx) {
            Ok(p) => Some(p),
            Err(reason) => {
                let require = std::env::var_os(REQUIRE_KVM).is_some_and(|v| v == "1");
                let tinyvmm = matches!(
                    id,
                    PathId::TinyvmmTiny | PathId::TinyvmmLinux | PathId::TinyvmmDisk
                );
                assert!(
                    !(require && tinyvmm),
                    "{}: absent: {reason}; {REQUIRE_KVM}=1 is set, so it may not be left out",
                    id.label()
                );
                eprintln!("{}: absent: {reason}", id.label());
                None
            }
        })
        .collect()
}

/// One launch of `p`; panics with the run's own words when it fails.
pub fn run_once(p: &Prepared, n: usize, trace: bool) -> RunRecord {
    let rec = measure::launch(&p.spec(n, trace)).expect("launch");
    p.cleanup(n);
    // The default workload exits 0 on every path.
    assert!(
        tinyvmm::lab::compare::summary::run_ok(&rec, 0),
        "{}: {}",
        p.id.label(),
        tinyvmm::lab::compare::summary::failure_line(n, &rec)
    );
    rec
}
