//! Per-vCPU set-up seen from inside a guest: a hand-assembled boot vCPU
//! starts another vCPU the way an OS does (INIT and SIPI through its local
//! APIC), the started vCPU runs and reads its own APIC ID through CPUID;
//! and the two CPU templates give the guest different CPUID.

mod common;

use std::time::Duration;

use common::{CODE_ADDR, TempFile, asm, elf_with_code, kvm_available, run};

const T: Duration = Duration::from_secs(60);

/// Guest-physical page the started vCPU begins at (SIPI vector 0x10).
const SIPI_PAGE: u32 = 0x1_0000;

/// `mov eax, 1; cpuid; shr ebx, 24; mov al, bl; add al, '0'` then print
/// it and a newline on COM1 (64-bit code): the initial APIC ID that
/// CPUID.1:EBX[31:24] gives this vCPU, as a digit.
const PRINT_APIC_ID: &[u8] = &[
    0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x0f, 0xa2, //                   cpuid
    0xc1, 0xeb, 0x18, //             shr ebx, 24
    0x88, 0xd8, //                   mov al, bl
    0x04, b'0', //                   add al, '0'
    0x66, 0xba, 0xf8, 0x03, //       mov dx, 0x3f8
    0xee, //                         out dx, al
    0xb0, b'\n', 0xee, //            mov al, '\n'; out dx, al
];

/// What the started vCPU runs, in real mode at CS:IP = 0x1000:0 (16-bit
/// code): the same APIC ID print, then debug-exit status 42, which nothing
/// else in this guest writes.
const AP_CODE: &[u8] = &[
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x0f, 0xa2, //                         cpuid
    0x66, 0xc1, 0xeb, 0x18, //             shr ebx, 24
    0x88, 0xd8, //                         mov al, bl
    0x04, b'0', //                         add al, '0'
    0xba, 0xf8, 0x03, //                   mov dx, 0x3f8
    0xee, //                               out dx, al
    0xb0, b'\n', 0xee, //                  mov al, '\n'; out dx, al
    0xb0, 42, 0xe6, 0xf4, //               mov al, 42; out 0xf4, al
    0xf4, 0xeb, 0xfe, //                   hlt; jmp $
];

/// The boot vCPU: prints its APIC ID, maps the local APIC (0xfee0_0000,
/// above the identity-mapped first GiB) with a 2 MiB page, copies
/// `AP_CODE` to `SIPI_PAGE`, enables its APIC and sends INIT then two
/// SIPIs (vector 0x10) to APIC ID `target`. Then it waits ~10^10 TSC
/// cycles and ends with status 7: "the other vCPU never ran".
fn smp_guest(target: u8) -> Vec<u8> {
    let mut code = PRINT_APIC_ID.to_vec();
    code.extend_from_slice(&[
        0x48, 0xc7, 0xc0, 0x18, 0xa0, 0x00, 0x00, // mov rax, 0xa018 (&PDPT[3])
        0x48, 0xc7, 0x00, 0x03, 0xc0, 0x00, 0x00, // mov qword [rax], 0xc003 (PD at 0xc000)
        0x48, 0xc7, 0xc0, 0xb8, 0xcf, 0x00, 0x00, // mov rax, 0xcfb8 (&PD[0x1f7]: 0xfee0_0000)
        0xb9, 0x83, 0x00, 0xe0, 0xfe, //             mov ecx, 0xfee00083 (2 MiB page, P|RW|PS)
        0x48, 0x89, 0x08, //                         mov [rax], rcx
        0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8, //       mov rax, cr3; mov cr3, rax
    ]);
    let copy = code.len();
    code.push(0xbe); // mov esi, <AP_CODE's address, patched below>
    code.extend_from_slice(&[0; 4]);
    code.push(0xbf); // mov edi, SIPI_PAGE
    code.extend_from_slice(&SIPI_PAGE.to_le_bytes());
    code.push(0xb9); // mov ecx, len
    code.extend_from_slice(&(AP_CODE.len() as u32).to_le_bytes());
    code.extend_from_slice(&[0xf3, 0xa4]); // rep movsb
    let icr_high = u32::from(target) << 24;
    let vector = (SIPI_PAGE >> 12) as u8;
    code.extend_from_slice(&[
        0xb8, 0xf0, 0x00, 0xe0, 0xfe, // mov eax, 0xfee000f0 (spurious vector register)
        0xc7, 0x00, 0xff, 0x01, 0x00, 0x00, // mov dword [rax], 0x1ff (APIC enabled)
        0xb8, 0x10, 0x03, 0xe0, 0xfe, // mov eax, 0xfee00310 (ICR high: destination)
        0xc7, 0x00, // mov dword [rax], target << 24
    ]);
    code.extend_from_slice(&icr_high.to_le_bytes());
    code.extend_from_slice(&[
        0xb8, 0x00, 0x03, 0xe0, 0xfe, // mov eax, 0xfee00300 (ICR low: sends)
        0xc7, 0x00, 0x00, 0x45, 0x00, 0x00, // mov dword [rax], 0x4500 (INIT, assert)
        0xc7, 0x00, vector, 0x46, 0x00, 0x00, // mov dword [rax], 0x4600 | vector (SIPI)
        0xc7, 0x00, vector, 0x46, 0x00, 0x00, // the second SIPI, as the MP spec says
        // Deadline: rbx = TSC + 10^10.
        0x0f, 0x31, //                   rdtsc
        0x48, 0xc1, 0xe2, 0x20, //       shl rdx, 32
        0x48, 0x09, 0xd0, //             or rax, rdx
        0x48, 0x89, 0xc3, //             mov rbx, rax
        0x48, 0xb9, 0x00, 0xe4, 0x0b, 0x54, 0x02, 0x00, 0x00, 0x00, // mov rcx, 10^10
        0x48, 0x01, 0xcb, //             add rbx, rcx
        0xf3, 0x90, //                   pause
        0x0f, 0x31, //                   rdtsc
        0x48, 0xc1, 0xe2, 0x20, //       shl rdx, 32
        0x48, 0x09, 0xd0, //             or rax, rdx
        0x48, 0x39, 0xd8, //             cmp rax, rbx
        0x72, 0xf0, //                   jb -16 (back to pause)
    ]);
    code.extend_from_slice(&asm::exit_with(7));
    let ap_at = CODE_ADDR as u32 + code.len() as u32;
    code[copy + 1..copy + 5].copy_from_slice(&ap_at.to_le_bytes());
    code.extend_from_slice(AP_CODE);
    code
}

#[test]
fn the_boot_vcpu_starts_another_with_init_sipi_and_it_runs_with_its_own_apic_id() {
    if !kvm_available(
        "the_boot_vcpu_starts_another_with_init_sipi_and_it_runs_with_its_own_apic_id",
    ) {
        return;
    }
    for (vcpus, target) in [(2u8, 1u8), (4, 3)] {
        let kernel = TempFile::with("smp", &elf_with_code(&smp_guest(target)));
        let n = vcpus.to_string();
        let args = [
            "run",
            "--kernel",
            kernel.path(),
            "--console",
            "serial",
            "--vcpus",
            &n,
        ];
        let out = run(&args, b"", T);
        assert_ne!(
            out.code,
            Some(7),
            "--vcpus {vcpus}: vCPU {target} never ran after INIT/SIPI: {}{}",
            out.stdout,
            out.stderr
        );
        // Status 42 is written only by the started vCPU's real-mode code.
        assert_eq!(out.code, Some(42), "--vcpus {vcpus}: {}", out.stderr);
        assert_eq!(
            out.stdout,
            format!("0\n{target}\n"),
            "--vcpus {vcpus}: each vCPU's CPUID gives its own APIC ID"
        );
    }
}

/// Features the `minimal` template removes: (CPUID leaf, register, bit, name).
const MINIMAL_REMOVES: [(u32, char, u32, &str); 9] = [
    (1, 'c', 13, "CX16"),
    (1, 'c', 17, "PCID"),
    (1, 'c', 23, "POPCNT"),
    (1, 'c', 26, "XSAVE"),
    (1, 'c', 30, "RDRAND"),
    (7, 'b', 0, "FSGSBASE"),
    (7, 'b', 10, "INVPCID"),
    (7, 'b', 18, "RDSEED"),
    (7, 'b', 20, "SMAP"),
];

/// Runs CPUID leaf 1 and leaf 7 (subleaf 0) in guest kernel mode and
/// prints each bit of `MINIMAL_REMOVES` as '0' or '1' on COM1.
fn cpuid_guest() -> Vec<u8> {
    let mut code = vec![
        0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
        0x0f, 0xa2, //                   cpuid
        0x89, 0xce, //                   mov esi, ecx
        0xb8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
        0x31, 0xc9, //                   xor ecx, ecx
        0x0f, 0xa2, //                   cpuid
        0x89, 0xdf, //                   mov edi, ebx
        0x66, 0xba, 0xf8, 0x03, //       mov dx, 0x3f8
    ];
    for (_, reg, bit, _) in MINIMAL_REMOVES {
        let mov = if reg == 'c' { 0xf0 } else { 0xf8 }; // mov eax, esi / edi
        code.extend_from_slice(&[
            0x89, mov, //             mov eax, esi|edi
            0xc1, 0xe8, bit as u8, // shr eax, bit
            0x24, 0x01, //            and al, 1
            0x04, b'0', //            add al, '0'
            0xee, //                  out dx, al
        ]);
    }
    code.extend_from_slice(&[0xb0, b'\n', 0xee]);
    code.extend_from_slice(&asm::exit_with(0));
    code
}

/// The bits of `MINIMAL_REMOVES` in KVM_GET_SUPPORTED_CPUID, as the guest prints them.
fn supported_bits() -> String {
    let kvm = kvm_ioctls::Kvm::new().unwrap();
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap();
    MINIMAL_REMOVES
        .iter()
        .map(|&(leaf, reg, bit, _)| {
            let e = cpuid
                .as_slice()
                .iter()
                .find(|e| e.function == leaf && e.index == 0);
            let v = e.map_or(0, |e| if reg == 'c' { e.ecx } else { e.ebx });
            if v >> bit & 1 == 1 { '1' } else { '0' }
        })
        .collect()
}

#[test]
fn cpu_templates_give_the_guest_different_cpuid() {
    let test = "cpu_templates_give_the_guest_different_cpuid";
    if !kvm_available(test) {
        return;
    }
    let kernel = TempFile::with("cpuid", &elf_with_code(&cpuid_guest()));
    let seen = |template: &str| -> String {
        let args = [
            "run",
            "--kernel",
            kernel.path(),
            "--console",
            "serial",
            "--cpu-template",
            template,
        ];
        let out = run(&args, b"", T);
        assert_eq!(out.code, Some(0), "{template}: {}", out.stderr);
        out.stdout.trim_end().to_string()
    };
    let supported = supported_bits();
    let host = seen("host");
    let minimal = seen("minimal");
    // Where KVM emulates guest kernel mode (kvm_pvm), the guest's
    // kernel-mode CPUID shows some of the host CPU's own bits whatever
    // KVM_SET_CPUID2 said; there, those bits are reported, not asserted.
    let pvm = tinyvmm::host::kvm_emulates_guest_kernel();
    let mut ignored = Vec::new();
    let mut told_apart = Vec::new();
    for (i, &(leaf, reg, bit, name)) in MINIMAL_REMOVES.iter().enumerate() {
        let [s, h, m] = [&supported, &host, &minimal].map(|v| v.as_bytes()[i]);
        let what = format!(
            "{name} (CPUID.{leaf}:E{}X[{bit}])",
            reg.to_ascii_uppercase()
        );
        if h != s || m != b'0' {
            assert!(
                pvm,
                "{what}: KVM supports {}, the guest saw {} with `host` and {} with `minimal` (want {0} and 0)",
                s as char, h as char, m as char
            );
            ignored.push(format!(
                "{what}: supported {}, host {}, minimal {}",
                s as char, h as char, m as char
            ));
        }
        if h == b'1' && m == b'0' {
            told_apart.push(name);
        }
    }
    if !ignored.is_empty() {
        common::skip::not_shown_here(
            test,
            &format!(
                "this KVM (kvm_pvm) ignores KVM_SET_CPUID2 for kernel-mode CPUID bits: {}",
                ignored.join("; ")
            ),
        );
    }
    if told_apart.is_empty() {
        assert!(
            !supported.contains('1'),
            "the templates look alike to the guest: host {host}, minimal {minimal}"
        );
        common::skip::not_shown_here(
            test,
            "KVM here supports none of the features `minimal` removes, so both templates look alike",
        );
    }
}
