//! Fuzz target `virtio_net`: tinyvmm::fuzz_harness::virtio_net (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::virtio_net(data));
