//! Emulated devices and the buses they sit on.

pub mod boot_timer;
pub mod bus;
pub mod debug_exit;
pub mod i8042;
pub mod output;
pub mod serial;
pub mod stdin;
pub mod virtio;
