//! The KVM side: the VM (memory, irqchip, PIT) and the vCPUs' run loop.

pub mod vcpu;
pub mod vm;
