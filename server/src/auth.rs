//! Passwords: argon2id hashes in PHC string form.
//!
//! Hashing is slow on purpose, so it never runs on an async thread: the game
//! asks for [`Work`], the engine runs it on a [`Pool`] (tokio's blocking
//! threads, `auth.password_workers` at a time) and hands the [`Outcome`]
//! back to the game.
//!
//! Each hash holds `auth.argon2_memory_kib` while it runs, so the pool's
//! bound is the server's memory bound under a login flood; work whose
//! session has gone ([`Abandon`]) is dropped before it takes a worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ev::config::AuthConfig;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("argon2 parameters in [auth]")]
    Params(#[source] argon2::Error),
    #[error("hashing a password")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Work the game needs done off the async threads.
#[derive(Clone, PartialEq, Eq)]
pub enum Work {
    Hash {
        password: String,
    },
    /// `hash` is None when there is no such account: the password is hashed
    /// anyway, so a wrong name costs the same time as a wrong password.
    Verify {
        password: String,
        hash: Option<String>,
    },
}

// Passwords never reach a log line.
impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Hash { .. } => f.write_str("Hash"),
            Work::Verify { .. } => f.write_str("Verify"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hashed(String),
    Verified(bool),
    /// The hash could not be made (or the hashing task died).
    Failed(String),
    /// The session left before the work started; nothing was hashed.
    Abandoned,
}

/// Set when the session a job is for has gone, so the job is dropped
/// before it hashes (a flood of logins that disconnect at once must not
/// keep the workers busy).
#[derive(Debug, Clone, Default)]
pub struct Abandon(Arc<AtomicBool>);

impl Abandon {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs password work at most `workers` at a time. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    hasher: Hasher,
    workers: Arc<tokio::sync::Semaphore>,
}

impl Pool {
    pub fn new(hasher: Hasher, workers: usize) -> Pool {
        Pool {
            hasher,
            workers: Arc::new(tokio::sync::Semaphore::new(workers.max(1))),
        }
    }

    /// Waits for a worker, then does `work` on it, unless `abandon` was set
    /// by then.
    pub async fn run(&self, work: Work, abandon: &Abandon) -> Outcome {
        let Ok(_worker) = self.workers.acquire().await else {
            return Outcome::Failed("the password pool is closed".into());
        };
        if abandon.is_set() {
            return Outcome::Abandoned;
        }
        self.hasher.run(work).await
    }
}

/// argon2id with the parameters of `[auth]`. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    argon: Arc<Argon2<'static>>,
}

impl Hasher {
    pub fn new(config: &AuthConfig) -> Result<Hasher, AuthError> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(AuthError::Params)?;
        Ok(Hasher {
            argon: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)),
        })
    }

    pub fn hash(&self, password: &str) -> Result<String, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(AuthError::Hash)
    }

    /// Checks `password` against a stored hash, with the parameters recorded
    /// in the hash (so changing `[auth]` does not lock anyone out).
    pub fn verify(&self, password: &str, hash: &str) -> bool {
        match PasswordHash::new(hash) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(e) => {
                tracing::warn!("stored password hash is malformed: {e}");
                false
            }
        }
    }

    /// Does `work` on the calling thread.
    pub fn run_blocking(&self, work: Work) -> Outcome {
        match work {
            Work::Hash { password } => match self.hash(&password) {
                Ok(hash) => Outcome::Hashed(hash),
                Err(e) => Outcome::Failed(format!("{:#}", anyhow::Error::from(e))),
            },
            Work::Verify {
                password,
                hash: Some(hash),
            } => Outcome::Verified(self.verify(&password, &hash)),
            Work::Verify {
                password,
                hash: None,
            } => {
                let _ = self.hash(&password);
                Outcome::Verified(false)
            }
        }
    }

    /// Does `work` on tokio's blocking pool.
    pub async fn run(&self, work: Work) -> Outcome {
        let hasher = self.clone();
        match tokio::task::spawn_blocking(move || hasher.run_blocking(work)).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(format!("hashing task failed: {e}")),
        }
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Hasher {
    /// The cheapest parameters argon2 allows: tests hash many passwords.
    pub(crate) fn cheap() -> Result<Hasher, AuthError> {
        let config = AuthConfig {
            argon2_memory_kib: 8,
            argon2_iterations: 1,
            ..AuthConfig::default()
        };
        Hasher::new(&config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::cheap().unwrap()
    }

    #[test]
    fn hash_then_verify() {
        let h = cheap();
        let hash = h.hash("secret").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(h.verify("secret", &hash));
        assert!(!h.verify("Secret", &hash));
        assert!(!h.verify("secret", "not a hash"));
    }

    #[tokio::test]
    async fn unknown_account_is_never_verified() {
        let h = cheap();
        let work = Work::Verify {
            password: "x".into(),
            hash: None,
        };
        assert_eq!(h.run(work).await, Outcome::Verified(false));
    }

    #[tokio::test]
    async fn abandoned_work_is_not_done() {
        let pool = Pool::new(cheap(), 1);
        let abandon = Abandon::default();
        abandon.set();
        let work = Work::Hash {
            password: "secret".into(),
        };
        assert_eq!(pool.run(work, &abandon).await, Outcome::Abandoned);
    }

    #[tokio::test]
    async fn the_pool_runs_at_most_its_workers_at_once() {
        let pool = Pool::new(cheap(), 2);
        let held: Vec<_> = (0..2)
            .map(|_| pool.workers.clone().try_acquire_owned().unwrap())
            .collect();
        let abandon = Abandon::default();
        let work = Work::Hash {
            password: "secret".into(),
        };
        let mut waiting = Box::pin(pool.run(work, &abandon));
        let polled = futures_poll_once(waiting.as_mut()).await;
        assert!(polled.is_none(), "work ran with every worker busy");
        drop(held);
        assert!(matches!(waiting.await, Outcome::Hashed(_)));
    }

    /// Polls a future once: Some(output) if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[test]
    fn bad_parameters_are_refused() {
        let config = AuthConfig {
            argon2_memory_kib: 1,
            ..AuthConfig::default()
        };
        assert!(Hasher::new(&config).is_err());
    }
}
