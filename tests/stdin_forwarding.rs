//! Host stdin into the guest (src/devices/stdin.rs, `StdinForwarder`): a
//! hand-assembled guest echoes every byte it receives on the 8250 back to
//! its output until it gets 0x04. The 8250 holds 64 bytes, so 20 000 bytes
//! arrive intact only if the forwarder stops reading stdin while the
//! device is full and resumes when the guest has drained it. Stdin is a
//! pipe (watched with epoll) and a regular file (epoll refuses those: a
//! pump thread feeds a pipe).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{TempFile, asm, elf_with_code, kvm_available, run};

const T: Duration = Duration::from_secs(120);

/// End of input for the echo guest.
const EOT: u8 = 0x04;

/// Echoes COM1 input to COM1 output until EOT (echoed too), then status 0.
fn echo_guest() -> Vec<u8> {
    let mut code = asm::WAIT_FOR_COM1_BYTE.to_vec(); // al = input; dx = 0x3f8
    let back = -(code.len() as i8 + 5); // to the start, from after `jne`
    code.extend_from_slice(&[
        0xee, //             out dx, al
        0x3c, EOT, //        cmp al, EOT
        0x75, back as u8, // jne start
    ]);
    code.extend_from_slice(&asm::exit_with(0));
    code
}

/// 20 000 printable bytes (no EOT), then EOT.
fn input() -> Vec<u8> {
    let mut x = common::rand_u64() | 1;
    let mut v: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b' ' + (x % 95) as u8
        })
        .collect();
    v.push(EOT);
    v
}

#[test]
fn stdin_pipe_reaches_the_guest_byte_exact_through_a_full_8250() {
    if !kvm_available("stdin_pipe_reaches_the_guest_byte_exact_through_a_full_8250") {
        return;
    }
    let kernel = TempFile::with("echo", &elf_with_code(&echo_guest()));
    let data = input();
    let out = run(
        &["run", "--kernel", kernel.path(), "--console", "serial"],
        &data,
        T,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len(), "{}", out.stderr);
    assert!(out.stdout.as_bytes() == data.as_slice(), "echo differs");
}

#[test]
fn stdin_from_a_regular_file_reaches_the_guest_byte_exact() {
    if !kvm_available("stdin_from_a_regular_file_reaches_the_guest_byte_exact") {
        return;
    }
    let kernel = TempFile::with("echo", &elf_with_code(&echo_guest()));
    let data = input();
    let file = TempFile::with("stdin", &data);
    let stdin = Stdio::from(std::fs::File::open(&file.0).unwrap());
    let args = ["run", "--kernel", kernel.path(), "--console", "serial"];
    let out = common::run_with_stdin(&args, stdin, T);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains("not forwarded"), "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len(), "{}", out.stderr);
    assert!(out.stdout.as_bytes() == data.as_slice(), "echo differs");
}
