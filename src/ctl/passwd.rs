//! `evctl passwd NAME`: sets the password of an account, the way to get
//! back into a game whose admin password is lost.
//!
//! It runs the server binary that ev.toml names (`ev-server set-password`,
//! as `evctl init --admin` runs `create-admin`), with the password in its
//! environment, never in an argument. That works on a stopped game and on a
//! running one alike: the database lets a second writer in, and the running
//! server reads an account's hash at each login, so the next login takes
//! the new password and the old one is refused. Players in play stay.

use std::process::{Command, Stdio};

use super::start::server_binary;
use super::{EXIT_OK, Failure, Outcome, password, say};
use crate::config::Config;
use crate::gamedir::GameDir;

/// What the server prefixes to its error line.
const SERVER_PREFIX: &str = "ev-server: set-password failed: ";

pub fn run(game: &GameDir, name: &str) -> Outcome {
    let fail =
        |e: &dyn std::fmt::Display| Failure::new(format!("cannot set the password of {name}: {e}"));
    let config = Config::load(&game.config_path()).map_err(|e| fail(&e))?;
    let server = server_binary(game, &config).map_err(|e| fail(&e))?;
    let password = password::new_password(name)?;
    let out = Command::new(&server)
        .arg("--game-dir")
        .arg(game.root())
        .args(["set-password", name])
        .env(password::NEW_PASSWORD_VAR, password)
        .env_remove(password::ADMIN_PASSWORD_VAR)
        .env("EV_GAME_DIR", game.root())
        // Its own line says what it did; its log lines are noise here.
        .env("EV_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(&format!("running {}: {e}", server.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.strip_prefix(SERVER_PREFIX).unwrap_or(l).to_owned())
            .unwrap_or_else(|| format!("{} {}", server.display(), out.status));
        return Err(fail(&why));
    }
    let done = stdout.lines().next().unwrap_or("password set");
    say(format!(
        "{done}; it is asked at the next login (players in play stay logged in)"
    ))?;
    Ok(EXIT_OK)
}
