//! `hold` (N idle sessions logged in while a command runs: how memory is
//! measured) and `login` (one login, retried while the game comes up: how
//! start-to-first-login is measured).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Client, LoginError, LoginMode};
use crate::fleet::login_all;
use crate::game::Game;
use crate::report::Outcome;
use crate::workload::{CmdRun, run_cmd};

/// Longest a `--then` command may run.
const THEN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
struct HoldReport {
    sessions: u32,
    login_ms: f64,
    then: Option<CmdRun>,
    held_s: f64,
    sessions_closed: u64,
}

pub async fn hold(
    game: Arc<Game>,
    sessions: u32,
    then: Option<String>,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let members = if sessions > 0 {
        login_all(&game, sessions, LoginMode::Connect).await?
    } else {
        Vec::new()
    };
    let login_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (release_tx, release_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for member in members {
        let mut release = release_rx.clone();
        let mut client = member.client;
        tasks.spawn(async move { client.drain_until(&mut release).await.is_err() });
    }
    let held = Instant::now();
    let then = match then {
        Some(command) => Some(run_cmd(&command, THEN_LIMIT).await),
        None => None,
    };
    tokio::time::sleep(duration).await;
    let held_s = held.elapsed().as_secs_f64();
    let _ = release_tx.send(true);
    let mut closed = 0;
    while let Some(joined) = tasks.join_next().await {
        closed += u64::from(joined.context("holding task")?);
    }
    let report = HoldReport {
        sessions,
        login_ms,
        then,
        held_s,
        sessions_closed: closed,
    };
    let mut human = format!(
        "hold: {sessions} sessions logged in in {login_ms:.0} ms, held {held_s:.1} s, {closed} closed"
    );
    if let Some(run) = &report.then {
        human.push_str(&format!(
            "; command exit {:?}: {}",
            run.exit_code, run.last_line
        ));
    }
    let ok = closed == 0 && report.then.as_ref().is_none_or(CmdRun::succeeded);
    Ok(Outcome::new("hold", human, &report, ok))
}

#[derive(Debug, Serialize)]
struct LoginReport {
    name: String,
    created: bool,
    attempts: u32,
    /// From this command's start to the success line, retries included.
    elapsed_ms: f64,
    /// The successful attempt alone, from the login command to the success line.
    login_ms: f64,
}

pub async fn login_once(
    game: Arc<Game>,
    name: Option<String>,
    create: bool,
    retry: Duration,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let name = match name {
        Some(name) => name,
        None => game.name(0)?,
    };
    let mode = if create {
        LoginMode::CreateOrConnect
    } else {
        LoginMode::Connect
    };
    let give_up = started + retry;
    let mut attempts = 0;
    let login = loop {
        attempts += 1;
        let deadline = Instant::now() + game.login_timeout;
        let attempt = async {
            let mut client = Client::connect(&game).await?;
            client.login(&game, &name, mode, deadline).await
        }
        .await;
        match attempt {
            Ok(login) => break login,
            // Not listening yet, or closed while starting: try again.
            Err(LoginError::Connect(_) | LoginError::Closed) if Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => bail!("login as {name} failed after {attempts} attempts: {e}"),
        }
    };
    let report = LoginReport {
        name,
        created: login.created,
        attempts,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        login_ms: login.elapsed.as_secs_f64() * 1000.0,
    };
    let human = format!(
        "login: {} {} in {:.1} ms ({} attempts; the login itself {:.1} ms)",
        report.name,
        if report.created {
            "created"
        } else {
            "logged in"
        },
        report.elapsed_ms,
        attempts,
        report.login_ms
    );
    Ok(Outcome::new("login", human, &report, true))
}
