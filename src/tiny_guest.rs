//! The project's own tiny guest kernel (kernels/tiny/), built by build.rs
//! and embedded: `tinyvmm run` with no `--kernel` boots it.

/// The tiny guest's static ELF image.
pub const ELF: &[u8] = include_bytes!(env!("TINYVMM_TINY_GUEST"));
