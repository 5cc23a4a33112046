//! Session ids, one sequence for every listener (telnet, the webclient):
//! two sessions never share an id, whichever protocol they came in by.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ev::link::SessionId;

/// The next session id. Ids grow across portal restarts: they start from
/// the start time in microseconds, so a server never mistakes a new session
/// for an old one.
#[derive(Debug, Clone)]
pub struct SessionIds(Arc<AtomicU64>);

impl SessionIds {
    pub fn new() -> SessionIds {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        SessionIds(Arc::new(AtomicU64::new(start)))
    }

    pub fn next(&self) -> SessionId {
        SessionId(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_sequence() {
        let a = SessionIds::new();
        let b = a.clone();
        let (x, y, z) = (a.next(), b.next(), a.next());
        assert!(x.0 < y.0 && y.0 < z.0);
    }
}
