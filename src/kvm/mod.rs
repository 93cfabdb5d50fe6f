//! The KVM side: the VM (memory slots, irqchip, PIT), each vCPU's set-up
//! and run loop, exit decoding, the per-vCPU exit counters, and the vCPU
//! threads' handles (start, kick, join).

pub mod exit_stats;
pub mod exits;
pub mod pause;
pub mod state;
pub mod vcpu;
pub mod vcpu_handles;
pub mod vm;
