//! ev.toml as the supervisor holds it: read at start, and again at each
//! reload, so that a fixed `server.binary` or a changed server setting is
//! picked up by `evctl reload` rather than only by a stop and a start.
//!
//! A reload applies what a new server reads (it loads ev.toml itself: the
//! `[game]`, `[auth]`, `[database]` and most `[server]` keys) and what the
//! supervisor reads where it uses it (`server.binary` and the timeouts,
//! `[supervisor]` but its metrics address). The portal read its settings
//! when it started and keeps them, as the auto-reload watcher keeps its path
//! and the metrics listener its address: those changes are named back to
//! the operator, never silently dropped.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ev::config::Config;
use ev::gamedir::GameDir;

pub(crate) struct Settings {
    /// What ev.toml said when last read.
    config: Config,
    /// The server binary it names, resolved against the game directory.
    pub server_bin: PathBuf,
    /// ev.toml as the portal and the supervisor's start read it.
    pub running: Arc<Config>,
}

impl Settings {
    pub fn new(config: Config, game: &GameDir, beside: &Path) -> Settings {
        let server_bin = if config.server.binary.as_os_str().is_empty() {
            beside.join("ev-server")
        } else {
            game.root().join(&config.server.binary)
        };
        Settings {
            running: Arc::new(config.clone()),
            config,
            server_bin,
        }
    }
}

impl Settings {
    /// `fresh` in place of what was read before; the running config stays.
    pub fn reread(&self, fresh: Config, game: &GameDir, beside: &Path) -> Settings {
        Settings {
            running: self.running.clone(),
            ..Settings::new(fresh, game, beside)
        }
    }
}

impl Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// `[server]` keys read once, at start: the portal's heartbeat period and the
/// auto-reload watcher.
const SERVER_AT_START: [&str; 3] = [
    "server.heartbeat_ms",
    "server.auto_reload",
    "server.auto_reload_settle_ms",
];

/// `[supervisor]` keys read once, at start: the metrics listener is bound
/// then, and a scraper would rather not see it move under a reload.
const SUPERVISOR_AT_START: [&str; 1] = ["supervisor.metrics"];

/// The keys that differ between `running` and `fresh` but take effect only
/// when the game is restarted, each as `section.key (running X, ev.toml Y)`.
pub(crate) fn restart_only_changes(running: &Config, fresh: &Config) -> Vec<String> {
    running
        .differences(fresh)
        .into_iter()
        .filter(|d| {
            d.key.starts_with("portal.")
                || SERVER_AT_START.contains(&d.key.as_str())
                || SUPERVISOR_AT_START.contains(&d.key.as_str())
        })
        .map(|d| format!("{} (running {}, ev.toml {})", d.key, d.was, d.now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_and_start_only_server_keys_are_named_the_rest_is_not() {
        let running = Config::default();
        let mut fresh = Config::default();
        fresh.portal.max_line_bytes = 100;
        fresh.server.heartbeat_ms = 250;
        fresh.server.binary = "elsewhere/ev-server".into();
        fresh.server.drain_timeout_ms = 1;
        fresh.auth.failure_delay_ms = 5;
        fresh.supervisor.crash_loop_limit = 9;
        fresh.supervisor.metrics = "127.0.0.1:9100".into();
        assert_eq!(
            restart_only_changes(&running, &fresh),
            [
                "portal.max_line_bytes (running 4096, ev.toml 100)",
                "server.heartbeat_ms (running 1000, ev.toml 250)",
                "supervisor.metrics (running \"\", ev.toml \"127.0.0.1:9100\")",
            ]
        );
        assert!(restart_only_changes(&running, &running).is_empty());
    }
}
