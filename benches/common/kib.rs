//! Memory in KiB as a criterion measurement, for the benches whose value
//! is not a time (footprint.rs, restore.rs).

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// Memory in KiB as a criterion measurement: `iter_custom` returns the sum
/// over its iterations, criterion divides by the iteration count.
pub struct Kib;

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
