//! The Intel MultiProcessor table, which tells a kernel without ACPI how many
//! CPUs there are and how ISA IRQs reach the IOAPIC.
//!
//! Intel MultiProcessor Specification 1.4, chapter 4 ("MP Configuration
//! Table"). The bytes are built in a `Vec` field by field, so every offset is
//! visible here and no `unsafe` plain-data impl is needed.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{APIC_DEFAULT_PHYS_BASE, IO_APIC_DEFAULT_PHYS_BASE, IRQ_MAX, MPTABLE_START};

/// APIC version reported for the local APICs and the IOAPIC.
const APIC_VERSION: u8 = 0x14;
/// MP spec revision 1.4.
const MPC_SPEC: u8 = 4;
/// Entry types (MP spec table 4-3).
const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;
/// Interrupt types (table 4-10).
const MP_IRQ_INT: u8 = 0;
const MP_IRQ_NMI: u8 = 1;
const MP_IRQ_EXTINT: u8 = 3;
/// Processor flags: enabled, bootstrap processor.
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// CPU signature: family 6 (stepping/model 0), and feature flags FPU | APIC.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

/// Errors building the MP table.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// More CPUs than APIC IDs below the IOAPIC's.
    #[error("{0} vCPUs do not fit in an MP table (at most 254)")]
    TooManyCpus(u8),
    /// The table could not be written.
    #[error("writing the MP table into guest memory failed")]
    Write,
}

/// Sets the byte at `checksum_at` so all bytes of `table` sum to zero.
fn fix_checksum(table: &mut [u8], checksum_at: usize) {
    table[checksum_at] = 0;
    let sum = table.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    table[checksum_at] = 0u8.wrapping_sub(sum);
}

/// Builds the floating pointer and configuration table for `num_cpus` CPUs,
/// as they will sit at `base`.
pub fn build(num_cpus: u8, base: u64) -> Result<Vec<u8>, MptableError> {
    if num_cpus == 0 || num_cpus > 254 {
        return Err(MptableError::TooManyCpus(num_cpus));
    }
    let ioapic_id = num_cpus; // APIC IDs 0..num_cpus are the CPUs'
    let config_at = base + 16;

    // MP floating pointer structure (spec 4.1): "_MP_", address of the
    // configuration table, length in 16-byte units, revision, checksum.
    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(config_at as u32).to_le_bytes());
    fp.extend_from_slice(&[1, MPC_SPEC, 0, 0, 0, 0, 0, 0]);
    fix_checksum(&mut fp, 10);

    // Configuration table entries (spec 4.3).
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend_from_slice(&[MP_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[MP_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[MP_IOAPIC, ioapic_id, APIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&IO_APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    count += 2;
    // ISA IRQ n arrives on IOAPIC pin n (flags 0: conforming polarity/trigger).
    for irq in 0..=IRQ_MAX as u8 {
        entries.extend_from_slice(&[MP_INTSRC, MP_IRQ_INT, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 of every local APIC takes the legacy PIC (ExtINT), LINT1 NMI.
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[MP_LINTSRC, MP_IRQ_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    // Configuration table header (spec 4.2), 44 bytes.
    let length = (44 + entries.len()) as u16;
    let mut table = Vec::with_capacity(length as usize);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&length.to_le_bytes());
    table.extend_from_slice(&[MPC_SPEC, 0]);
    table.extend_from_slice(b"TINYVMM ");
    table.extend_from_slice(b"000000000000");
    table.extend_from_slice(&[0; 4]); // OEM table pointer
    table.extend_from_slice(&[0; 2]); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    fix_checksum(&mut table, 7);

    fp.extend_from_slice(&table);
    Ok(fp)
}

/// Writes the MP table for `num_cpus` at `MPTABLE_START`.
pub fn setup_mptable(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<(), MptableError> {
    let bytes = build(num_cpus, MPTABLE_START)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(|_| MptableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn floating_pointer_and_table_checksum_to_zero() {
        for cpus in [1u8, 2, 8, 254] {
            let t = build(cpus, MPTABLE_START).unwrap();
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let len = u16::from_le_bytes([t[20], t[21]]) as usize;
            assert_eq!(&t[16..20], b"PCMP");
            assert_eq!(16 + len, t.len());
            assert_eq!(sum(&t[16..]), 0);
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap());
            assert_eq!(u64::from(ptr), MPTABLE_START + 16);
        }
    }

    #[test]
    fn one_processor_entry_per_cpu_and_only_cpu0_is_bsp() {
        let t = build(4, 0).unwrap();
        let count = u16::from_le_bytes([t[16 + 34], t[16 + 35]]);
        assert_eq!(count, 4 + 2 + 24 + 2);
        let mut off = 16 + 44;
        for cpu in 0..4u8 {
            assert_eq!(t[off], MP_PROCESSOR);
            assert_eq!(t[off + 1], cpu, "APIC ID");
            assert_eq!(t[off + 3] & CPU_BOOTPROCESSOR != 0, cpu == 0);
            off += 20;
        }
        assert_eq!(t[off], MP_BUS);
        assert_eq!(t[off + 8], MP_IOAPIC);
        assert_eq!(t[off + 9], 4, "IOAPIC ID follows the CPUs");
    }

    #[test]
    fn zero_or_too_many_cpus_are_refused() {
        assert!(build(0, 0).is_err());
        assert!(build(255, 0).is_err());
    }

    #[test]
    fn table_is_written_to_guest_memory() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        setup_mptable(&m, 2).unwrap();
        let mut sig = [0u8; 4];
        m.read_slice(&mut sig, GuestAddress(MPTABLE_START)).unwrap();
        assert_eq!(&sig, b"_MP_");
    }
}
