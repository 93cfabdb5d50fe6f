//! Fuzz target `virtio_rng`: tinyvmm::fuzz_harness::virtio_rng (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::virtio_rng(data));
