//! What the guest's CPUID instruction answers.
//!
//! We start from `KVM_GET_SUPPORTED_CPUID` (what this KVM can virtualise),
//! set each vCPU's topology (APIC IDs, logical-processor counts), and with the
//! `minimal` template hide features an instruction emulator may not run.
//! Leaf and bit numbers: Intel SDM vol. 2A, "CPUID—CPU Identification".

use kvm_bindings::kvm_cpuid_entry2;

use crate::config::CpuTemplate;

/// A CPUID bit: (leaf, subleaf or None when the leaf has none, register, bit).
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    /// Name as in /proc/cpuinfo.
    pub name: &'static str,
    leaf: u32,
    subleaf: Option<u32>,
    reg: Reg,
    bit: u8,
}

#[derive(Clone, Copy, Debug)]
enum Reg {
    Ebx,
    Ecx,
    Edx,
}

const fn f(name: &'static str, leaf: u32, subleaf: Option<u32>, reg: Reg, bit: u8) -> Feature {
    Feature {
        name,
        leaf,
        subleaf,
        reg,
        bit,
    }
}

/// Features hidden by the `minimal` template. The first group stopped a Linux
/// guest on a host whose KVM emulates guest kernel mode (docs/host-kvm.md); the
/// rest depend on XSAVE (AVX, AVX-512, AMX, PKU) or were hidden as a precaution,
/// except ERMS and FSRM, hidden for speed: with them Linux copies, clears
/// and fills memory with `rep movsb`/`rep stosb`, which the emulator runs a
/// byte at a time; without them, with `rep movsq`/`rep stosq` (8 bytes at a
/// time).
pub const MINIMAL_HIDDEN: &[Feature] = &[
    f("cx16", 1, None, Reg::Ecx, 13),
    f("xsave", 1, None, Reg::Ecx, 26),
    f("osxsave", 1, None, Reg::Ecx, 27),
    f("popcnt", 1, None, Reg::Ecx, 23),
    f("smap", 7, Some(0), Reg::Ebx, 20),
    f("fsgsbase", 7, Some(0), Reg::Ebx, 0),
    f("rdrand", 1, None, Reg::Ecx, 30),
    f("rdseed", 7, Some(0), Reg::Ebx, 18),
    f("invpcid", 7, Some(0), Reg::Ebx, 10),
    f("pcid", 1, None, Reg::Ecx, 17),
    f("rdpid", 7, Some(0), Reg::Ecx, 22),
    f("avx", 1, None, Reg::Ecx, 28),
    f("fma", 1, None, Reg::Ecx, 12),
    f("f16c", 1, None, Reg::Ecx, 29),
    f("avx2", 7, Some(0), Reg::Ebx, 5),
    f("avx512f", 7, Some(0), Reg::Ebx, 16),
    f("avx512dq", 7, Some(0), Reg::Ebx, 17),
    f("avx512ifma", 7, Some(0), Reg::Ebx, 21),
    f("avx512pf", 7, Some(0), Reg::Ebx, 26),
    f("avx512er", 7, Some(0), Reg::Ebx, 27),
    f("avx512cd", 7, Some(0), Reg::Ebx, 28),
    f("avx512bw", 7, Some(0), Reg::Ebx, 30),
    f("avx512vl", 7, Some(0), Reg::Ebx, 31),
    f("avx512vbmi", 7, Some(0), Reg::Ecx, 1),
    f("pku", 7, Some(0), Reg::Ecx, 3),
    f("ospke", 7, Some(0), Reg::Ecx, 4),
    f("avx512_vbmi2", 7, Some(0), Reg::Ecx, 6),
    f("avx512_vnni", 7, Some(0), Reg::Ecx, 11),
    f("avx512_bitalg", 7, Some(0), Reg::Ecx, 12),
    f("avx512_vpopcntdq", 7, Some(0), Reg::Ecx, 14),
    f("amx_bf16", 7, Some(0), Reg::Edx, 22),
    f("avx512_fp16", 7, Some(0), Reg::Edx, 23),
    f("amx_tile", 7, Some(0), Reg::Edx, 24),
    f("amx_int8", 7, Some(0), Reg::Edx, 25),
    f("erms", 7, Some(0), Reg::Ebx, 9),
    f("fsrm", 7, Some(0), Reg::Edx, 4),
];

/// Kernel parameters that make a Linux guest drop the same features itself.
///
/// Needed because on a KVM whose instruction emulator runs guest kernel code
/// (the `kvm_pvm` module), the guest's `cpuid` in kernel mode returns the
/// host's values whatever `KVM_SET_CPUID2` says (measured: leaf 1 ECX showed
/// XSAVE and POPCNT with both templates). `noxsave` covers XSAVE and all that
/// depends on it; `clearcpuid=` takes Linux's X86_FEATURE_* bit numbers
/// (arch/x86/include/asm/cpufeatures.h, word*32+bit): CX16 141, PCID 145,
/// POPCNT 151, AVX 156, RDRAND 158, FSGSBASE 288, AVX2 293, ERMS 297,
/// INVPCID 298, RDSEED 306, SMAP 308, PKU 515, RDPID 534, FSRM 580. On
/// ordinary KVM they repeat what CPUID already says.
///
/// `noreplace-smp` is for speed: a kernel booted with one CPU rewrites
/// every `lock` prefix of its text into a no-op, one `text_poke` (a page
/// table switch and a TLB flush) each, about half a second where the
/// emulator runs it (measured, docs/profiling.md); the prefixes then stay,
/// which on one CPU only costs what a locked instruction costs.
///
/// This is the project's one list of guest-kernel workaround options:
/// `compare` gives QEMU's guest the same.
pub const MINIMAL_KERNEL_ARGS: &str = concat!(
    "noxsave nopcid ",
    "clearcpuid=141,145,151,156,158,288,293,297,298,306,308,515,534,580 ",
    "noreplace-smp"
);

/// The kernel parameters a template adds to the command line.
pub fn template_kernel_args(template: CpuTemplate) -> Option<&'static str> {
    (template == CpuTemplate::Minimal).then_some(MINIMAL_KERNEL_ARGS)
}

/// Leaf 1 ECX bit 31: "running under a hypervisor".
const HYPERVISOR_BIT: u32 = 1 << 31;
/// Leaf 1 EDX bit 28: more than one logical processor per package.
const HTT_BIT: u32 = 1 << 28;
/// Leaf 0xB/0x1F level types.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Turns `auto` into `host` or `minimal` for this host.
pub fn resolve_template(template: CpuTemplate) -> CpuTemplate {
    match template {
        CpuTemplate::Auto if crate::host::kvm_emulates_guest_kernel() => CpuTemplate::Minimal,
        CpuTemplate::Auto => CpuTemplate::Host,
        other => other,
    }
}

fn reg_mut(e: &mut kvm_cpuid_entry2, reg: Reg) -> &mut u32 {
    match reg {
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

/// Clears `features` wherever their leaf appears.
pub fn hide(entries: &mut [kvm_cpuid_entry2], features: &[Feature]) {
    for e in entries.iter_mut() {
        for feat in features {
            if e.function == feat.leaf && feat.subleaf.is_none_or(|s| s == e.index) {
                *reg_mut(e, feat.reg) &= !(1 << feat.bit);
            }
        }
    }
}

/// Whether a feature bit is set in these entries.
pub fn has(entries: &[kvm_cpuid_entry2], feat: &Feature) -> bool {
    entries.iter().any(|e| {
        e.function == feat.leaf
            && feat.subleaf.is_none_or(|s| s == e.index)
            && match feat.reg {
                Reg::Ebx => e.ebx,
                Reg::Ecx => e.ecx,
                Reg::Edx => e.edx,
            } & (1 << feat.bit)
                != 0
    })
}

/// Applies the template: for `minimal`, hide the features above and blank
/// leaf 0xD (XSAVE state components), so the guest never uses XSAVE.
pub fn apply_template(entries: &mut [kvm_cpuid_entry2], template: CpuTemplate) {
    if template != CpuTemplate::Minimal {
        return;
    }
    hide(entries, MINIMAL_HIDDEN);
    for e in entries.iter_mut().filter(|e| e.function == 0xd) {
        (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0);
    }
}

/// Bits needed to number `n` things (ceil(log2(n))).
fn bits_for(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Sets the per-vCPU topology: `vcpu_id` of `count` vCPUs, modelled as one
/// socket with one thread per core. APIC ID = vCPU index.
pub fn set_topology(entries: &mut [kvm_cpuid_entry2], vcpu_id: u8, count: u8) {
    let id = u32::from(vcpu_id);
    let n = u32::from(count);
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                // EBX[31:24] initial APIC ID, [23:16] logical processors,
                // [15:8] CLFLUSH line size in 8-byte units.
                e.ebx = (id << 24) | (n << 16) | (8 << 8);
                e.ecx |= HYPERVISOR_BIT;
                if n > 1 {
                    e.edx |= HTT_BIT;
                } else {
                    e.edx &= !HTT_BIT;
                }
            }
            4 => {
                // EAX[31:26]: cores per package - 1; keep the cache fields.
                e.eax = (e.eax & 0x03ff_ffff) | ((n - 1) << 26);
            }
            0xb | 0x1f => {
                e.edx = id; // x2APIC ID
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (LEVEL_TYPE_SMT << 8) | e.index;
                    }
                    1 => {
                        e.eax = bits_for(n);
                        e.ebx = n;
                        e.ecx = (LEVEL_TYPE_CORE << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x8000_0008 => {
                // AMD: ECX[7:0] cores - 1, [15:12] APIC ID size.
                e.ecx = (e.ecx & !0xf0ff) | (n - 1) | (bits_for(n) << 12);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, all: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: all,
            ebx: all,
            ecx: all,
            edx: all,
            ..Default::default()
        }
    }

    fn sample() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(1, 0, u32::MAX),
            entry(4, 0, u32::MAX),
            entry(7, 0, u32::MAX),
            entry(7, 1, u32::MAX),
            entry(0xb, 0, 0),
            entry(0xb, 1, 0),
            entry(0xb, 2, 0),
            entry(0xd, 0, u32::MAX),
            entry(0xd, 1, u32::MAX),
        ]
    }

    #[test]
    fn minimal_template_hides_every_listed_feature_and_leaf_0xd() {
        let mut e = sample();
        apply_template(&mut e, CpuTemplate::Minimal);
        for feat in MINIMAL_HIDDEN {
            assert!(!has(&e, feat), "{} still visible", feat.name);
        }
        assert!(
            e.iter()
                .filter(|x| x.function == 0xd)
                .all(|x| x.eax | x.ebx | x.ecx | x.edx == 0)
        );
        // Subleaf 1 of leaf 7 is a different set of bits: untouched.
        assert_eq!(e[3].ebx, u32::MAX);
        // Unrelated bits stay: SSE4.2 (leaf 1 ECX 20), SMEP (leaf 7 EBX 7).
        assert_ne!(e[0].ecx & (1 << 20), 0);
        assert_ne!(e[2].ebx & (1 << 7), 0);
    }

    #[test]
    fn host_template_changes_nothing() {
        let mut e = sample();
        apply_template(&mut e, CpuTemplate::Host);
        assert_eq!(e, sample());
    }

    #[test]
    fn topology_gives_each_vcpu_its_apic_id() {
        for (id, count) in [(0u8, 1u8), (1, 2), (3, 4), (5, 6)] {
            let mut e = sample();
            set_topology(&mut e, id, count);
            assert_eq!(e[0].ebx >> 24, u32::from(id));
            assert_eq!((e[0].ebx >> 16) & 0xff, u32::from(count));
            assert_ne!(e[0].ecx & HYPERVISOR_BIT, 0);
            assert_eq!(e[0].edx & HTT_BIT != 0, count > 1);
            assert_eq!(e[1].eax >> 26, u32::from(count) - 1);
            for leaf in &e[4..7] {
                assert_eq!(leaf.edx, u32::from(id));
            }
            assert_eq!(e[5].ebx, u32::from(count));
            assert_eq!((e[5].ecx >> 8) & 0xff, LEVEL_TYPE_CORE);
            assert!(1u32 << e[5].eax >= u32::from(count));
            assert_eq!((e[6].ecx >> 8) & 0xff, 0, "level 2 is the end marker");
        }
    }

    #[test]
    fn minimal_template_also_adds_kernel_args_for_each_hidden_linux_feature() {
        assert_eq!(template_kernel_args(CpuTemplate::Host), None);
        let args = template_kernel_args(CpuTemplate::Minimal).unwrap();
        assert!(args.contains("noxsave"));
        assert!(args.ends_with(" noreplace-smp"));
        // X86_FEATURE_* = word * 32 + bit, for the leaf-1 ECX (word 4),
        // leaf-7 EBX (word 9), leaf-7 ECX (word 16) and leaf-7 EDX (word
        // 18) features we hide.
        for (word, feat) in [
            (4, "cx16"),
            (4, "pcid"),
            (4, "popcnt"),
            (4, "rdrand"),
            (9, "fsgsbase"),
            (9, "invpcid"),
            (9, "rdseed"),
            (9, "smap"),
            (9, "erms"),
            (16, "rdpid"),
            (18, "fsrm"),
        ] {
            let f = MINIMAL_HIDDEN.iter().find(|f| f.name == feat).unwrap();
            let num = word * 32 + u32::from(f.bit);
            assert!(
                args.split(['=', ',', ' ']).any(|x| x == num.to_string()),
                "{feat} = {num}"
            );
        }
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(3), 2);
        assert_eq!(bits_for(4), 2);
        assert_eq!(bits_for(254), 8);
    }

    #[test]
    fn auto_resolves_to_a_concrete_template() {
        let t = resolve_template(CpuTemplate::Auto);
        assert_ne!(t, CpuTemplate::Auto);
        assert_eq!(
            t == CpuTemplate::Minimal,
            crate::host::kvm_emulates_guest_kernel()
        );
        assert_eq!(resolve_template(CpuTemplate::Host), CpuTemplate::Host);
    }
}
