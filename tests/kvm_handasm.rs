//! A few hand-assembled guest instructions run through the whole VMM, like
//! the kvm-ioctls crate's example: PIO to the serial port, MMIO writes, the
//! boot markers, accesses that reach no device, and each way a VM ends
//! (reset, debug-exit, triple fault, an instruction KVM cannot run, a
//! signal). The VMM enters them in 64-bit mode with its identity map of the
//! first 1 GiB (see src/arch/x86_64/regs.rs).

mod common;

use std::time::Duration;

use common::{CODE_ADDR, Outcome, TempFile, asm, elf_with_code, kvm_available, run};

const T: Duration = Duration::from_secs(30);

/// Maps [3 GiB, 3 GiB + 2 MiB) so the MMIO gap (boot timer at 0xc000_0000)
/// is reachable: PDPT[3] -> a page directory at 0xc000 whose first entry is
/// a 2 MiB page at 0xc000_0000; then reload CR3 to flush the TLB.
const MAP_MMIO_GAP: &[u8] = &[
    0x48, 0xc7, 0xc0, 0x18, 0xa0, 0x00, 0x00, // mov rax, 0xa018      (&PDPT[3])
    0x48, 0xc7, 0x00, 0x03, 0xc0, 0x00, 0x00, // mov qword [rax], 0xc003 (PD at 0xc000, P|RW)
    0x48, 0xc7, 0xc0, 0x00, 0xc0, 0x00, 0x00, // mov rax, 0xc000      (&PD[0])
    0xb9, 0x83, 0x00, 0x00, 0xc0, //             mov ecx, 0xc0000083  (2 MiB page, PS|RW|P)
    0x48, 0x89, 0x08, //                         mov [rax], rcx
    0x0f, 0x20, 0xd8, //                         mov rax, cr3
    0x0f, 0x22, 0xd8, //                         mov cr3, rax
];

/// Prints "K\n" on COM1, marks user space on port 0x80, writes the boot
/// timer, writes and reads an address with no RAM and no device (the read
/// returns all-ones, which we print), all through VM exits.
const WORK: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8     (COM1 THR)
    0xb0, b'K', //             mov al, 'K'
    0xee, //                   out dx, al        -> KVM_EXIT_IO, serial writes 'K'
    0xb0, b'\n', //            mov al, '\n'
    0xee,  //                   out dx, al
    0xb0, 0x41, //             mov al, 0x41
    0xe6, 0x80, //             out 0x80, al      -> boot marker "user space"
    0xb8, 0x00, 0x00, 0x00, 0xc0, // mov eax, 0xc0000000
    0xc6, 0x00, 0x7b, //       mov byte [rax], 123 -> KVM_EXIT_MMIO, boot timer
    0xb8, 0x00, 0x00, 0x00, 0x10, // mov eax, 0x10000000 (256 MiB: no RAM, no device)
    0xc6, 0x00, 0x01, //       mov byte [rax], 1 -> unmapped MMIO write, ignored
    0x8a, 0x00, //             mov al, [rax]     -> unmapped MMIO read: 0xff
    0xee, //                   out dx, al        -> prints 0xff
];

/// i8042 command 0xfe: CPU reset -> clean exit 0.
const RESET: &[u8] = &[0xb0, 0xfe, 0xe6, 0x64]; // mov al, 0xfe; out 0x64, al
/// Debug-exit port 0xf4 with status 42.
const EXIT_42: &[u8] = &[0xb0, 0x2a, 0xe6, 0xf4]; // mov al, 42; out 0xf4, al
/// `ud2` with an empty IDT: #UD -> #GP -> #DF -> triple fault.
const UD2: &[u8] = &[0x0f, 0x0b];
/// If anything above fails to end the VM: halt, then spin.
const STOP: &[u8] = &[0xf4, 0xeb, 0xfe]; // hlt; jmp $

fn boot(parts: &[&[u8]], extra: &[&str]) -> Outcome {
    let code: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let kernel = TempFile::with("handasm", &elf_with_code(&code));
    let mut args = vec!["run", "--kernel", kernel.path()];
    args.extend_from_slice(extra);
    run(&args, b"", T)
}

#[test]
fn serial_markers_and_mmio_then_reset_exits_0() {
    if !kvm_available("serial_markers_and_mmio_then_reset_exits_0") {
        return;
    }
    let out = boot(
        &[MAP_MMIO_GAP, WORK, RESET, STOP],
        &["--stats", "--boot-timer"],
    );
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.as_bytes()[..2], *b"K\n");
    assert!(
        out.stdout.contains('\u{fffd}'),
        "the all-ones read came back: {:?}",
        out.stdout
    );
    for want in [
        "port 0x03f8",
        "port 0x0080",
        "port 0x0064",
        "mmio 0xc0000000",
        "mmio 0x10000000",
        "2 Mmio accesses reached no device",
        "boot marker: user space (port 0x80 = 0x41)",
        "boot marker: boot timer (123 at 0xc0000000)",
    ] {
        assert!(
            out.stderr.contains(want),
            "missing {want:?} in: {}",
            out.stderr
        );
    }
}

#[test]
fn debug_exit_passes_the_guest_status_through() {
    if !kvm_available("debug_exit_passes_the_guest_status_through") {
        return;
    }
    let out = boot(&[EXIT_42, STOP], &[]);
    assert_eq!(out.code, Some(42), "stderr: {}", out.stderr);
}

#[test]
fn triple_fault_exits_121() {
    if !kvm_available("triple_fault_exits_121") {
        return;
    }
    let out = boot(&[UD2, STOP], &[]);
    assert_eq!(out.code, Some(121), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("triple fault"), "{}", out.stderr);
}

/// Reads the unmapped port 0x510 (32 and 8 bits wide), writes it, then
/// prints on COM1 the byte read and 'A' if the 32-bit read gave all ones,
/// and ends with status 0: the guest ran on after each access.
const UNMAPPED_PORTS: &[u8] = &[
    0x66, 0xba, 0x10, 0x05, // mov dx, 0x510   (no device there)
    0xed, //                   in eax, dx      -> 0xffff_ffff
    0x89, 0xc3, //             mov ebx, eax
    0xec, //                   in al, dx       -> 0xff
    0xee, //                   out dx, al      -> dropped
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xee, //                   out dx, al      -> prints 0xff
    0xff, 0xc3, //             inc ebx         (all ones + 1 = 0)
    0x88, 0xd8, //             mov al, bl
    0x04, b'A', //             add al, 'A'
    0xee, //                   out dx, al      -> 'A' iff all ones
    0xb0, b'\n', 0xee, //      mov al, '\n'; out dx, al
];

#[test]
fn unmapped_ports_read_all_ones_are_counted_and_the_guest_continues() {
    if !kvm_available("unmapped_ports_read_all_ones_are_counted_and_the_guest_continues") {
        return;
    }
    let exit = asm::exit_with(0);
    let out = boot(
        &[UNMAPPED_PORTS, &exit],
        &["--console", "serial", "--stats"],
    );
    assert_eq!(
        out.code,
        Some(0),
        "the guest ran to its end: {}",
        out.stderr
    );
    assert_eq!(
        out.stdout, "\u{fffd}A\n",
        "reads of port 0x510 gave all ones"
    );
    let count = |dir: &str| -> Option<u64> {
        out.stderr
            .lines()
            .find(|l| l.contains("port 0x0510") && l.contains(dir))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    assert_eq!(count("Read"), Some(2), "{}", out.stderr);
    assert_eq!(count("Write"), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("3 Pio accesses reached no device (ignored)"),
        "{}",
        out.stderr
    );
}

/// Sets CR4.OSFXSR (SSE on), then `pshufb xmm0, [0x1000_0000]`: an SSSE3
/// instruction whose operand is an address with no RAM (128 MiB guest), so
/// KVM must emulate the access, and its instruction emulator has no
/// SSSE3: KVM_EXIT_INTERNAL_ERROR (emulation failure) with the bytes. On
/// kvm_pvm every guest kernel-mode instruction goes through that emulator;
/// on VT-x/SVM the access to a GPA with no memory slot does.
const PSHUFB_ON_MMIO: &[u8] = &[
    0x0f, 0x20, 0xe0, //             mov rax, cr4
    0x0d, 0x00, 0x02, 0x00, 0x00, // or eax, 0x200   (OSFXSR)
    0x0f, 0x22, 0xe0, //             mov cr4, rax
    0xb8, 0x00, 0x00, 0x00, 0x10, // mov eax, 0x10000000
    0x66, 0x0f, 0x38, 0x00, 0x00, // pshufb xmm0, [rax]   (at CODE_ADDR + 16)
];
/// Jumps to 0x1000_0000, where there is no RAM: nothing to fetch.
const JUMP_NOWHERE: &[u8] = &[0xb8, 0x00, 0x00, 0x00, 0x10, 0xff, 0xe0]; // mov eax, 0x10000000; jmp rax

#[test]
fn an_instruction_kvm_cannot_run_exits_122_with_rip_and_bytes() {
    let test = "an_instruction_kvm_cannot_run_exits_122_with_rip_and_bytes";
    if !kvm_available(test) {
        return;
    }
    // Status 0 after the instruction: KVM ran it after all.
    let out = boot(&[PSHUFB_ON_MMIO, &asm::exit_with(0)], &[]);
    if out.code == Some(0) {
        common::skip::not_shown_here(
            test,
            "this host's KVM emulated pshufb on MMIO, so no instruction bytes to check; only the RIP case below ran",
        );
    } else {
        assert_eq!(out.code, Some(122), "stderr: {}", out.stderr);
        let rip = format!("at RIP {:#x}", CODE_ADDR + 16);
        for want in [
            "KVM could not run the guest: KVM_EXIT_INTERNAL_ERROR",
            "instruction emulation failed",
            rip.as_str(),
            "instruction bytes: 66 0f 38 00 00",
        ] {
            assert!(
                out.stderr.contains(want),
                "missing {want:?}: {}",
                out.stderr
            );
        }
    }
    // Executing where there is no memory: no bytes to show, but the RIP.
    let out = boot(&[JUMP_NOWHERE, &asm::exit_with(0)], &[]);
    assert_eq!(out.code, Some(122), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("KVM_EXIT_INTERNAL_ERROR"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("at RIP 0x10000000"), "{}", out.stderr);
}

#[test]
fn second_vcpu_waits_for_sipi_and_the_vm_still_ends() {
    if !kvm_available("second_vcpu_waits_for_sipi_and_the_vm_still_ends") {
        return;
    }
    let out = boot(&[EXIT_42, STOP], &["--vcpus", "2"]);
    assert_eq!(out.code, Some(42), "stderr: {}", out.stderr);
}

#[test]
fn sigterm_and_sigint_end_a_spinning_guest_cleanly() {
    if !kvm_available("sigterm_and_sigint_end_a_spinning_guest_cleanly") {
        return;
    }
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let kernel = TempFile::with("spin", &elf_with_code(&[0xeb, 0xfe])); // jmp $
        let mut child = std::process::Command::new(common::tinyvmm())
            .args(["run", "--kernel", kernel.path(), "--vcpus", "2"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "not ended within 2 s of signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(code), "signal {sig}");
    }
}
