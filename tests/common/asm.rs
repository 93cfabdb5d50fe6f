//! Hand-assembled x86_64 snippets the guests of several tests share, each
//! with its assembly beside the bytes. The VMM enters them in 64-bit mode
//! with its identity map of the first 1 GiB (src/arch/x86_64/regs.rs).

/// Waits until COM1 has a byte (LSR bit 0, data ready) and reads it into
/// `al`: the guest blocks here until the test sends it input.
pub const WAIT_FOR_COM1_BYTE: &[u8] = &[
    0x66, 0xba, 0xfd, 0x03, // mov dx, 0x3fd   (COM1 line status)
    0xec, //                   in al, dx
    0xa8, 0x01, //             test al, 1      (data ready)
    0x74, 0xfb, //             jz -5           (back to `in`)
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8   (COM1 receive buffer)
    0xec, //                   in al, dx
];

/// `out 0xf4, al` with `al = status`: the debug-exit device ends the VM
/// and tinyvmm exits with `status`; then halt, then spin.
pub fn exit_with(status: u8) -> Vec<u8> {
    vec![0xb0, status, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe]
}

/// Halts forever with interrupts off: the vCPU sleeps in KVM, costing no
/// CPU time (`cli; hlt; jmp -3`).
pub const HALT_FOREVER: &[u8] = &[0xfa, 0xf4, 0xeb, 0xfd];

/// Writes `text` to COM1 with `rep outsb`. `at` is the guest address the
/// snippet itself will be loaded at (the text follows the code).
pub fn print_com1(text: &[u8], at: u64) -> Vec<u8> {
    // mov esi, imm32; mov ecx, imm32; mov dx, 0x3f8; rep outsb; jmp over text
    let code_len = 5 + 5 + 4 + 2 + 2;
    let text_at = at + code_len as u64;
    let mut v = vec![0xbe];
    v.extend_from_slice(&(text_at as u32).to_le_bytes());
    v.push(0xb9);
    v.extend_from_slice(&(text.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0x66, 0xba, 0xf8, 0x03, 0xf3, 0x6e]);
    assert!(text.len() < 128);
    v.extend_from_slice(&[0xeb, text.len() as u8]);
    v.extend_from_slice(text);
    v
}
