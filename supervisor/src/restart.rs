//! Keeping the portal and a server running: restart at once after a crash,
//! then with a doubling wait, and give up on the server after
//! `crash_loop_limit` failures in a row (a successful reload resumes).
//! A build that crash-loops within `fallback_window_s` of taking over from
//! another is first replaced by that other build, the last known to serve;
//! never when a newer build migrated the database past it (that build exits
//! 5 at start, and the fallback is refused with the reason).
//!
//! The keeper is one task that looks at the state whenever it changes and
//! starts whatever is missing; it never races a reload because every start
//! takes `ops` and re-checks the state under it.

use std::sync::Arc;
use std::time::Duration;

use crate::launch::{self, HEALTHY_AFTER};
use crate::supervisor::{Shared, State};

/// The wait before the next start after `streak` failures in a row: none
/// for the first (a crash is restarted at once), then `base`, doubling up
/// to `max`.
pub fn backoff(streak: u32, base_ms: u64, max_ms: u64) -> Duration {
    let ms = match streak {
        0 | 1 => 0,
        n => {
            let doublings = (n - 2).min(63);
            base_ms.saturating_mul(1u64 << doublings).min(max_ms)
        }
    };
    Duration::from_millis(ms)
}

/// Counts a server crash or failed start. A server that served for
/// [`HEALTHY_AFTER`] starts a new count.
pub(crate) fn record_failure(s: &mut State, reason: String, served: Duration, limit: u32) {
    if served >= HEALTHY_AFTER {
        s.crash_streak = 0;
    }
    s.crash_streak += 1;
    s.last_exit_reason = reason;
    if s.crash_streak >= limit && !s.crash_looped {
        s.crash_looped = true;
        s.crash_loops += 1;
    }
}

/// What players are told when the server is left down after a crash loop.
const GAME_DOWN: &str = "[ev] The game is down after repeated crashes. Staff have been alerted; stay connected or come back later.";

enum Need {
    Nothing,
    Portal(Duration),
    Server(Duration),
    /// From the crash-looping build to the one before it.
    Fallback {
        from: String,
        to: String,
    },
}

/// The fallback a crash loop calls for: the serving build took over from
/// another within `window` and then failed `crash_loop_limit` times.
fn fallback_due(s: &State, window: Duration) -> Option<(String, String)> {
    if !s.crash_looped || window.is_zero() {
        return None;
    }
    let from = s.last_serving_build.clone()?;
    let to = s.previous_build.clone()?;
    let recent = s.build_since.is_some_and(|t| t.elapsed() <= window);
    (recent && from != to).then_some((from, to))
}

/// Runs until stop: starts the portal or a server whenever one is missing.
pub(crate) async fn keep(shared: Arc<Shared>) {
    let config = shared.config();
    let sup = &config.supervisor;
    let window = Duration::from_secs(sup.fallback_window_s);
    let mut changed = shared.subscribe();
    loop {
        changed.borrow_and_update();
        let need = shared.read(|s| {
            if s.portal.is_none() {
                Need::Portal(backoff(
                    s.portal_streak,
                    sup.restart_backoff_ms,
                    sup.restart_backoff_max_ms,
                ))
            } else if s.portal_ready && s.serving().is_none() && !s.crash_looped {
                Need::Server(backoff(
                    s.crash_streak.max(s.storage_streak),
                    sup.restart_backoff_ms,
                    sup.restart_backoff_max_ms,
                ))
            } else if let Some((from, to)) = fallback_due(s, window)
                && s.portal_ready
                && s.serving().is_none()
            {
                Need::Fallback { from, to }
            } else {
                Need::Nothing
            }
        });
        if shared.stopping() {
            return;
        }
        let delay = match need {
            Need::Nothing => {
                tokio::select! {
                    _ = changed.changed() => continue,
                    () = shared.stop.cancelled() => return,
                }
            }
            Need::Portal(delay) | Need::Server(delay) => delay,
            Need::Fallback { .. } => Duration::ZERO,
        };
        if !delay.is_zero() {
            tracing::info!("next start in {} ms", delay.as_millis());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shared.stop.cancelled() => return,
            }
        }
        let _ops = tokio::select! {
            ops = shared.ops.lock() => ops,
            () = shared.stop.cancelled() => return,
        };
        match need {
            Need::Nothing => {}
            Need::Fallback { from, to } => {
                if shared.read(|s| fallback_due(s, window)) != Some((from.clone(), to.clone()))
                    || shared.stopping()
                {
                    continue;
                }
                fall_back(&shared, from, to).await;
            }
            Need::Portal(_) => {
                if shared.read(|s| s.portal.is_some()) || shared.stopping() {
                    continue;
                }
                if let Err(e) = launch::start_portal(&shared).await {
                    tracing::error!("portal failed to start: {e}");
                    shared.update(|s| s.portal_streak += 1);
                }
            }
            Need::Server(_) => {
                let wanted =
                    shared.read(|s| s.portal_ready && s.serving().is_none() && !s.crash_looped);
                if !wanted || shared.stopping() {
                    continue;
                }
                shared.update(|s| {
                    if s.generation > 0 {
                        s.restarts += 1;
                    }
                });
                if let Err(e) = start_serving(&shared).await {
                    if shared.stopping() {
                        return;
                    }
                    if e.storage {
                        // A full or read-only disk comes back by itself; a
                        // crash loop would leave the game down after it did.
                        tracing::error!(
                            "server cannot start until its database can be written: {}; retrying",
                            e.error
                        );
                        shared.update(|s| {
                            s.storage_streak = s.storage_streak.saturating_add(1);
                            s.last_exit_reason = e.error;
                        });
                        continue;
                    }
                    let e = e.error;
                    tracing::error!("server failed to start: {e}");
                    let limit = sup.crash_loop_limit;
                    let looped = shared.update(|s| {
                        // A server that dies as it starts (a poison input
                        // replayed right after it attached) crashed too.
                        s.crashes += 1;
                        record_failure(s, e, Duration::ZERO, limit);
                        s.crash_looped && fallback_due(s, window).is_none()
                    });
                    if looped {
                        tracing::error!(
                            "the server failed {limit} times in a row; not restarting it until `evctl reload`"
                        );
                        shared.notifier.status("server crash loop: not restarting");
                        // Players keep their connections; tell them why nothing answers.
                        let _ = shared.portal.notice(GAME_DOWN).await;
                    }
                }
            }
        }
    }
}

/// Serves the build before `from` again, after `from` crash-looped soon
/// after taking over. Players are told at once (nothing answers them
/// meanwhile), the admins once the old build serves. Caller holds `ops`.
async fn fall_back(shared: &Arc<Shared>, from: String, to: String) {
    let why = shared.read(|s| s.last_exit_reason.clone());
    tracing::error!(
        "build {from} failed {} times in a row soon after taking over (last: {why}); falling back to build {to}, the last that served",
        shared.config().supervisor.crash_loop_limit
    );
    shared
        .notifier
        .status("server crash loop: falling back to the previous build");
    let _ = shared
        .portal
        .notice("[ev] The game's new code keeps crashing; going back to the code that ran before. Stay connected.")
        .await;
    shared.update(|s| {
        s.last_serving_build = Some(to.clone());
        // Never forward again to the build that crashed: a fix comes by a reload.
        s.previous_build = None;
        s.crash_looped = false;
        s.crash_streak = 0;
        s.fallbacks += 1;
        s.build_note = format!(
            "fell back from build {from}, which crashed soon after taking over (last: {why})"
        );
    });
    match start_serving(shared).await {
        Ok(()) => {
            tracing::warn!("build {to} serves again in place of build {from}");
            let _ = shared
                .portal
                .notice_admins(&format!(
                    "[ev] Build {from} kept crashing after it took over (last: {why}); the game runs build {to} again. Fix it and reload."
                ))
                .await;
        }
        Err(e) if e.too_old => {
            // That build would misread the world the new one migrated:
            // better down than wrong.
            tracing::error!(
                "cannot fall back to build {to}: {}; the game stays down until a fixed build is reloaded",
                e.error
            );
            let note = format!(
                "build {from} crash-looped; no fallback to build {to}: a newer build migrated the database past it"
            );
            shared.update(|s| {
                s.last_serving_build = Some(from.clone());
                s.crash_looped = true;
                s.last_exit_reason = e.error.clone();
                s.build_note = note;
            });
            shared
                .notifier
                .status("server crash loop: not restarting, no fallback");
            let _ = shared.portal.notice(GAME_DOWN).await;
        }
        Err(e) => {
            // Counted like any failed start: its own crash loop ends the
            // restarts, with nothing left to fall back to.
            tracing::error!("build {to} failed to start as the fallback: {}", e.error);
            let limit = shared.config().supervisor.crash_loop_limit;
            shared.update(|s| {
                s.crashes += 1;
                record_failure(s, e.error, Duration::ZERO, limit);
            });
        }
    }
}

async fn start_serving(shared: &Arc<Shared>) -> Result<(), launch::StartError> {
    let started = launch::start_server(shared, launch::Build::LastServing).await?;
    if let Err(e) = launch::activate(shared, &started).await {
        started.child.kill().await;
        return Err(launch::StartError::new(e));
    }
    launch::make_serving(shared, &started).map_err(launch::StartError::new)?;
    shared.update(|s| s.storage_streak = 0);
    shared.notifier.ready();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_crash_restarts_at_once_then_the_wait_doubles_to_the_cap() {
        let waits: Vec<u64> = (0..9)
            .map(|n| backoff(n, 250, 10_000).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 0, 250, 500, 1000, 2000, 4000, 8000, 10_000]);
    }

    #[test]
    fn huge_streaks_do_not_overflow() {
        assert_eq!(
            backoff(u32::MAX, 250, 10_000),
            Duration::from_millis(10_000)
        );
        assert_eq!(
            backoff(200, u64::MAX / 2, u64::MAX),
            Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn a_crash_loop_soon_after_a_new_build_took_over_falls_back_to_the_one_before() {
        let window = Duration::from_secs(300);
        let mut s = State {
            last_serving_build: Some("new".into()),
            previous_build: Some("old".into()),
            build_since: Some(std::time::Instant::now()),
            ..State::default()
        };
        // Crashing, not yet looping: restarts of the same build first.
        assert_eq!(fallback_due(&s, window), None);
        s.crash_looped = true;
        assert_eq!(fallback_due(&s, window), Some(("new".into(), "old".into())));
        // Turned off, or nothing to go back to, or the build served for long.
        assert_eq!(fallback_due(&s, Duration::ZERO), None);
        let long_ago = std::time::Instant::now().checked_sub(Duration::from_secs(301));
        if let Some(long_ago) = long_ago {
            let settled = State {
                build_since: Some(long_ago),
                crash_looped: true,
                last_serving_build: Some("new".into()),
                previous_build: Some("old".into()),
                ..State::default()
            };
            assert_eq!(fallback_due(&settled, window), None);
        }
        s.previous_build = None;
        assert_eq!(fallback_due(&s, window), None);
    }

    #[test]
    fn crash_loop_limit_and_healthy_reset() {
        let mut s = State::default();
        for _ in 0..4 {
            record_failure(&mut s, "boom".into(), Duration::from_secs(1), 5);
        }
        assert!(!s.crash_looped);
        assert_eq!(s.crash_streak, 4);
        // A server that served long enough resets the count.
        record_failure(&mut s, "late".into(), HEALTHY_AFTER, 5);
        assert_eq!(s.crash_streak, 1);
        assert_eq!(s.last_exit_reason, "late");
        for _ in 0..4 {
            record_failure(&mut s, "boom".into(), Duration::ZERO, 5);
        }
        assert!(s.crash_looped);
        // One loop, however many failures follow it.
        record_failure(&mut s, "boom".into(), Duration::ZERO, 5);
        assert_eq!(s.crash_loops, 1);
    }
}
