//! The bundle's root file system as a read-only ext4 image (`mkfs.ext4 -d`:
//! no root privileges, no loop device), cached by content under
//! `${XDG_CACHE_HOME:-~/.cache}/tinyvmm/bundles/<sha256>.ext4`. The key
//! hashes every entry of the tree, in name order, without following
//! symlinks: its path, type, mode, owner, and its bytes (a file), target
//! (a symlink) or device number; the same tree gives the same image, any
//! change gives another. In front of it, a stamp of the tree's metadata
//! alone (each entry's device, inode, size, mtime and ctime, besides the
//! above) names the content key it had last time in `stamps/<sha256>`: an
//! unchanged tree is then found by a directory walk, without reading its
//! files (a write changes ctime, which no user can set back). docs/bundle.md
//! has the measured hit and miss costs.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::BundleError;

/// A root image ready to attach, and what it cost.
#[derive(Debug)]
pub struct Image {
    /// The cached image.
    pub path: PathBuf,
    /// Whether it was in the cache already.
    pub hit: bool,
    /// Time to hash the tree.
    pub hash_time: Duration,
    /// Time to build the image (zero on a hit).
    pub build_time: Duration,
}

/// What the walk saw: the hash, and the sizes an image needs.
struct Walk {
    /// Hash file contents (the key), or only metadata (the stamp).
    content: bool,
    hasher: Sha256,
    bytes: u64,
    entries: u64,
    buf: Vec<u8>,
}

/// The cache directory for bundle images.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tinyvmm/bundles"))
}

/// The image of the tree at `root`, from the cache or built now.
pub fn image(root: &Path) -> Result<Image, BundleError> {
    let started = Instant::now();
    let dir = cache_dir().ok_or_else(|| {
        BundleError::resource("no cache directory: set HOME or XDG_CACHE_HOME".into())
    })?;
    let walk = |content: bool| {
        let mut w = Walk {
            content,
            hasher: Sha256::new(),
            bytes: 0,
            entries: 0,
            buf: vec![0; 1 << 18],
        };
        w.visit(root, Path::new("/"))
            .map_err(|e| BundleError::resource(format!("reading the root file system: {e}")))?;
        let hex: String = w
            .hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok::<_, BundleError>((hex, w))
    };
    let cap = super::cache::max()?;
    let (stamp, _) = walk(false)?;
    let stamp_file = dir.join("stamps").join(&stamp);
    if let Ok(key) = std::fs::read_to_string(&stamp_file) {
        let path = dir.join(format!("{}.ext4", key.trim()));
        if key.trim().len() == 64 && path.is_file() {
            let hash_time = started.elapsed();
            used(&dir, &path, cap);
            return Ok(Image {
                path,
                hit: true,
                hash_time,
                build_time: Duration::ZERO,
            });
        }
    }
    let (hash, walk) = walk(true)?;
    let hash_time = started.elapsed();
    let path = dir.join(format!("{hash}.ext4"));
    remember(&stamp_file, &hash);
    if path.is_file() {
        used(&dir, &path, cap);
        return Ok(Image {
            path,
            hit: true,
            hash_time,
            build_time: Duration::ZERO,
        });
    }
    let started = Instant::now();
    fs::create_dir_all(&dir)
        .map_err(|e| BundleError::resource(format!("{}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
    let built = build(root, &tmp, walk.bytes, walk.entries)
        .and_then(|()| fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display())));
    if let Err(e) = built {
        let _ = fs::remove_file(&tmp);
        return Err(BundleError::resource(format!(
            "building the root file system image from {}: {e}",
            root.display()
        )));
    }
    used(&dir, &path, cap);
    Ok(Image {
        path,
        hit: false,
        hash_time,
        build_time: started.elapsed(),
    })
}

/// Marks `image` used and trims the cache to `cap` (cache.rs).
fn used(dir: &Path, image: &Path, cap: u64) {
    super::cache::touch(image);
    super::cache::evict(dir, image, cap, super::cache::MIN_AGE);
}

/// Records that the tree with this stamp has the content key `hash`
/// (atomically; a failure only costs the next start a content hash).
fn remember(stamp_file: &Path, hash: &str) {
    let Some(dir) = stamp_file.parent() else {
        return;
    };
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let _ = fs::create_dir_all(dir)
        .and_then(|()| fs::write(&tmp, hash))
        .and_then(|()| fs::rename(&tmp, stamp_file));
}

impl Walk {
    fn visit(&mut self, path: &Path, name: &Path) -> std::io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        self.entries += 1;
        let h = &mut self.hasher;
        h.update(name.as_os_str().as_encoded_bytes());
        h.update([0]);
        for n in [
            u64::from(meta.mode()),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
        ] {
            h.update(n.to_le_bytes());
        }
        if !self.content {
            for n in [meta.dev(), meta.ino(), meta.size(), meta.mtime() as u64] {
                h.update(n.to_le_bytes());
            }
            for n in [meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()] {
                h.update(n.to_le_bytes());
            }
        }
        let kind = meta.file_type();
        if kind.is_file() && !self.content {
            self.bytes += meta.len().div_ceil(4096) * 4096;
        } else if kind.is_file() {
            h.update(meta.len().to_le_bytes());
            self.bytes += meta.len().div_ceil(4096) * 4096;
            let mut f = File::open(path)?;
            loop {
                let n = f.read(&mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.hasher.update(&self.buf[..n]);
            }
        } else if kind.is_symlink() {
            h.update(fs::read_link(path)?.as_os_str().as_encoded_bytes());
        } else if kind.is_dir() {
            self.bytes += 4096;
            let mut names: Vec<_> = fs::read_dir(path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for n in names {
                self.visit(&path.join(&n), &name.join(&n))?;
            }
        } else {
            h.update(meta.rdev().to_le_bytes());
        }
        Ok(())
    }
}

/// `mkfs.ext4 -d` into `image`: no journal (the guest mounts it
/// read-only), no reserved blocks, room for the data and inodes plus a
/// quarter and 16 MiB (ext4's own metadata).
fn build(root: &Path, image: &Path, bytes: u64, entries: u64) -> Result<(), String> {
    let size = (bytes + bytes / 4 + (16 << 20) + entries * 256).div_ceil(1 << 20) << 20;
    let inodes = entries + entries / 2 + 1024;
    File::create(image)
        .and_then(|f| f.set_len(size))
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^has_journal",
            "-m",
            "0",
            "-b",
            "4096",
        ])
        .arg("-N")
        .arg(inodes.to_string())
        .arg("-d")
        .arg(root)
        .arg(image)
        .output()
        .map_err(|e| format!("mkfs.ext4 could not be run ({e}); install e2fsprogs"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("mkfs.ext4 failed: {}", why.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_content_and_metadata() {
        let dir = std::env::temp_dir().join(format!("tinyvmm-rootfs-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::write(dir.join("a/f"), "one").unwrap();
        let hash = |content: bool| {
            let mut w = Walk {
                content,
                hasher: Sha256::new(),
                bytes: 0,
                entries: 0,
                buf: vec![0; 16],
            };
            w.visit(&dir, Path::new("/")).unwrap();
            (w.hasher.finalize().to_vec(), w.entries)
        };
        let key = || hash(true);
        let first = key();
        assert_eq!(first.1, 3);
        assert_eq!(key(), first, "same tree, same key");
        fs::write(dir.join("a/f"), "two").unwrap();
        let second = key();
        assert_ne!(second, first, "content changes the key");
        // The same bytes written again: the same key, another stamp (ctime).
        let stamp = hash(false);
        std::thread::sleep(Duration::from_millis(20));
        fs::write(dir.join("a/f"), "two").unwrap();
        assert_eq!(key(), second);
        assert_ne!(hash(false), stamp, "a write changes the stamp");
        std::os::unix::fs::symlink("f", dir.join("a/l")).unwrap();
        assert_ne!(key(), second, "a new entry changes the key");
        fs::remove_dir_all(&dir).unwrap();
    }
}
