//! The one place with `unsafe`: process set-up that must run between fork and exec.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;

/// Makes the spawned process the leader of a new session, so closing the
/// terminal it was started from sends it no SIGHUP (which ev reads as "reload").
pub fn detach(command: &mut std::process::Command) {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}
