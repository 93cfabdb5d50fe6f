//! `--stats`: what the guest made the VMM do, counted per vCPU and merged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Most distinct ports/addresses tracked one by one; a guest touching more
/// (a hostile one can touch billions) is counted in `other_addresses`.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

/// Direction of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Guest read.
    Read,
    /// Guest write.
    Write,
}

/// Where an exit went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// Port I/O.
    Pio,
    /// Memory-mapped I/O.
    Mmio,
}

/// Counters of one vCPU (or all, merged).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExitStats {
    /// VM exits by reason.
    pub reasons: BTreeMap<&'static str, u64>,
    /// I/O exits by (space, address, direction).
    pub addresses: BTreeMap<(Space, u64, Dir), u64>,
    /// Accesses not tracked one by one (past `MAX_TRACKED_ADDRESSES`).
    pub other_addresses: u64,
    /// Accesses no device answered.
    pub unmapped: BTreeMap<Space, u64>,
    /// Time inside `KVM_RUN`.
    pub in_kvm_run: Duration,
    /// Time handling exits in the VMM.
    pub in_vmm: Duration,
}

impl ExitStats {
    /// Counts one exit.
    pub fn exit(&mut self, reason: &'static str) {
        *self.reasons.entry(reason).or_default() += 1;
    }

    /// Counts one I/O access.
    pub fn access(&mut self, space: Space, addr: u64, dir: Dir, mapped: bool) {
        let key = (space, addr, dir);
        if let Some(n) = self.addresses.get_mut(&key) {
            *n += 1;
        } else if self.addresses.len() < MAX_TRACKED_ADDRESSES {
            self.addresses.insert(key, 1);
        } else {
            self.other_addresses += 1;
        }
        if !mapped {
            *self.unmapped.entry(space).or_default() += 1;
        }
    }

    /// Adds another vCPU's counters.
    pub fn merge(&mut self, other: &ExitStats) {
        for (k, v) in &other.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
        for (k, v) in &other.addresses {
            *self.addresses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.unmapped {
            *self.unmapped.entry(*k).or_default() += v;
        }
        self.other_addresses += other.other_addresses;
        self.in_kvm_run += other.in_kvm_run;
        self.in_vmm += other.in_vmm;
    }

    /// Total exits.
    pub fn total(&self) -> u64 {
        self.reasons.values().sum()
    }

    /// The report `--stats` prints: totals, reasons, then the busiest addresses.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "tinyvmm: {} VM exits; {:.3} ms in KVM_RUN, {:.3} ms handling exits in the VMM",
            self.total(),
            self.in_kvm_run.as_secs_f64() * 1e3,
            self.in_vmm.as_secs_f64() * 1e3
        );
        for (reason, n) in &self.reasons {
            let _ = writeln!(s, "tinyvmm:   {reason:<14} {n:>10}");
        }
        let mut busiest: Vec<_> = self.addresses.iter().collect();
        busiest.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for ((space, addr, dir), n) in busiest.iter().take(20) {
            let what = match space {
                Space::Pio => format!("port {addr:#06x}"),
                Space::Mmio => format!("mmio {addr:#010x}"),
            };
            let _ = writeln!(s, "tinyvmm:   {what:<17} {dir:<5?} {n:>10}");
        }
        if busiest.len() > 20 {
            let _ = writeln!(s, "tinyvmm:   ... {} more addresses", busiest.len() - 20);
        }
        if self.other_addresses > 0 {
            let _ = writeln!(
                s,
                "tinyvmm:   {} accesses beyond the tracked addresses",
                self.other_addresses
            );
        }
        for (space, n) in &self.unmapped {
            let _ = writeln!(
                s,
                "tinyvmm:   {n} {space:?} accesses reached no device (ignored)"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_report() {
        let mut a = ExitStats::default();
        a.exit("io-out");
        a.access(Space::Pio, 0x3f8, Dir::Write, true);
        a.exit("mmio-write");
        a.access(Space::Mmio, 0xdead_0000, Dir::Write, false);
        let mut b = ExitStats::default();
        b.exit("io-out");
        b.access(Space::Pio, 0x3f8, Dir::Write, true);
        a.merge(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.reasons["io-out"], 2);
        assert_eq!(a.addresses[&(Space::Pio, 0x3f8, Dir::Write)], 2);
        assert_eq!(a.unmapped[&Space::Mmio], 1);
        let r = a.report();
        assert!(r.contains("3 VM exits"), "{r}");
        assert!(r.contains("port 0x03f8"), "{r}");
        assert!(r.contains("1 Mmio accesses reached no device"), "{r}");
    }

    #[test]
    fn a_guest_touching_many_addresses_cannot_grow_the_table_without_bound() {
        let mut s = ExitStats::default();
        for addr in 0..(MAX_TRACKED_ADDRESSES as u64 + 100) {
            s.access(Space::Mmio, addr * 8, Dir::Read, false);
        }
        assert_eq!(s.addresses.len(), MAX_TRACKED_ADDRESSES);
        assert_eq!(s.other_addresses, 100);
    }
}
