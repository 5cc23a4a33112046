//! Server binaries: content-hashed copies under run/bin/<build-id>.
//!
//! A server is always started from a copy, never from the path the operator
//! builds to. The bytes are read once, hashed, and exactly those bytes are
//! written (temp file, fsync, rename), so a binary caught half-written by a
//! running `cargo build` is never started as a complete one: its hash simply
//! differs next time. The build id is the hash, so "which code is running" is
//! answerable from `evctl status` and the file name.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The build id of a binary: a 64-bit BLAKE2b of its bytes as 16 hex
/// digits. BLAKE2b because ev's profile builds it optimised even in a debug
/// build (argon2 needs it): a debug supervisor hashes a 40 MB debug binary
/// several times faster with it than with any hash written here, which
/// would run unoptimised, and every bit of the input reaches every bit of
/// the id.
pub fn build_id(bytes: &[u8]) -> String {
    use blake2::digest::{Digest, consts::U8};
    let digest = blake2::Blake2b::<U8>::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server binary ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub build_id: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct InstallError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// `map_err(err("reading", path))`: an io::Error with what was being done to which file.
fn err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError {
        action,
        path,
        source,
    }
}

/// What identifies a file's content without reading it: when all of these
/// are unchanged, so are the bytes (any write changes mtime and ctime).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// Installs binaries into one bin directory, remembering what it hashed so an
/// unchanged binary is not read again (hashing a debug build takes a while).
#[derive(Debug)]
pub struct Installer {
    bin_dir: PathBuf,
    seen: Mutex<HashMap<PathBuf, (Stamp, String)>>,
}

impl Installer {
    pub fn new(bin_dir: PathBuf) -> Installer {
        Installer {
            bin_dir,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Copies `source` to bin_dir/<build-id> unless that is already there.
    /// Blocking: call it from `spawn_blocking`.
    pub fn install(&self, source: &Path) -> Result<Installed, InstallError> {
        let stamp = std::fs::metadata(source)
            .map(|m| Stamp::of(&m))
            .map_err(err("reading", source))?;
        if let Some(id) = self.cached(source, &stamp) {
            let path = self.bin_dir.join(&id);
            if path.is_file() {
                return Ok(Installed { build_id: id, path });
            }
        }
        let bytes = std::fs::read(source).map_err(err("reading", source))?;
        // A file that changed while we read it is being written (a build in
        // progress): what we read may be half of it. Refuse rather than
        // start it; the next reload reads the finished file.
        if !std::fs::metadata(source).is_ok_and(|m| Stamp::of(&m) == stamp) {
            return Err(err("copying", source)(std::io::Error::other(
                "it changed while it was being copied (is a build still writing it?); try again when it is finished",
            )));
        }
        let id = build_id(&bytes);
        let path = self.bin_dir.join(&id);
        if !path.is_file() {
            write_atomically(&self.bin_dir, &path, &bytes)?;
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(source.to_owned(), (stamp, id.clone()));
        }
        Ok(Installed { build_id: id, path })
    }

    /// Removes every installed copy but those in `keep`: without this each
    /// rebuilt-and-reloaded server left its binary behind (tens of MiB a
    /// reload for a debug build). Only names that are build ids go, so a
    /// temp file of an install in progress or an operator's file stays.
    /// Returns how many were removed.
    pub fn prune(&self, keep: &[String]) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.bin_dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_build_id = name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_build_id || keep.iter().any(|k| k == name) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
        removed
    }

    fn cached(&self, source: &Path, stamp: &Stamp) -> Option<String> {
        let seen = self.seen.lock().ok()?;
        let (seen_stamp, id) = seen.get(source)?;
        (seen_stamp == stamp).then(|| id.clone())
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("bin");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)
            .map_err(err("creating", &tmp))?;
        file.write_all(bytes).map_err(err("writing", &tmp))?;
        file.sync_all().map_err(err("syncing", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(err("renaming to", path))?;
        // Make the rename itself durable.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("syncing", dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn prune_keeps_only_the_named_builds_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let installer = Installer::new(bin.clone());
        let mut ids = Vec::new();
        for version in ["one", "two", "three"] {
            let source = dir.path().join(version);
            std::fs::write(&source, version).unwrap();
            ids.push(installer.install(&source).unwrap().build_id);
        }
        std::fs::write(bin.join(".abc.123.tmp"), b"in progress").unwrap();
        std::fs::write(bin.join("README"), b"mine").unwrap();

        assert_eq!(installer.prune(&ids[2..]), 2);
        let mut names: Vec<String> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut expected = vec![".abc.123.tmp".to_string(), "README".into(), ids[2].clone()];
        expected.sort();
        assert_eq!(names, expected);
        // A pruned build installs again when it is reloaded again.
        let again = installer.install(&dir.path().join("one")).unwrap();
        assert!(again.path.is_file());
    }

    /// Build ids name files in run/bin that outlive a supervisor, and an
    /// adopted server is known by its id: the same bytes must keep the same
    /// id across versions of ev. The values are BLAKE2b with an 8-byte
    /// digest as another implementation gives them (Python's
    /// `hashlib.blake2b(data, digest_size=8)`).
    #[test]
    fn the_build_id_is_stable_and_16_hex_digits() {
        assert_eq!(build_id(b""), "e4a6a0577479b2b4");
        assert_eq!(build_id(b"abc"), "d8bb14d833d59559");
        for bytes in [&b""[..], b"a", &[0u8; 1000]] {
            let id = build_id(bytes);
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn every_byte_counts_in_the_build_id() {
        // Longer than any block, and not a whole number of blocks or words,
        // so a change in the tail is seen too.
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let id = build_id(&bytes);
        for at in [0, 1, 127, 128, 500, 991, 998, 999] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert_ne!(build_id(&changed), id, "a change at byte {at} went unseen");
        }
        // A byte more or less (a zero, which a padded tail would hide).
        let mut longer = bytes.clone();
        longer.push(0);
        assert_ne!(build_id(&longer), id);
        assert_ne!(build_id(&bytes[..999]), id);
    }

    #[test]
    fn install_copies_once_and_names_the_copy_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let source = dir.path().join("ev-server");
        std::fs::write(&source, b"version one").unwrap();
        let installer = Installer::new(bin.clone());

        let first = installer.install(&source).unwrap();
        assert_eq!(first.build_id, build_id(b"version one"));
        assert_eq!(first.path, bin.join(&first.build_id));
        assert_eq!(std::fs::read(&first.path).unwrap(), b"version one");
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);

        // Unchanged: same copy. Changed: a new copy, the old one kept.
        assert_eq!(installer.install(&source).unwrap(), first);
        std::fs::write(&source, b"version two, longer").unwrap();
        let second = installer.install(&source).unwrap();
        assert_ne!(second.build_id, first.build_id);
        assert_eq!(std::fs::read(&second.path).unwrap(), b"version two, longer");
        assert!(first.path.is_file());
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_deleted_copy_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("ev-server");
        std::fs::write(&source, b"abc").unwrap();
        let installer = Installer::new(dir.path().to_owned());
        let first = installer.install(&source).unwrap();
        std::fs::remove_file(&first.path).unwrap();
        assert_eq!(installer.install(&source).unwrap(), first);
        assert!(first.path.is_file());
    }

    #[test]
    fn missing_binary_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let installer = Installer::new(dir.path().to_owned());
        let err = installer
            .install(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("reading "), "{err}");
        assert!(err.contains("nope"), "{err}");
    }
}
