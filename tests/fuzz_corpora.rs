//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) and the
//! inputs that once broke something (fuzz/regressions/<target>/) through
//! the same harness functions the cargo-fuzz targets call
//! (`tinyvmm::fuzz_harness`), on the stable toolchain and without
//! sanitizers: a harness invariant that breaks panics, naming the file.
//! docs/fuzzing.md says how the corpora are made.

use std::path::{Path, PathBuf};

use tinyvmm::fuzz_harness;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus file of `target` (at least one must exist) and every
/// regression file (if any) through `harness`.
fn replay(target: &str, harness: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing: commit its seed corpus"
    );
    let regressions = files(&root.join("regressions").join(target));
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).expect("a readable corpus file");
        let result = std::panic::catch_unwind(|| harness(&data));
        assert!(
            result.is_ok(),
            "{target}: {} breaks an invariant",
            file.display()
        );
    }
    eprintln!(
        "{target}: {} corpus and {} regression inputs replayed",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn virtio_mmio_corpus_replays() {
    replay("virtio_mmio", fuzz_harness::virtio_mmio);
}

#[test]
fn virtio_blk_corpus_replays() {
    replay("virtio_blk", fuzz_harness::virtio_blk);
}

#[test]
fn virtio_rng_corpus_replays() {
    replay("virtio_rng", fuzz_harness::virtio_rng);
}

#[test]
fn virtio_vsock_corpus_replays() {
    replay("virtio_vsock", fuzz_harness::virtio_vsock);
}

#[test]
fn kernel_image_corpus_replays() {
    replay("kernel_image", fuzz_harness::kernel_image);
}

#[test]
fn memory_size_corpus_replays() {
    replay("memory_size", fuzz_harness::memory_size);
}

#[test]
fn cmdline_corpus_replays() {
    replay("cmdline", fuzz_harness::cmdline);
}

#[test]
fn virtio_net_corpus_replays() {
    replay("virtio_net", fuzz_harness::virtio_net);
}

#[test]
fn snapshot_state_corpus_replays() {
    replay("snapshot_state", fuzz_harness::snapshot_state);
}
