//! Decoding one vCPU exit: port and MMIO accesses go to the buses, the rest
//! decides the VM's fate. A free function (`handle_exit`), so tests feed it
//! made-up exits without a VM.

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::VcpuExit;

use super::exit_stats::{Dir, ExitStats, Space};
use crate::devices::bus::IoBuses;
use crate::exit::VmEnd;

/// What the run loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Keep running.
    Continue,
    /// The VM ends for this reason.
    Stop(VmEnd),
    /// KVM_EXIT_INTERNAL_ERROR: the loop reads the details from `kvm_run`.
    InternalError,
}

/// Decodes one exit: I/O goes to the buses, the rest decides the VM's fate.
pub fn handle_exit(exit: VcpuExit, buses: &IoBuses, stats: &mut ExitStats) -> ExitAction {
    match exit {
        VcpuExit::IoIn(port, data) => {
            stats.exit("io-in");
            let mapped = buses.pio.read(port.into(), data);
            stats.access(Space::Pio, port.into(), Dir::Read, mapped);
            ExitAction::Continue
        }
        VcpuExit::IoOut(port, data) => {
            stats.exit("io-out");
            let mapped = buses.pio.write(port.into(), data);
            stats.access(Space::Pio, port.into(), Dir::Write, mapped);
            ExitAction::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            stats.exit("mmio-read");
            let mapped = buses.mmio.read(addr, data);
            stats.access(Space::Mmio, addr, Dir::Read, mapped);
            ExitAction::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            stats.exit("mmio-write");
            let mapped = buses.mmio.write(addr, data);
            stats.access(Space::Mmio, addr, Dir::Write, mapped);
            ExitAction::Continue
        }
        VcpuExit::Hlt => {
            stats.exit("hlt");
            ExitAction::Continue
        }
        VcpuExit::Intr => {
            stats.exit("intr");
            ExitAction::Continue
        }
        VcpuExit::Shutdown => {
            stats.exit("shutdown");
            ExitAction::Stop(VmEnd::TripleFault)
        }
        VcpuExit::FailEntry(reason, cpu) => {
            stats.exit("fail-entry");
            ExitAction::Stop(VmEnd::KvmRun(format!(
                "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x} on host cpu {cpu}"
            )))
        }
        VcpuExit::InternalError => {
            stats.exit("internal-error");
            ExitAction::InternalError
        }
        VcpuExit::SystemEvent(kind, _) => {
            stats.exit("system-event");
            match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET => {
                    ExitAction::Stop(VmEnd::Reset)
                }
                KVM_SYSTEM_EVENT_CRASH => ExitAction::Stop(VmEnd::Panic),
                _ => ExitAction::Continue,
            }
        }
        other => {
            stats.exit("unhandled");
            ExitAction::Stop(VmEnd::KvmRun(format!("unhandled VM exit {other:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Echo(Vec<u8>);
    impl crate::devices::bus::BusDevice for Echo {
        fn read(&mut self, _o: u64, d: &mut [u8]) {
            d.fill(0x5a);
        }
        fn write(&mut self, _o: u64, d: &[u8]) {
            self.0.extend_from_slice(d);
        }
    }

    fn buses() -> (IoBuses, Arc<Mutex<Echo>>) {
        let dev = Arc::new(Mutex::new(Echo(vec![])));
        let mut b = IoBuses::default();
        b.pio.insert(0x3f8, 8, dev.clone()).unwrap();
        b.mmio.insert(0xd000_0000, 0x1000, dev.clone()).unwrap();
        (b, dev)
    }

    #[test]
    fn io_exits_reach_devices_and_are_counted() {
        let (b, dev) = buses();
        let mut s = ExitStats::default();
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x3f8, b"A"), &b, &mut s),
            ExitAction::Continue
        );
        let mut data = [0u8; 4];
        handle_exit(VcpuExit::MmioRead(0xd000_0010, &mut data), &b, &mut s);
        assert_eq!(data, [0x5a; 4]);
        handle_exit(VcpuExit::MmioWrite(0xd000_0000, &[1, 2]), &b, &mut s);
        assert_eq!(dev.lock().unwrap().0, vec![b'A', 1, 2]);
        assert_eq!(s.total(), 3);
    }

    #[test]
    fn unmapped_accesses_are_ignored_not_fatal() {
        let (b, _) = buses();
        let mut s = ExitStats::default();
        let mut data = [0u8; 2];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x2f8, &mut data), &b, &mut s),
            ExitAction::Continue
        );
        assert_eq!(data, [0xff, 0xff]);
        assert_eq!(
            handle_exit(VcpuExit::MmioWrite(0x1234_0000, &[1]), &b, &mut s),
            ExitAction::Continue
        );
        assert_eq!(s.unmapped[&Space::Pio], 1);
        assert_eq!(s.unmapped[&Space::Mmio], 1);
    }

    #[test]
    fn fatal_exits_map_to_their_vm_exit() {
        let (b, _) = buses();
        let mut s = ExitStats::default();
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &b, &mut s),
            ExitAction::Stop(VmEnd::TripleFault)
        );
        assert!(matches!(
            handle_exit(VcpuExit::FailEntry(0x21, 1), &b, &mut s),
            ExitAction::Stop(VmEnd::KvmRun(m)) if m.contains("0x21")
        ));
        assert_eq!(
            handle_exit(VcpuExit::InternalError, &b, &mut s),
            ExitAction::InternalError
        );
        assert_eq!(
            handle_exit(
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[]),
                &b,
                &mut s
            ),
            ExitAction::Stop(VmEnd::Reset)
        );
        assert_eq!(
            handle_exit(
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, &[]),
                &b,
                &mut s
            ),
            ExitAction::Stop(VmEnd::Panic)
        );
        assert!(matches!(
            handle_exit(VcpuExit::Unknown, &b, &mut s),
            ExitAction::Stop(VmEnd::KvmRun(_))
        ));
        assert_eq!(handle_exit(VcpuExit::Hlt, &b, &mut s), ExitAction::Continue);
    }
}
