//! Fuzz target `virtio_vsock`: tinyvmm::fuzz_harness::virtio_vsock (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::virtio_vsock(data));
