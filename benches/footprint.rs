//! criterion group `footprint`: memory per instance of the same workload on
//! each path, side by side: tinyvmm + tiny guest (VMM RSS outside guest RAM
//! plus guest RAM touched), `crun run` and `runc run` (runtime processes'
//! peak RSS plus the workload's), and (opt-in, `TINYVMM_BENCH_LINUX=1`)
//! the Linux-guest paths.
//!
//! The value is not a time: a custom criterion `Measurement` (`Kib`) carries
//! the traced instance's total peak memory, so the report's "time" axis
//! reads KiB per instance. Run: `cargo bench --bench footprint`.

mod common;

use std::time::Duration;

use common::kib::Kib;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use tinyvmm::lab::compare::paths::PathId;
use tinyvmm::lab::compare::summary::instance_memory;

fn footprint(c: &mut Criterion<Kib>) {
    let ctx = common::context();
    let paths = common::prepared(&ctx, &PathId::ALL);
    let mut group = c.benchmark_group("footprint");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let mut n = 0;
    for p in &paths {
        let secs = if p.id.is_linux() { 600 } else { 3 };
        group.measurement_time(Duration::from_secs(secs));
        group.bench_function(BenchmarkId::new("peak-per-instance", p.id.label()), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        n += 1;
                        let r = common::run_once(p, n, true);
                        instance_memory(&r).total() as f64
                    })
                    .sum()
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&ctx.scratch);
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(Kib);
    targets = footprint
}
criterion_main!(benches);
