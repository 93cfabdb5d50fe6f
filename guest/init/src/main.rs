//! PID 1 of a tinyvmm micro-VM running an OCI bundle (`tinyvmm run
//! --bundle`, docs/bundle.md). From the initramfs the VMM generated
//! (this binary as /init, the bundle's settings as /tinyvmm/settings):
//! 1. mounts /proc and devtmpfs, opens the console ports hvc0 and hvc1;
//! 2. writes the user-space boot marker (123 at 0xC000_0000): the VMM then
//!    opens its control channel (hvc1's input);
//! 3. builds the container's root from /dev/vda (root.rs) and switches to it;
//! 4. sets the hostname and sysctls, starts the workload (process.rs),
//!    relays its output, forwards signals, reaps orphans;
//! 5. syncs, then writes the workload's status (signal N: 128+N) to the
//!    debug-exit register at 0xC000_1000, which ends the VM.
//!
//! Any failure before the workload starts is one `tinyvmm: guest init:`
//! line on stderr (hvc1, else the kernel log) and status 1, as crun's own
//! failures in `crun run`.

mod exec;
mod process;
mod root;
mod settings;
mod sys;

use std::io::Write;

/// Guest-physical page of the boot marker; the debug-exit register is the next page.
const MMIO_BASE: i64 = 0xc000_0000;
const BOOT_MARKER: u8 = 123;

fn main() {
    // /dev/mem is there once devtmpfs is mounted.
    let early = root::mount_early();
    let regs = map_registers();
    let mut stderr: Option<std::fs::File> = None;
    let status = match early.and_then(|()| setup_and_run(regs, &mut stderr)) {
        Ok(status) => status,
        Err(e) => {
            let line = format!("tinyvmm: guest init: {e}\n");
            match stderr.as_mut() {
                Some(f) => {
                    let _ = f.write_all(line.as_bytes());
                    // SAFETY: a valid fd; waits until the port took the line.
                    unsafe { libc::tcdrain(std::os::fd::AsRawFd::as_raw_fd(f)) };
                }
                None => {
                    let _ = std::fs::write("/dev/kmsg", &line);
                }
            }
            1
        }
    };
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    finish(regs, status)
}

fn setup_and_run(regs: *mut u8, stderr: &mut Option<std::fs::File>) -> Result<u8, String> {
    let settings = settings::parse(
        &std::fs::read("/tinyvmm/settings").map_err(|e| format!("/tinyvmm/settings: {e}"))?,
    )?;
    let consoles = process::open_consoles(settings.terminal)?;
    *stderr = Some(consoles.err.try_clone().map_err(|e| e.to_string())?);
    if !regs.is_null() {
        // SAFETY: `regs` maps the boot-marker page (map_registers); a
        // volatile byte store is the register write.
        unsafe { regs.write_volatile(BOOT_MARKER) };
    }
    process::keep_proc();
    root::build(&settings)?;
    root::switch()?;
    if let Some(h) = &settings.hostname {
        // SAFETY: pointer and length of a live string.
        let r = unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) };
        sys::check(r, "sethostname")?;
    }
    for (key, value) in &settings.sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| format!("sysctl {key}: {e}"))?;
    }
    process::run(&settings, consoles)
}

/// Maps the boot-marker and debug-exit pages through /dev/mem (null when
/// that fails: the VM then ends through the reboot fallback).
fn map_registers() -> *mut u8 {
    let Ok(mem) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")
    else {
        return std::ptr::null_mut();
    };
    // SAFETY: a new shared mapping of two device pages of /dev/mem; the fd
    // may be closed afterwards, the mapping stays.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            0x2000,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&mem),
            MMIO_BASE,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Hands `status` to the VMM; never returns (PID 1 must not exit).
fn finish(regs: *mut u8, status: u8) -> ! {
    if !regs.is_null() {
        // SAFETY: the second mapped page is the debug-exit register.
        unsafe { regs.add(0x1000).write_volatile(status) };
    }
    // SAFETY: reboot(2) with a valid command: the fallback ending.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    loop {
        // SAFETY: pause(2) takes no arguments.
        unsafe { libc::pause() };
    }
}
