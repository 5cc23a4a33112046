//! `evctl backup [FILE]` and `evctl restore FILE`, done by the server
//! binary named in ev.toml (its `backup` and `restore` subcommands), the one
//! program that knows the game's database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use super::start::server_binary;
use super::{EXIT_OK, Failure, Outcome, probe, say};
use crate::config::Config;
use crate::gamedir::GameDir;

/// Copies the running (or stopped) game's database to `file`, by default
/// backups/game-YYYYMMDD-HHMMSS.db in the game directory.
pub fn backup(game: &GameDir, file: Option<PathBuf>) -> Outcome {
    let file = file.unwrap_or_else(|| {
        game.root()
            .join("backups")
            .join(format!("game-{}.db", stamp(SystemTime::now())))
    });
    run_server(game, "backup", &file)
}

/// Puts `file` in place of a stopped game's database.
pub fn restore(game: &GameDir, file: &Path) -> Outcome {
    let running = probe::live(game);
    if !running.is_empty() {
        return Err(Failure::new(format!(
            "cannot restore while the game runs ({}): stop it first with `evctl stop`",
            probe::describe(&running)
        )));
    }
    run_server(game, "restore", file)
}

fn run_server(game: &GameDir, subcommand: &str, file: &Path) -> Outcome {
    let fail = |e: &dyn std::fmt::Display| Failure::new(format!("{subcommand} failed: {e}"));
    let config = Config::load(&game.config_path()).map_err(|e| fail(&e))?;
    let server = server_binary(game, &config).map_err(|e| fail(&e))?;
    // Relative to where evctl was run, as the operator typed it.
    let file = std::path::absolute(file).map_err(|e| fail(&e))?;
    let out = Command::new(&server)
        .arg("--game-dir")
        .arg(game.root())
        .arg(subcommand)
        .arg(&file)
        .env("EV_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(&format!("running {}: {e}", server.display())))?;
    if out.status.success() {
        say(String::from_utf8_lossy(&out.stdout).trim_end())?;
        Ok(EXIT_OK)
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        let why = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim_start_matches("ev-server: ").trim().to_owned())
            .unwrap_or_else(|| format!("{} {}", server.display(), out.status));
        Err(Failure::new(why))
    }
}

/// `YYYYMMDD-HHMMSS`, UTC.
fn stamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_times() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(stamp(at(0)), "19700101-000000");
        assert_eq!(stamp(at(951_782_400)), "20000229-000000");
        assert_eq!(stamp(at(1_796_009_532)), "20261130-033212");
    }
}
