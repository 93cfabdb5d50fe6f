//! criterion group `boot`: spawn to exit of the same workload on each path,
//! side by side in one group so criterion's report compares them:
//! tinyvmm booting the tiny guest, `crun run` and `runc run` of the busybox
//! rootfs, and (opt-in, `TINYVMM_BENCH_LINUX=1`, never in CI) tinyvmm and
//! QEMU booting Linux to the workload's marker line.
//!
//! Each iteration is one launch measured exactly as `tinyvmm compare`
//! measures it (monotonic clock from spawn), untraced.
//! Run: `cargo bench --bench boot`; report in target/criterion/report/.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use tinyvmm::lab::compare::paths::PathId;

fn boot(c: &mut Criterion) {
    let ctx = common::context();
    let paths = common::prepared(&ctx, &PathId::ALL);
    let mut group = c.benchmark_group("boot");
    group.sampling_mode(SamplingMode::Flat);
    let mut n = 0;
    for p in &paths {
        if p.id.is_linux() {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(600));
        } else {
            group
                .sample_size(30)
                .measurement_time(Duration::from_secs(5));
        }
        // Linux: boot to the marker (what a user waits for); others: to exit.
        let to_marker = p.id.is_linux();
        let what = if to_marker { "to-marker" } else { "to-exit" };
        group.bench_function(BenchmarkId::new(what, p.id.label()), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        n += 1;
                        let r = common::run_once(p, n, false);
                        if to_marker {
                            r.marker.unwrap_or(r.exit)
                        } else {
                            r.exit
                        }
                    })
                    .sum()
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}

criterion_group!(benches, boot);
criterion_main!(benches);
