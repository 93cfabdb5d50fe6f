//! The VM: its file descriptor and the guest memory its slots point into,
//! owned together (`Vm`), plus the in-kernel interrupt controllers and timer.
//!
//! KVM API: <https://docs.kernel.org/virt/kvm/api.html> (sections 4.x name
//! each ioctl used here).

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::layout;

/// The KVM API version every kernel since 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;

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

/// A VM: the VM fd together with the guest memory its slots point into.
///
/// Owning both is what makes the memory slots sound: the slots are
/// registered here, from mappings this struct owns, and `fd` is declared
/// (so dropped) before `memory`. vCPUs are created through `create_vcpu`
/// and get their own handle on the memory (`GuestMemoryMmap` shares its
/// regions by reference count), so no KVM object that can reach the slots
/// outlives the mappings.
pub struct Vm {
    // Field order is drop order: the fd (and with it the slots) first.
    fd: VmFd,
    kvm: Kvm,
    memory: GuestMemoryMmap,
}

impl Vm {
    /// Creates the VM: 1. the VM fd; 2. guest memory slots; 3. the TSS
    /// area; 4. in-kernel PIC + IOAPIC + LAPICs; 5. the in-kernel PIT (i8254).
    pub fn new(kvm: Kvm, memory: GuestMemoryMmap) -> Result<Vm, KvmError> {
        // 1. The VM.
        let fd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        // 2. Each guest RAM region becomes a memory slot backed by our mapping.
        for (slot, region) in memory.iter().enumerate() {
            let slot_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: `region.as_ptr()` is the start of a live mapping of
            // `region.len()` bytes held by `memory`, which this function
            // moves into the returned `Vm` beside `fd`; on an early return
            // both are dropped, the fd first. The `Vm` drops `fd` before
            // `memory`, and vCPU fds carry their own reference on the
            // regions (`create_vcpu`), so KVM never sees the slot after its
            // mapping is gone.
            unsafe { fd.set_user_memory_region(slot_desc) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        // 3. Intel VMX needs three pages for a real-mode TSS.
        fd.set_tss_address(layout::KVM_TSS_ADDRESS as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        // 4. Interrupt controllers in the kernel: the guest's APIC traffic and
        // HLT never leave KVM.
        fd.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        // 5. The PIT, with a dummy speaker port so port 0x61 is KVM's too.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        // 6. Guest RAM is never copied into a child (MADV_DONTFORK, as
        //    QEMU does); the flag also keeps the kernel from merging it
        //    with our own anonymous mappings, so it stays recognisable in
        //    /proc/<pid>/smaps (`dc`) for a measurement from outside.
        for region in memory.iter() {
            // SAFETY: madvise on a mapping `memory` owns, for its exact
            // range; MADV_DONTFORK changes only what fork(2) does.
            unsafe {
                libc::madvise(
                    region.as_ptr().cast(),
                    region.len() as usize,
                    libc::MADV_DONTFORK,
                )
            };
        }
        Ok(Vm { fd, kvm, memory })
    }

    /// The VM fd, for irqfds, ioeventfds and vCPU creation.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// The `/dev/kvm` handle the VM came from (CPUID, MSR lists).
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// Guest RAM. Clones share the same mappings.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Creates vCPU `id`: its fd, and a handle on guest memory that keeps
    /// the mappings alive as long as the vCPU (see the type's doc).
    pub fn create_vcpu(&self, id: u8) -> Result<(VcpuFd, GuestMemoryMmap), KvmError> {
        let fd = self
            .fd
            .create_vcpu(id.into())
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        Ok((fd, self.memory.clone()))
    }

    /// Host virtual address ranges `[start, end)` backing guest RAM.
    pub fn guest_host_ranges(&self) -> Vec<(u64, u64)> {
        self.memory
            .iter()
            .map(|r| {
                let host = r.as_ptr() as u64;
                (host, host + r.len())
            })
            .collect()
    }
}

/// The most vCPUs this KVM accepts (`KVM_CAP_MAX_VCPUS`).
pub fn max_vcpus(kvm: &Kvm) -> usize {
    kvm.get_max_vcpus()
}
