//! tinyvmm: a micro-VM launcher on Linux KVM built from rust-vmm crates.
