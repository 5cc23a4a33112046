//! The Link protocol version and this build's identity.

/// A peer with a different major is refused. Bump it for any change an older
/// peer would misread; additions only bump [`LINK_MINOR`].
pub const LINK_MAJOR: u32 = 1;
/// 1.1: `Working`. 1.2: `SessionInfo`, and a session's terminal and
/// capabilities. 1.3: Output's markup and kind (line, prompt, secret), and
/// out-of-band data both ways. 1.4: `StaffNotice`. 1.5: a session's
/// colour setting (`ServerSession::colours`).
pub const LINK_MINOR: u32 = 5;

/// The crate version; build ids of server binaries are content hashes taken by
/// the supervisor (see `run/bin/`), this is what a process says of itself.
pub const PKG_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `major.minor`, as printed in messages.
pub fn link_version() -> String {
    format!("{LINK_MAJOR}.{LINK_MINOR}")
}
