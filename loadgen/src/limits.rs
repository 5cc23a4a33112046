//! The open-file limit: raised to the hard limit at start, because every
//! session is a socket and 10,000 sessions are over the usual soft limit.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit; returns the limit in
/// force afterwards.
pub fn raise_open_files() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Fails early, naming the limit, if `sessions` sockets cannot be open at once.
pub fn check_sessions(sessions: u64, limit: u64) -> anyhow::Result<()> {
    // stdin/out/err, the runtime's own descriptors, children's pipes.
    const SPARE: u64 = 32;
    if sessions + SPARE > limit {
        anyhow::bail!(
            "{sessions} sessions need {} open files but the limit is {limit}; raise the hard limit (ulimit -Hn) and retry",
            sessions + SPARE
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers() {
        let before = getrlimit(Resource::RLIMIT_NOFILE).unwrap().0;
        assert!(raise_open_files().unwrap() >= before);
        assert!(check_sessions(10, 1024).is_ok());
        assert!(check_sessions(10_000, 1024).is_err());
    }
}
