//! The VM file descriptor: guest memory slots, the in-kernel interrupt
//! controllers and timer, and interrupt/notification eventfds.
//!
//! KVM API: <https://docs.kernel.org/virt/kvm/api.html> (sections 4.x name
//! each ioctl used here).

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The KVM API version every kernel since 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;
/// Three pages KVM needs for the real-mode TSS on Intel (KVM_SET_TSS_ADDR),
/// placed in the MMIO gap where no RAM is.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// A failed KVM call, naming which.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct KvmError {
    /// The call that failed.
    pub what: &'static str,
    /// The errno.
    #[source]
    pub source: kvm_ioctls::Error,
}

/// Wraps a KVM error with what we were doing.
pub fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError { what, source }
}

/// Opens `/dev/kvm` and checks the API version.
pub fn open_kvm() -> Result<Kvm, KvmError> {
    let kvm = Kvm::new().map_err(kvm_err("opening /dev/kvm (is KVM enabled and accessible?)"))?;
    if kvm.get_api_version() != KVM_API_VERSION {
        return Err(KvmError {
            what: "KVM_GET_API_VERSION is not 12",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        });
    }
    Ok(kvm)
}

/// Creates the VM: 1. the VM fd; 2. guest memory slots; 3. the TSS area;
/// 4. in-kernel PIC + IOAPIC + LAPICs; 5. the in-kernel PIT (i8254).
pub fn create_vm(kvm: &Kvm, mem: &GuestMemoryMmap) -> Result<VmFd, KvmError> {
    // 1. The VM.
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    // 2. Each guest RAM region becomes a memory slot backed by our mapping.
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .expect("a region's own start address is mapped");
        let slot_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: `host` is the start of a live mapping of `region.len()`
        // bytes owned by `mem`, which the `Vmm` keeps alive for as long as
        // the VM fd exists.
        unsafe { vm.set_user_memory_region(slot_desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    // 3. Intel VMX needs three pages for a real-mode TSS.
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    // 4. Interrupt controllers in the kernel: the guest's APIC traffic and
    // HLT never leave KVM.
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    // 5. The PIT, with a dummy speaker port so port 0x61 is KVM's too.
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
    Ok(vm)
}

/// The most vCPUs this KVM accepts (`KVM_CAP_MAX_VCPUS`).
pub fn max_vcpus(kvm: &Kvm) -> usize {
    kvm.get_max_vcpus()
}
