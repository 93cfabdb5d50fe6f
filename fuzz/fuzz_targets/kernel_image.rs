//! Fuzz target `kernel_image`: tinyvmm::fuzz_harness::kernel_image (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::kernel_image(data));
