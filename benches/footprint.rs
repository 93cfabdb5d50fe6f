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

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tinyvmm::lab::compare::paths::PathId;
use tinyvmm::lab::compare::summary::instance_memory;

/// Memory in KiB as a criterion measurement: `iter_custom` returns the sum
/// over its iterations, criterion divides by the iteration count.
struct Kib;

impl Measurement for Kib {
    type Intermediate = ();
    type Value = f64;
    fn start(&self) -> Self::Intermediate {}
    fn end(&self, _: Self::Intermediate) -> Self::Value {
        0.0
    }
    fn add(&self, a: &Self::Value, b: &Self::Value) -> Self::Value {
        a + b
    }
    fn zero(&self) -> Self::Value {
        0.0
    }
    fn to_f64(&self, value: &Self::Value) -> f64 {
        *value
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &KibFormatter
    }
}

struct KibFormatter;

impl ValueFormatter for KibFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        if typical >= 1024.0 {
            values.iter_mut().for_each(|v| *v /= 1024.0);
            "MiB"
        } else {
            "KiB"
        }
    }
    fn scale_throughputs(&self, _: f64, _: &Throughput, _: &mut [f64]) -> &'static str {
        "KiB"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "KiB"
    }
}

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
