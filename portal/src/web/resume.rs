//! Resume tokens: which web session a page may take back after its socket
//! dropped.
//!
//! A token is 256 random bits from the operating system, good once: the
//! session hands out a new one each time a socket (re)joins it, and the
//! old one is forgotten when it is used or its session ends. It is bound
//! to the Origin of the page that opened the session, so a page of
//! another site that learnt a token still cannot use it from there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::Socket;
use ev::link::SessionId;

/// A socket that asks to take over a session, and the last output number
/// its page has.
pub struct Rejoin {
    pub socket: Socket,
    pub seen: u64,
}

struct Claim {
    session: SessionId,
    origin: Option<String>,
    tx: mpsc::Sender<Rejoin>,
}

/// Every live token.
#[derive(Clone, Default)]
pub struct Resumes(Arc<Mutex<HashMap<String, Claim>>>);

/// Why a resume was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No session has this token (never issued, used already, or its
    /// session is over: too long away, or the portal restarted).
    Unknown,
    /// The token was issued to a page of another origin.
    Origin,
}

impl Resumes {
    /// A new token for `session`, replacing the one it had.
    pub fn issue(
        &self,
        session: SessionId,
        origin: Option<&str>,
        tx: &mpsc::Sender<Rejoin>,
    ) -> Option<String> {
        let token = new_token()?;
        let mut table = self.lock();
        table.retain(|_, claim| claim.session != session);
        table.insert(
            token.clone(),
            Claim {
                session,
                origin: origin.map(str::to_owned),
                tx: tx.clone(),
            },
        );
        Some(token)
    }

    /// Takes `token` (it is good once) if `origin` is the one it was
    /// issued to, and returns where to send the socket.
    pub fn take(&self, token: &str, origin: Option<&str>) -> Result<mpsc::Sender<Rejoin>, Refused> {
        let mut table = self.lock();
        let Some(claim) = table.get(token) else {
            return Err(Refused::Unknown);
        };
        if claim.origin.as_deref() != origin {
            return Err(Refused::Origin);
        }
        table
            .remove(token)
            .map(|claim| claim.tx)
            .ok_or(Refused::Unknown)
    }

    /// Forgets `session`'s token: the session is over.
    pub fn forget(&self, session: SessionId) {
        self.lock().retain(|_, claim| claim.session != session);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Claim>> {
        // Every change is one statement: a poisoned table is still right.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// 256 bits from the OS as hex, or None if it has no randomness to give
/// (then the session simply cannot be resumed).
fn new_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_once_from_its_own_origin() {
        let resumes = Resumes::default();
        let (tx, _rx) = mpsc::channel(1);
        let token = resumes.issue(SessionId(1), Some("http://a"), &tx).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(
            resumes.take(&token, Some("http://evil")).err(),
            Some(Refused::Origin)
        );
        assert_eq!(resumes.take(&token, None).err(), Some(Refused::Origin));
        assert!(resumes.take(&token, Some("http://a")).is_ok());
        assert_eq!(
            resumes.take(&token, Some("http://a")).err(),
            Some(Refused::Unknown),
            "used once"
        );
    }

    #[test]
    fn a_new_token_replaces_the_old_and_an_ended_session_has_none() {
        let resumes = Resumes::default();
        let (tx, _rx) = mpsc::channel(1);
        let first = resumes.issue(SessionId(1), None, &tx).unwrap();
        let second = resumes.issue(SessionId(1), None, &tx).unwrap();
        assert_ne!(first, second);
        assert_eq!(resumes.take(&first, None).err(), Some(Refused::Unknown));
        resumes.issue(SessionId(2), None, &tx).unwrap();
        assert_eq!(resumes.len(), 2);
        resumes.forget(SessionId(1));
        assert_eq!(resumes.take(&second, None).err(), Some(Refused::Unknown));
        assert_eq!(resumes.len(), 1);
    }
}
