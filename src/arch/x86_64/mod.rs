//! x86_64 specifics: guest layout, boot protocol, registers, MP table, CPUID, MSRs.

pub mod boot;
pub mod cpuid;
pub mod elf;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;
