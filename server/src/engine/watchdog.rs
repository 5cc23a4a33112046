//! The command watchdog: a plain thread that aborts the process when one
//! transaction takes longer than `server.command_timeout_ms`.
//!
//! A stuck engine stalls every player, and only a new process gets it going
//! again: the supervisor restarts the server, the portal replays the inputs
//! that were not acknowledged (one at a time, quarantining one that brings
//! the server down twice). The log line names what was being applied, so an
//! admin can see which command hung. It is a std thread, not a task, so a
//! command that blocks the runtime's threads cannot silence it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::event::SessionId;
use crate::game::Registry;

/// What the engine is applying, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Input {
        session: SessionId,
        seq: u64,
        /// The command as typed: only ever logged through the redactor.
        typed: String,
        /// It answers a password prompt: nothing of it is logged.
        secret: bool,
    },
    /// The result of a password job.
    Password { session: SessionId },
    /// The game's timers.
    Timers,
    /// The results of the game's deferred work.
    Deferred,
}

impl Work {
    /// The line being applied as a log may show it; empty for other work.
    pub fn loggable(&self, redactor: &Registry<()>) -> String {
        match self {
            Work::Input { typed, secret, .. } => redactor.loggable_input(typed, *secret),
            _ => String::new(),
        }
    }
}

#[derive(Default)]
struct State {
    /// When the transaction being applied began.
    since: Option<Instant>,
    work: Option<Work>,
    stopped: bool,
    /// The thread waits with no deadline (nothing was being applied): the
    /// next `begin` must wake it. Otherwise it wakes by itself at the
    /// deadline of the transaction it last saw and looks again, so a busy
    /// engine does not pay a thread wake-up per transaction.
    parked: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays meaningful whatever panicked while holding it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The engine's handle; dropping it stops the thread.
pub struct Watchdog {
    shared: Arc<Shared>,
}

impl Watchdog {
    /// Starts the watching thread. `on_timeout` runs (on that thread) with
    /// what was being applied once a transaction is `timeout` old; the
    /// production one logs and aborts.
    pub fn start(
        timeout: Duration,
        on_timeout: impl FnOnce(Duration, Option<Work>) + Send + 'static,
    ) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let watched = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ev-watchdog".into())
            .spawn(move || watch(&watched, timeout, on_timeout))?;
        Ok(Watchdog { shared })
    }

    /// Starts one that logs an error naming the work and aborts the process.
    /// `redactor` hides the secrets of the line being applied.
    pub fn aborting(timeout: Duration, redactor: Registry<()>) -> std::io::Result<Watchdog> {
        Watchdog::start(timeout, move |timeout, work| {
            let limit = timeout.as_millis() as u64;
            match work {
                Some(ref input @ Work::Input { session, seq, .. }) => {
                    let text = input.loggable(&redactor);
                    tracing::error!(
                        %session,
                        seq,
                        command = text,
                        "command watchdog: a batch took over {limit} ms (server.command_timeout_ms) while applying input {seq} of session {session}: {text:?}; aborting"
                    )
                }
                Some(Work::Password { session }) => tracing::error!(
                    %session,
                    "command watchdog: a batch took over {limit} ms (server.command_timeout_ms) while applying a password result of session {session}; aborting"
                ),
                Some(Work::Timers) => tracing::error!(
                    "command watchdog: the game's timers took over {limit} ms (server.command_timeout_ms); aborting"
                ),
                Some(Work::Deferred) => tracing::error!(
                    "command watchdog: applying the results of deferred work took over {limit} ms (server.command_timeout_ms); aborting"
                ),
                None => tracing::error!(
                    "command watchdog: a batch took over {limit} ms (server.command_timeout_ms); aborting"
                ),
            }
            std::process::abort();
        })
    }

    /// A transaction begins.
    pub fn begin(&self) {
        let mut state = self.shared.lock();
        state.since = Some(Instant::now());
        state.work = None;
        let parked = std::mem::take(&mut state.parked);
        drop(state);
        if parked {
            self.shared.wake.notify_one();
        }
    }

    /// The transaction goes on to apply `work`.
    pub fn applying(&self, work: Work) {
        self.shared.lock().work = Some(work);
    }

    /// The transaction is over (committed or not).
    pub fn end(&self) {
        let mut state = self.shared.lock();
        state.since = None;
        state.work = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.wake.notify_one();
    }
}

fn watch(shared: &Shared, timeout: Duration, on_timeout: impl FnOnce(Duration, Option<Work>)) {
    let mut state = shared.lock();
    loop {
        if state.stopped {
            return;
        }
        state = match state.since {
            None => {
                state.parked = true;
                shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner)
            }
            Some(since) => {
                let elapsed = since.elapsed();
                if elapsed >= timeout {
                    let work = state.work.clone();
                    drop(state);
                    on_timeout(timeout, work);
                    return;
                }
                shared
                    .wake
                    .wait_timeout(state, timeout - elapsed)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn watchdog(timeout: Duration) -> (Watchdog, mpsc::Receiver<Option<Work>>) {
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::start(timeout, move |_, work| {
            let _ = tx.send(work);
        })
        .unwrap();
        (dog, rx)
    }

    #[test]
    fn a_transaction_past_the_limit_is_reported_with_its_work() {
        let (dog, fired) = watchdog(Duration::from_millis(20));
        dog.begin();
        let work = Work::Input {
            session: SessionId(4),
            seq: 9,
            typed: "@hang".into(),
            secret: false,
        };
        dog.applying(work.clone());
        assert_eq!(fired.recv_timeout(DEADLINE), Ok(Some(work)));
    }

    #[test]
    fn the_line_reported_shows_no_password() {
        let mut redactor = Registry::default();
        let connect = crate::game::Spec {
            place: crate::game::Place::Login,
            secret_from: Some(1),
            ..crate::game::Spec::new("connect", "connect NAME PASSWORD", "Log in.")
        };
        redactor.add(connect, ()).unwrap();
        let input = |typed: &str, secret| Work::Input {
            session: SessionId(1),
            seq: 1,
            typed: typed.into(),
            secret,
        };
        assert_eq!(
            input("connect Alice hunter2", false).loggable(&redactor),
            "connect Alice <secret>"
        );
        assert_eq!(input("hunter2", true).loggable(&redactor), "<secret>");
        assert_eq!(input("@hang", false).loggable(&redactor), "@hang");
    }

    #[test]
    fn transactions_that_end_in_time_are_not_reported() {
        let (dog, fired) = watchdog(Duration::from_secs(3600));
        for _ in 0..100 {
            dog.begin();
            dog.applying(Work::Password {
                session: SessionId(1),
            });
            dog.end();
        }
        drop(dog);
        // The thread ended without firing: the sender is gone.
        assert_eq!(
            fired.recv_timeout(DEADLINE),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn idle_time_between_transactions_does_not_count() {
        let (dog, fired) = watchdog(Duration::from_millis(50));
        dog.begin();
        dog.end();
        // Idle far longer than the limit: nothing fires.
        assert!(fired.recv_timeout(Duration::from_millis(200)).is_err());
        dog.begin();
        assert_eq!(fired.recv_timeout(DEADLINE), Ok(None));
    }

    #[test]
    fn a_hang_after_many_quick_transactions_is_reported() {
        // The thread sleeps to an earlier transaction's deadline without
        // being woken by each `begin`; it must still catch the last one.
        let (dog, fired) = watchdog(Duration::from_millis(50));
        for _ in 0..1000 {
            dog.begin();
            dog.end();
        }
        dog.begin();
        assert_eq!(fired.recv_timeout(DEADLINE), Ok(None));
    }
}
