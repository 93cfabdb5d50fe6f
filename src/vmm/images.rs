//! The guest's images and command line: opening the kernel and initrd
//! (refusing what is not a regular file), loading them into guest memory,
//! and the full command line the kernel gets.

use std::fs::File;
use std::path::Path;

use vm_memory::GuestMemoryMmap;

use super::VmmError;
use crate::arch::x86_64::boot;
use crate::arch::x86_64::cpuid;
use crate::config::{KernelSource, VmConfig};
use crate::devices::virtio::block::disk::{DiskConfig, DiskImage};

/// Opens an image path, refusing what is not a regular file before opening
/// it (a FIFO would block, `/dev/zero` never ends).
pub fn open_image(path: &Path) -> Result<(File, u64), VmmError> {
    let err = |why: String| VmmError::ImageFile(path.to_path_buf(), why);
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.is_dir() {
        return Err(err("is a directory".into()));
    }
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    Ok((file, meta.len()))
}

/// Opens and locks a disk image; says so when its size is not whole sectors.
pub fn open_disk(config: &DiskConfig) -> Result<DiskImage, VmmError> {
    let disk = DiskImage::open(config)?;
    if disk.tail_ignored > 0 {
        crate::say!(
            "tinyvmm: --disk {}: the last {} bytes are not a whole 512-byte sector; the guest sees {} sectors",
            config.path.display(),
            disk.tail_ignored,
            disk.sectors()
        );
    }
    Ok(disk)
}

/// How error messages name the kernel.
pub fn kernel_name(source: &KernelSource) -> String {
    match source {
        KernelSource::File(p) => p.display().to_string(),
        KernelSource::Embedded => "embedded tiny guest".into(),
    }
}

/// Loads the kernel (ELF vmlinux or bzImage; the embedded tiny guest by default).
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    source: &KernelSource,
) -> Result<boot::LoadedKernel, VmmError> {
    let name = kernel_name(source);
    match source {
        KernelSource::File(path) => {
            let (mut file, _) = open_image(path)?;
            boot::load_kernel(mem, &mut file).map_err(|e| VmmError::Image(name, e))
        }
        KernelSource::Embedded => {
            let mut image = std::io::Cursor::new(crate::tiny_guest::ELF);
            boot::load_kernel(mem, &mut image).map_err(|e| VmmError::Image(name, e))
        }
    }
}

/// Loads `config.initrd`, if any, above the kernel.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    kernel: &boot::LoadedKernel,
    config: &VmConfig,
) -> Result<Option<boot::LoadedInitrd>, VmmError> {
    let Some(path) = &config.initrd else {
        return Ok(None);
    };
    let (mut file, size) = open_image(path)?;
    boot::load_initrd(mem, kernel, config.memory, &mut file, size)
        .map(Some)
        .map_err(|e| VmmError::Image(path.display().to_string(), e))
}

/// The base command line, plus what the devices need, plus the CPU
/// template's kernel options (once: `compare` may have put them there).
pub fn full_cmdline(config: &VmConfig, device_entries: &[String]) -> String {
    let mut cmdline = config.cmdline.trim().to_string();
    for entry in device_entries {
        cmdline.push(' ');
        cmdline.push_str(entry);
    }
    let template = cpuid::resolve_template(config.cpu_template);
    if let Some(args) = cpuid::template_kernel_args(template) {
        if !cmdline.contains(args) {
            cmdline.push(' ');
            cmdline.push_str(args);
        }
    }
    cmdline
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CpuTemplate;

    #[test]
    fn device_entries_and_template_options_are_appended_once() {
        let mut config = crate::config::VmConfig {
            cmdline: " console=hvc0 quiet ".into(),
            cpu_template: CpuTemplate::Minimal,
            ..crate::config::VmConfig::default()
        };
        let entries = ["virtio_mmio.device=4K@0xd0000000:5".to_string()];
        let c = full_cmdline(&config, &entries);
        assert!(
            c.starts_with("console=hvc0 quiet virtio_mmio.device=4K@0xd0000000:5 noxsave"),
            "{c}"
        );
        config.cmdline = format!("quiet {}", cpuid::MINIMAL_KERNEL_ARGS);
        let c = full_cmdline(&config, &[]);
        assert_eq!(c.matches("noxsave").count(), 1, "{c}");
        config.cpu_template = CpuTemplate::Host;
        config.cmdline = "quiet".into();
        assert_eq!(full_cmdline(&config, &[]), "quiet");
    }

    #[test]
    fn images_that_are_not_regular_files_are_refused() {
        let dir = open_image(Path::new("/")).unwrap_err().to_string();
        assert!(dir.contains("is a directory"), "{dir}");
        let dev = open_image(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(dev.contains("not a regular file"), "{dev}");
    }
}
