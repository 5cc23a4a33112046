//! run/supervisor.pid: one supervisor per game directory.
//!
//! The file is locked (flock, exclusive, non-blocking) for the supervisor's
//! whole life, so the lock, not the file's existence, says who runs: a file
//! left by a killed supervisor is simply taken over. The fd is close-on-exec,
//! so children never inherit the lock.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("already running (pid {pid})")]
    AlreadyRunning { pid: u32 },
    #[error("already running (pid unknown: {path} is locked but holds no pid)")]
    AlreadyRunningUnknown { path: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock. Dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct PidLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock and writes our pid, or says who holds it.
    pub fn acquire(path: &Path) -> Result<PidLock, LockError> {
        let io = |action| {
            let path = path.to_owned();
            move |source| LockError::Io {
                action,
                path,
                source,
            }
        };
        // Not truncated on open: the holder's pid must stay readable.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("opening"))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(match text.trim().parse() {
                    Ok(pid) => LockError::AlreadyRunning { pid },
                    Err(_) => LockError::AlreadyRunningUnknown {
                        path: path.to_owned(),
                    },
                });
            }
            Err((_, errno)) => return Err(io("locking")(std::io::Error::from(errno))),
        };
        file.set_len(0).map_err(io("truncating"))?;
        file.rewind().map_err(io("writing"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("writing"))?;
        file.sync_all().map_err(io("syncing"))?;
        Ok(PidLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Removes the file while still holding the lock: called last, at exit.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.pid");
        let held = PidLock::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));

        let err = PidLock::acquire(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("already running (pid {})", std::process::id())
        );
        // The refused attempt did not clobber the holder's pid.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        drop(held);
        PidLock::acquire(&path).unwrap();
    }

    #[test]
    fn stale_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.pid");
        std::fs::write(&path, "999999999\nrubbish\n").unwrap();
        let _held = PidLock::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}
