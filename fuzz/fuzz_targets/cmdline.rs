//! Fuzz target `cmdline`: tinyvmm::fuzz_harness::cmdline (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::cmdline(data));
