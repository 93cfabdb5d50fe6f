//! Fuzz target `virtio_mmio`: tinyvmm::fuzz_harness::virtio_mmio (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::virtio_mmio(data));
