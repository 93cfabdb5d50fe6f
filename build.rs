//! Builds the tiny guest kernel (kernels/tiny/) into `$OUT_DIR/tiny.elf`:
//! `gcc -c` of each source file (gcc runs the C preprocessor on a `.S`, so
//! the sources `#include` the shared headers), then `ld -T tiny.ld` of the
//! objects in the order listed. The VMM embeds the result with
//! `include_bytes!(env!("TINYVMM_TINY_GUEST"))`.
//!
//! Also builds the bundle guest's PID 1 (guest/init/, its own crate and
//! workspace) with a nested `cargo build --release` for
//! x86_64-unknown-linux-gnu with `+crt-static` (a static glibc binary: the
//! guest has no libraries), in `target/guest-init/`; `TINYVMM_GUEST_INIT`
//! names the result, which src/bundle/ embeds.

use std::path::Path;
use std::process::Command;

/// The guest's sources, one subject each (kernels/tiny/tiny.h has the map),
/// in reading order; `_start` is placed first by the linker script, not by
/// this order.
const SOURCES: [&str; 13] = [
    "kernels/tiny/boot.S",
    "kernels/tiny/tables.S",
    "kernels/tiny/cmdline.S",
    "kernels/tiny/serial.S",
    "kernels/tiny/virtio_mmio.S",
    "kernels/tiny/console.S",
    "kernels/tiny/syscall.S",
    "kernels/tiny/payload.S",
    "kernels/tiny/chaos.S",
    "kernels/tiny/chaos_virtio.S",
    "kernels/tiny/blk.S",
    "kernels/tiny/blk_check.S",
    "kernels/tiny/spin.S",
];
/// Included by the sources: not compiled on their own, but a change to one
/// must rebuild the guest.
const HEADERS: [&str; 2] = ["kernels/tiny/tiny.h", "kernels/tiny/virtio.h"];
const LINKER_SCRIPT: &str = "kernels/tiny/tiny.ld";

fn main() {
    for file in SOURCES.iter().chain(&HEADERS) {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-changed={LINKER_SCRIPT}");
    check_every_file_is_listed();

    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let elf = Path::new(&out_dir).join("tiny.elf");

    let mut objects = Vec::new();
    for source in SOURCES {
        let stem = Path::new(source).file_stem().expect("a file name");
        let object = Path::new(&out_dir).join(stem).with_extension("o");
        run(Command::new("gcc")
            .arg("-c")
            .arg(source)
            .arg("-o")
            .arg(&object));
        objects.push(object);
    }
    run(Command::new("ld")
        .args(["-T", LINKER_SCRIPT, "-nostdlib", "-static"])
        .args(["-z", "max-page-size=0x1000", "-z", "noexecstack"])
        .arg("-o")
        .arg(&elf)
        .args(&objects));

    println!("cargo:rustc-env=TINYVMM_TINY_GUEST={}", elf.display());

    build_guest_init(Path::new(&out_dir));
}

/// The nested build of guest/init. Its target directory is `target/guest-init`
/// (shared by every profile of the outer build; OUT_DIR is
/// `<target>/[<triple>/]<profile>/build/<package>/out`), else OUT_DIR.
fn build_guest_init(out_dir: &Path) {
    const MANIFEST: &str = "guest/init/Cargo.toml";
    const TRIPLE: &str = "x86_64-unknown-linux-gnu";
    for file in [MANIFEST, "guest/init/Cargo.lock", "guest/init/src"] {
        println!("cargo:rerun-if-changed={file}");
    }
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .filter(|t| t.join("CACHEDIR.TAG").exists() || t.join("debug").is_dir())
        .map_or_else(|| out_dir.join("guest-init"), |t| t.join("guest-init"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--target",
            TRIPLE,
        ])
        .args(["--manifest-path", MANIFEST])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's settings are not the guest's: no clippy or
        // coverage wrapper, no sanitizer flags, no outer target dir.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_TARGET_") {
            command.env_remove(key.as_ref());
        }
    }
    run(&mut command);
    let built = target_dir.join(TRIPLE).join("release/tinyvmm-guest-init");
    let init = out_dir.join("guest-init");
    std::fs::copy(&built, &init)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), init.display()));
    println!("cargo:rustc-env=TINYVMM_GUEST_INIT={}", init.display());
}

/// A `.S` missing from SOURCES would be left out of the link, and a `.h`
/// missing from HEADERS would not trigger a rebuild when edited: refuse to
/// build with either.
fn check_every_file_is_listed() {
    let dir = Path::new(LINKER_SCRIPT).parent().expect("a directory");
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let listed: &[&str] = match path.extension().and_then(|e| e.to_str()) {
            Some("S") => &SOURCES,
            Some("h") => &HEADERS,
            _ => continue,
        };
        if !listed.iter().any(|file| Path::new(file) == path) {
            panic!(
                "{} is not listed in build.rs (SOURCES for .S, HEADERS for .h)",
                path.display()
            );
        }
    }
}

/// Runs a build tool (gcc and ld for the tiny guest, cargo for the bundle
/// guest's init); any failure stops the build with a message naming it.
fn run(command: &mut Command) {
    let tool = command.get_program().to_string_lossy().into_owned();
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "building the tiny guest kernel (kernels/tiny/) or the bundle guest's init \
             (guest/init/) needs `{tool}`, which could not be run: {e}. Install gcc and \
             binutils (Debian: apt-get install gcc binutils)."
        )
    });
    if !output.status.success() {
        panic!(
            "building a guest (kernels/tiny/ or guest/init/): `{tool}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
