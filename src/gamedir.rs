//! The layout of a game directory.
//!
//! ```text
//! GAME/ev.toml            settings (config.rs)
//! GAME/data/game.db       the server's database
//! GAME/logs/<process>.log one log per process
//! GAME/tls/               mode 0700: the certificate and key `evctl init --tls` made
//! GAME/run/               mode 0700: sockets, pidfiles, server binary copies
//!     portal.sock         the Link and PortalAdmin (portal serves)
//!     control.sock        the supervisor's Control service (evctl speaks)
//!     supervisor.pid      locked while a supervisor runs
//!     portal.pid server.pid
//!     telnet.addr         the address the portal's telnet listener bound
//!     tls.addr            the TLS listener's, while there is one
//!     bin/<build-id>      server binaries copied at reload time
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The kernel's limit on a Unix socket path (sun_path is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone)]
pub struct GameDir {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum GameDirError {
    #[error(
        "socket path {path} is {len} bytes, over the {max}-byte Unix socket limit; use a game directory with a shorter path"
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("{path} is not a game directory (no ev.toml); create one with `evctl init {path}`")]
    NotAGame { path: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GameDir {
    /// `root` is made absolute, so paths stay right when a process changes directory.
    pub fn new(root: impl AsRef<Path>) -> GameDir {
        let root = root.as_ref();
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
        GameDir { root }
    }

    /// `-g DIR`, else `$EV_GAME_DIR`, else the current directory.
    pub fn resolve(flag: Option<PathBuf>) -> GameDir {
        let dir = flag
            .or_else(|| std::env::var_os("EV_GAME_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        GameDir::new(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("ev.toml")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_path(&self, process: &str) -> PathBuf {
        self.logs_dir().join(format!("{process}.log"))
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.run_dir().join("bin")
    }
    pub fn link_socket(&self) -> PathBuf {
        self.run_dir().join("portal.sock")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("control.sock")
    }
    pub fn pid_path(&self, process: &str) -> PathBuf {
        self.run_dir().join(format!("{process}.pid"))
    }
    pub fn telnet_addr_path(&self) -> PathBuf {
        self.run_dir().join("telnet.addr")
    }
    /// The webclient's bound address, while the portal serves it.
    pub fn web_addr_path(&self) -> PathBuf {
        self.run_dir().join("web.addr")
    }
    /// The webclient's page as players open it (`http://` or `https://`,
    /// as `portal.web_tls` was when the portal started), while it serves it.
    pub fn web_url_path(&self) -> PathBuf {
        self.run_dir().join("web.url")
    }
    /// Where the supervisor serves metrics, once bound (`supervisor.metrics`).
    pub fn metrics_addr_path(&self) -> PathBuf {
        self.run_dir().join("metrics.addr")
    }
    pub fn tls_addr_path(&self) -> PathBuf {
        self.run_dir().join("tls.addr")
    }
    /// A path from ev.toml: relative ones are in the game directory.
    pub fn path(&self, configured: &Path) -> PathBuf {
        self.root.join(configured)
    }

    /// Fails if a socket path would be over the kernel's limit.
    pub fn check_socket_paths(&self) -> Result<(), GameDirError> {
        for path in [self.link_socket(), self.control_socket()] {
            let len = path.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(GameDirError::SocketPathTooLong {
                    path,
                    len,
                    max: MAX_SOCKET_PATH,
                });
            }
        }
        Ok(())
    }

    /// Fails unless ev.toml exists, with a message suggesting `evctl init`.
    pub fn check_exists(&self) -> Result<(), GameDirError> {
        if self.config_path().is_file() {
            Ok(())
        } else {
            Err(GameDirError::NotAGame {
                path: self.root.clone(),
            })
        }
    }

    /// Creates data/, logs/ and run/ (mode 0700) if missing, and tightens run/
    /// if it exists, so sockets in it are never reachable by other users.
    pub fn create_dirs(&self) -> Result<(), GameDirError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| GameDirError::Io {
                action,
                path,
                source,
            }
        };
        for dir in [
            self.data_dir(),
            self.logs_dir(),
            self.run_dir(),
            self.bin_dir(),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io("creating", &dir))?;
        }
        let run = self.run_dir();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))
            .map_err(io("setting permissions of", &run))?;
        Ok(())
    }

    /// Reads a pidfile; None if it is missing or unreadable.
    pub fn read_pid(&self, process: &str) -> Option<u32> {
        std::fs::read_to_string(self.pid_path(process))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn write_pid(&self, process: &str, pid: u32) -> std::io::Result<()> {
        let path = self.pid_path(process);
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{pid}\n"))?;
        std::fs::rename(tmp, path)
    }

    pub fn remove_pid(&self, process: &str) {
        let _ = std::fs::remove_file(self.pid_path(process));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_directory_is_refused_with_the_limit() {
        let long = format!("/tmp/{}", "x".repeat(120));
        let err = GameDir::new(long).check_socket_paths().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("107-byte"), "{msg}");
        assert!(msg.contains("shorter path"), "{msg}");
    }

    #[test]
    fn short_directory_passes() {
        GameDir::new("/tmp/g").check_socket_paths().unwrap();
    }

    #[test]
    fn run_dir_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let g = GameDir::new(tmp.path());
        g.create_dirs().unwrap();
        let mode = std::fs::metadata(g.run_dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
