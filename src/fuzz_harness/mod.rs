//! Fuzz harnesses: one function per fuzz target, each taking the fuzzer's
//! bytes, driving one piece of the VMM that a guest or a user controls, and
//! panicking when an invariant breaks. They live in the library so that the
//! cargo-fuzz crate (`fuzz/`, nightly, libFuzzer) and the stable
//! `tests/fuzz_corpora.rs` (which replays the committed corpora and
//! regressions) call the very same code. docs/fuzzing.md has the targets,
//! their invariants and how to run them.
//!
//! - `virtio.rs`: `virtio_mmio`, the virtio-mmio transport with a console
//!   behind it, its queues and descriptor chains.
//! - `kernel.rs`: `kernel_image`, the ELF and bzImage loading and checks.
//! - `text.rs`: `memory_size` and `cmdline`, the `--memory` parser and the
//!   command-line checks and assembly.
//! - `block.rs`: `virtio_blk`, the virtio disk's request processing.
//! - `net.rs`: `virtio_net`, the network device's transmit and receive
//!   paths, with `MemBackend` standing in for the tap.
//! - `rng.rs`: `virtio_rng`, the entropy device's request processing.
//! - `snapshot.rs`: `snapshot_state`, the snapshot state parser and the
//!   device-state restore.
//! - `vsock.rs`: `virtio_vsock`, the vsock device's packets, credit and
//!   sockets.

mod block;
mod kernel;
mod net;
mod rng;
mod snapshot;
mod text;
mod virtio;
mod vsock;

pub use block::virtio_blk;
pub use kernel::kernel_image;
pub use net::{MemBackend, virtio_net};
pub use rng::virtio_rng;
pub use snapshot::snapshot_state;
pub use text::{cmdline, memory_size};
pub use virtio::virtio_mmio;
pub use vsock::virtio_vsock;

/// The fuzzer's bytes, read front to back; past the end every read is 0,
/// so a harness never has to handle a short input specially.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// One of `choices`, picked by the next byte.
    pub(crate) fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.u8()) % choices.len()]
    }
}
