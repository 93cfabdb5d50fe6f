//! The root image cache's size cap (docs/bundle.md): every use of an image
//! sets its mtime to now, and after each use the least recently used
//! images (oldest mtime first) are removed until the images' disk usage is
//! at most the cap: `TINYVMM_BUNDLE_CACHE_MAX` (a `--memory`-style size,
//! e.g. `2G`; `0`: never evict), else `DEFAULT_MAX`. The image just used
//! is never removed, nor one used in the last `MIN_AGE` (another tinyvmm
//! may have chosen it and not opened it yet; an image a running VM has
//! open may go: the VM keeps its open file). Stamps of removed images are
//! left: they only point the next start at a rebuild.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::BundleError;

/// The cap without `TINYVMM_BUNDLE_CACHE_MAX`.
pub const DEFAULT_MAX: u64 = 4 << 30;
/// The variable that sets the cap.
pub const MAX_VAR: &str = "TINYVMM_BUNDLE_CACHE_MAX";
/// An image used more recently than this is kept whatever the cap.
pub const MIN_AGE: Duration = Duration::from_secs(60);

/// The cap in bytes (0: no cap).
pub fn max() -> Result<u64, BundleError> {
    match std::env::var(MAX_VAR) {
        Err(_) => Ok(DEFAULT_MAX),
        Ok(v) if v.trim() == "0" => Ok(0),
        Ok(v) => crate::config::parse_memory(v.trim())
            .map_err(|e| BundleError::config(format!("{MAX_VAR}={v}: {e}"))),
    }
}

/// Marks `image` as used now (its mtime); a failure only makes it look older.
pub fn touch(image: &Path) {
    let Ok(path) = CString::new(image.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path; a null `times` means "now".
    unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), std::ptr::null(), 0) };
}

/// Removes the least recently used images of `dir` until their disk usage
/// is at most `max` (0: none), never `keep` nor one younger than
/// `min_age`; returns what it removed.
pub fn evict(dir: &Path, keep: &Path, max: u64, min_age: Duration) -> Vec<PathBuf> {
    if max == 0 {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut images: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().as_bytes().ends_with(b".ext4"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.blocks() * 512, e.path()))
        })
        .collect();
    let mut used: u64 = images.iter().map(|i| i.1).sum();
    images.sort();
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for (mtime, bytes, path) in images {
        if used <= max {
            break;
        }
        let young = now.duration_since(mtime).map_or(true, |age| age < min_age);
        if path == keep || young {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            used -= bytes;
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_the_kept_and_young_stay() {
        let dir = std::env::temp_dir().join(format!("tinyvmm-cache-evict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        let mut files = Vec::new();
        // a (oldest) .. d (newest), 1 MiB each of real blocks; e is young.
        for (name, age) in [("a", 400), ("b", 300), ("c", 200), ("d", 100), ("e", 0)] {
            let p = dir.join(format!("{name}.ext4"));
            std::fs::write(&p, vec![1u8; 1 << 20]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(now - Duration::from_secs(age)).unwrap();
            files.push(p);
        }
        std::fs::write(dir.join("notes.txt"), vec![1u8; 4 << 20]).unwrap();
        // Keep b explicitly; cap 2.5 MiB: a goes, b is kept, c goes, then 3 MiB
        // remain (b, d, e): d goes; e is younger than MIN_AGE.
        let removed = evict(&dir, &files[1], 5 << 19, MIN_AGE);
        assert_eq!(
            removed,
            [files[0].clone(), files[2].clone(), files[3].clone()]
        );
        assert!(files[1].is_file() && files[4].is_file());
        assert!(dir.join("notes.txt").is_file(), "only images are evicted");
        // Under the cap nothing goes; 0 means no cap.
        assert!(evict(&dir, &files[1], 8 << 20, MIN_AGE).is_empty());
        assert!(evict(&dir, &files[1], 0, Duration::ZERO).is_empty());
        // touch makes an image the most recently used.
        touch(&files[1]);
        let m = std::fs::metadata(&files[1]).unwrap().modified().unwrap();
        assert!(
            now.duration_since(m)
                .map_or(true, |d| d < Duration::from_secs(5))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
