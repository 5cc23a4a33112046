//! systemd's readiness protocol: a datagram per state change to
//! `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`). Without
//! the variable every call is a no-op, so the supervisor need not care whether
//! it runs under systemd.

use std::os::unix::net::{SocketAddr, UnixDatagram};

#[derive(Debug, Clone)]
pub struct Notifier {
    addr: Option<String>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            addr: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving");
    }

    /// Sent when a reload starts; `ready` ends it.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"
        ));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={text}"));
    }

    /// Whether systemd listens at all.
    pub fn enabled(&self) -> bool {
        self.addr.is_some()
    }

    /// The watchdog's keep-alive, with the current status line.
    pub fn alive(&self, status: &str) {
        self.send(&format!("WATCHDOG=1\nSTATUS={status}"));
    }

    fn send(&self, message: &str) {
        let Some(addr) = &self.addr else { return };
        if let Err(e) = send_to(addr, message) {
            tracing::warn!("cannot notify systemd on {addr}: {e}");
        }
    }
}

fn send_to(addr: &str, message: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        socket.send_to(message.as_bytes(), addr)?;
    }
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants with RELOADING=1.
fn monotonic_usec() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let micros = u64::try_from(t.tv_nsec() / 1000).unwrap_or(0);
            secs * 1_000_000 + micros
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            addr: Some(path.to_string_lossy().into_owned()),
        };
        notifier.reloading();
        notifier.ready();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let n = receiver.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"READY=1"));
    }

    #[test]
    fn no_socket_is_a_no_op() {
        Notifier { addr: None }.ready();
    }
}
