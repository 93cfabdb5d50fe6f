//! Fuzz target `memory_size`: tinyvmm::fuzz_harness::memory_size (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::memory_size(data));
