//! What both benches share: the comparison paths of `tinyvmm compare`,
//! prepared the same way, so a bench measures exactly what `compare` does.

#![allow(dead_code)] // each bench uses part of this

use std::path::PathBuf;
use std::time::Duration;

use tinyvmm::compare::host::kvm_is_pvm;
use tinyvmm::compare::paths::{self, Context, PathId, Prepared, Workload};
use tinyvmm::measure::{self, RunRecord};

/// The opt-in for Linux boots (each takes 30-60 s where KVM emulates guest
/// kernel mode; criterion's minimum of 10 samples makes that ~10 minutes).
pub const LINUX_OPT_IN: &str = "TINYVMM_BENCH_LINUX";

/// The context `tinyvmm compare` would use, with the default workload.
pub fn context() -> Context {
    let kernels = std::env::var_os("TINYVMM_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kernels"));
    Context {
        tinyvmm: env!("CARGO_BIN_EXE_tinyvmm").into(),
        kernels,
        memory: (128 << 20, "128M".into()),
        workload: Workload::default(),
        pvm: kvm_is_pvm(),
        scratch: std::env::temp_dir().join(format!("tinyvmm-bench-{}", std::process::id())),
        linux_timeout: Duration::from_secs(300),
    }
}

/// The paths to bench: the fast ones, plus Linux ones when opted in. An
/// absent path is reported on stderr with its reason, never silently left out.
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
        tinyvmm::compare::summary::run_ok(&rec, 0),
        "{}: {}",
        p.id.label(),
        tinyvmm::compare::summary::failure_line(n, &rec)
    );
    rec
}
