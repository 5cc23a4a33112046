//! systemd's watchdog and status line.
//!
//! With `WatchdogSec=` set, systemd passes `WATCHDOG_USEC` and restarts the
//! service if `WATCHDOG=1` stops coming. A timer that pings regardless would
//! keep a deadlocked supervisor alive, so each ping is earned: it goes
//! through the supervisor's shared state (what a reload and `evctl status`
//! go through) and a `Status` call to the portal, answered within the
//! interval. A hung portal or a stuck supervisor stops the pings; a hung
//! *server* does not, since replacing it is the supervisor's job, and
//! restarting the unit would drop every player.
//!
//! Each round also sends `STATUS=`, the line `systemctl status` shows:
//! sessions and players, the server's generation and build, the last
//! reload's dark time, or that the server is down in a crash loop.

use std::sync::Arc;
use std::time::Duration;

use crate::supervisor::{Shared, State};

/// How often the status line is refreshed without a watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The ping interval systemd asks for (half its timeout), if any, and only
/// if the watchdog is meant for this process.
pub(crate) fn interval_from_env() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Runs until stop. Does nothing unless systemd listens.
pub(crate) async fn watch(shared: Arc<Shared>) {
    if !shared.notifier.enabled() {
        return;
    }
    let watchdog = interval_from_env();
    let every = watchdog.unwrap_or(STATUS_EVERY);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shared.stop.cancelled() => return,
        }
        let portal = tokio::time::timeout(every, shared.portal.status()).await;
        // Read after the portal's answer, not before: a READY=1 sent while
        // the portal answered must not be followed by an older line.
        let line = shared.read(status_line);
        let line = match &portal {
            Ok(Ok(status)) => format!(
                "{} sessions ({} playing); {line}",
                status.sessions, status.logged_in
            ),
            _ => format!("portal not answering; {line}"),
        };
        match (watchdog, portal) {
            (Some(_), Ok(Ok(_))) => shared.notifier.alive(&line),
            _ => shared.notifier.status(&line),
        }
    }
}

/// What the supervisor's state says of the server.
fn status_line(s: &State) -> String {
    if s.stopping {
        return "stopping".into();
    }
    if s.crash_looped {
        return "server down: crash loop (fix it, then evctl reload)".into();
    }
    let Some(serving) = s.serving() else {
        return "server restarting".into();
    };
    let build = serving.build_id.get(..12).unwrap_or(&serving.build_id);
    let mut line = format!("server generation {} (build {build})", serving.generation);
    if let Some(dark) = s.last_dark_micros {
        line.push_str(&format!(
            ", last reload dark {:.1} ms",
            dark as f64 / 1000.0
        ));
    }
    if s.fallbacks > 0 && !s.build_note.is_empty() {
        line.push_str("; fell back: the newer build crash-looped");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_status_line_says_what_matters_first() {
        let mut s = State::default();
        assert_eq!(status_line(&s), "server restarting");
        s.crash_looped = true;
        assert!(status_line(&s).starts_with("server down: crash loop"));
        s.crash_looped = false;
        s.fallbacks = 1;
        s.build_note = "fell back from build 0123".into();
        // Any live pid will do for a child nobody waits on.
        let pid = std::process::id();
        s.servers.insert(
            pid,
            crate::supervisor::ServerProc {
                child: crate::child::Child::adopt("server", pid),
                generation: 4,
                build_id: "abcdef0123456789".into(),
                role: crate::supervisor::Role::Serving,
                serving_since: None,
            },
        );
        let line = status_line(&s);
        assert!(
            line.starts_with("server generation 4 (build abcdef012345)"),
            "{line}"
        );
        assert!(
            line.ends_with("fell back: the newer build crash-looped"),
            "{line}"
        );
        s.stopping = true;
        assert_eq!(status_line(&s), "stopping");
    }
}
