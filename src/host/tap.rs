//! Host tap devices for virtio-net: open an existing tap by name
//! (Firecracker's model) or create a non-persistent one and give its host
//! side an IPv4 address, then move frames with a virtio-net header in
//! front (IFF_VNET_HDR, TUNSETVNETHDRSZ) and let the kernel take checksum
//! and segmentation work the guest negotiated (TUNSETOFFLOAD).
//!
//! Written here rather than taken from a crate: rust-vmm publishes no tap
//! crate (Firecracker and Cloud Hypervisor each keep their own), and the
//! general tun crates do not expose the vnet-header and offload ioctls a
//! virtio device needs. It is a handful of ioctls on /dev/net/tun and on an
//! AF_INET datagram socket (netdevice(7), Documentation/networking/tuntap.rst).
//!
//! A tap created here is not persistent: the kernel deletes it, and its
//! address with it, when its last fd is closed, whatever capabilities the
//! process has by then.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// `struct virtio_net_hdr_v1`'s size: the header the tap puts in front of
/// each frame (and expects in front of each frame written).
pub const VNET_HDR_LEN: usize = 12;
/// The name the kernel numbers when `--net ip=` creates a tap.
pub const CREATED_NAME_TEMPLATE: &str = "tvmm%d";

/// An open tap queue.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

/// An `ifreq` for `name`, checked to fit IFNAMSIZ with its NUL.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name:?} is not an interface name (1 to {} bytes, no NUL)",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is plain data (a name array and a union of integers,
    // sockaddrs and a pointer); all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn name_of(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An AF_INET datagram socket: the handle netdevice(7) ioctls go through.
/// It belongs to this process's network namespace.
fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: fd was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether an interface called `name` exists in this network namespace
/// (SIOCGIFINDEX; /sys/class/net may show another namespace's).
pub fn interface_exists(name: &str) -> io::Result<bool> {
    let sock = inet_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFINDEX reads the name and writes an int into the union
    // of `req`, which lives across the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) };
    match check(rc) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Tap {
    /// Attaches to the tap `name` (or, with a `%d` template, creates a new
    /// one), non-blocking, with a 12-byte virtio-net header on each frame.
    pub fn open(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads and writes (the chosen name) the ifreq,
        // which lives across the call; the fd is /dev/net/tun.
        check(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
        let tap = Tap {
            file,
            name: name_of(&req),
        };
        let size = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, which lives across the call.
        check(unsafe { libc::ioctl(tap.file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) })?;
        Ok(tap)
    }

    /// Creates a non-persistent tap (`tvmmN`) and gives its host side
    /// `addr/prefix`, then brings it up. Needs CAP_NET_ADMIN.
    pub fn create_with_address(addr: Ipv4Addr, prefix: u8) -> io::Result<Tap> {
        let tap = Tap::open(CREATED_NAME_TEMPLATE)?;
        let sock = inet_socket()?;
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0);
        let mut req = ifreq(&tap.name)?;
        for (request, value) in [
            (libc::SIOCSIFADDR, u32::from(addr)),
            (libc::SIOCSIFNETMASK, mask),
        ] {
            req.ifr_ifru.ifru_addr = sockaddr_in(value);
            // SAFETY: SIOCSIFADDR/SIOCSIFNETMASK read the name and the
            // sockaddr in the ifreq, which lives across the call.
            check(unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) })?;
        }
        // SAFETY: SIOCGIFFLAGS writes a short into the ifreq's union.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: the union's flags member was just written by the kernel.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as i16;
        // SAFETY: SIOCSIFFLAGS reads the name and the flags of the ifreq.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) })?;
        Ok(tap)
    }

    /// The interface's name on the host.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which offloads the kernel may use on frames it hands us
    /// (TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UFO), after the guest
    /// said what it accepts. A kernel that refuses UFO gets the rest.
    pub fn set_offload(&self, flags: libc::c_uint) -> io::Result<()> {
        let set = |f: libc::c_uint| {
            // SAFETY: TUNSETOFFLOAD takes its argument by value.
            check(unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    libc::c_ulong::from(f),
                )
            })
        };
        set(flags).or_else(|e| {
            if flags & libc::TUN_F_UFO != 0 {
                set(flags & !libc::TUN_F_UFO)
            } else {
                Err(e)
            }
        })
    }
}

fn sockaddr_in(addr: u32) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: addr.to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain data; a
    // sockaddr_in is what these ioctls expect in the sockaddr slot.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl io::Read for &Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }
}

impl io::Write for &Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_ifnamsiz() {
        assert!(ifreq("tap0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-much-too-long").is_err());
        assert!(ifreq("a\0b").is_err());
        assert_eq!(name_of(&ifreq("tvmm3").unwrap()), "tvmm3");
    }

    #[test]
    fn the_address_goes_in_network_order() {
        let sa = sockaddr_in(u32::from(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // sa_data: port (2 bytes), then the address.
        let bytes: Vec<u8> = sa.sa_data[2..6].iter().map(|&c| c as u8).collect();
        assert_eq!(bytes, [10, 0, 2, 1]);
    }
}
