//! Builds the tiny guest kernel (kernels/tiny/) into `$OUT_DIR/tiny.elf`:
//! `gcc -c` of each source (the kernel, tiny.S, and its virtio console
//! driver, virtio.S), then `ld -T tiny.ld`. The VMM embeds the result with
//! `include_bytes!(env!("TINYVMM_TINY_GUEST"))`.

use std::path::Path;
use std::process::Command;

const SOURCES: [&str; 2] = ["kernels/tiny/tiny.S", "kernels/tiny/virtio.S"];
const LINKER_SCRIPT: &str = "kernels/tiny/tiny.ld";

fn main() {
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed={LINKER_SCRIPT}");

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
}

/// Runs a build tool; any failure stops the build with a message naming it.
fn run(command: &mut Command) {
    let tool = command.get_program().to_string_lossy().into_owned();
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "building the tiny guest kernel (kernels/tiny/) needs `{tool}`, which could not be \
             run: {e}. Install gcc and binutils (Debian: apt-get install gcc binutils)."
        )
    });
    if !output.status.success() {
        panic!(
            "building the tiny guest kernel: `{tool}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
