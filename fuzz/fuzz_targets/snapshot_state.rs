//! Fuzz target `snapshot_state`: tinyvmm::fuzz_harness::snapshot_state (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyvmm::fuzz_harness::snapshot_state(data));
