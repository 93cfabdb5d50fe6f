//! Emulated devices, the buses they sit on, and the device manager that
//! owns them all and wires them to the VM.

pub mod allocator;
pub mod boot_timer;
pub mod bus;
pub mod debug_exit;
pub mod escape;
pub mod i8042;
pub mod legacy;
pub mod manager;
pub mod output;
pub mod serial;
pub mod stdin;
pub mod virtio;
