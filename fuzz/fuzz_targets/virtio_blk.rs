//! Fuzz target `virtio_blk`: tinyvmm::fuzz_harness::virtio_blk (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::virtio_blk(data));
