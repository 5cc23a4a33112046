//! `provision`: create the bench accounts before a run, so that logging in
//! thousands of sessions later measures the game, not its password hash.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Client, LoggedIn, LoginMode};
use crate::game::Game;
use crate::report::Outcome;
use crate::stats::{Samples, Summary, ms};

#[derive(Debug, Serialize)]
struct Report {
    sessions: u32,
    created: u64,
    existed: u64,
    failed: u64,
    first_error: Option<String>,
    elapsed_ms: f64,
    accounts_per_s: f64,
    /// From `create` sent to the success line, for accounts created now.
    creation_us: Summary,
}

pub async fn provision(game: Arc<Game>, sessions: u32) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(game.login_concurrency));
    let mut tasks = JoinSet::new();
    for index in 0..sessions {
        let name = game.name(index)?;
        let game = game.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            let deadline = Instant::now() + game.login_timeout;
            let result: Result<LoggedIn, String> = async {
                let mut client = Client::connect(&game).await.map_err(|e| e.to_string())?;
                client
                    .login(&game, &name, LoginMode::CreateOrConnect, deadline)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            result.map_err(|e| format!("{name}: {e}"))
        });
    }
    let (mut created, mut existed, mut failed) = (0, 0, 0);
    let mut first_error = None;
    let mut creation = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(login)) if login.created => {
                created += 1;
                creation.push(login.elapsed.as_micros() as u64);
            }
            Ok(Ok(_)) => existed += 1,
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = Report {
        sessions,
        created,
        existed,
        failed,
        first_error,
        elapsed_ms: elapsed * 1000.0,
        accounts_per_s: f64::from(sessions) / elapsed.max(1e-9),
        creation_us: creation.summary(),
    };
    let c = &report.creation_us;
    let mut human = format!(
        "provision: {sessions} accounts in {elapsed:.1} s ({:.0}/s): {created} created, {existed} existed, {failed} failed; creation p50 {} ms, p99 {} ms, max {} ms",
        report.accounts_per_s,
        ms(c.p50),
        ms(c.p99),
        ms(c.max)
    );
    if let Some(e) = &report.first_error {
        human.push_str(&format!("; first error: {e}"));
    }
    Ok(Outcome::new("provision", human, &report, failed == 0))
}
