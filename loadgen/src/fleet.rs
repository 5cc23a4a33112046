//! Logging in many sessions: bounded concurrency, and every session that is in
//! keeps reading while the others log in (a game that tells the room about
//! each arrival would otherwise fill their buffers and drop them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use crate::client::{Client, LoginError, LoginMode};
use crate::game::Game;

/// A session that is in, owned by the workload from here on.
pub struct Member {
    pub index: u32,
    pub name: String,
    pub client: Client,
}

/// Logs in sessions `0..count` and returns them all, in index order, or an
/// error naming how many failed and the first reason.
pub async fn login_all(
    game: &Arc<Game>,
    count: u32,
    mode: LoginMode,
) -> anyhow::Result<Vec<Member>> {
    let names = (0..count)
        .map(|i| game.name(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    login_named(game, names, mode).await
}

pub async fn login_named(
    game: &Arc<Game>,
    names: Vec<String>,
    mode: LoginMode,
) -> anyhow::Result<Vec<Member>> {
    let count = names.len();
    let permits = Arc::new(Semaphore::new(game.login_concurrency));
    let (release_tx, release_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let phase_over = Instant::now() + game.login_phase_timeout;
    let mut tasks = JoinSet::new();
    for (index, name) in names.into_iter().enumerate() {
        let game = game.clone();
        let permits = permits.clone();
        let mut release = release_rx.clone();
        let done = done_tx.clone();
        tasks.spawn(async move {
            let outcome = async {
                let _permit = timeout_at(phase_over.into(), permits.acquire_owned())
                    .await
                    .map_err(|_| LoginError::PhaseOver)?
                    .map_err(|_| LoginError::Closed)?;
                let deadline = phase_over.min(Instant::now() + game.login_timeout);
                let mut client = Client::connect(&game).await?;
                client
                    .login(&game, &name, mode, deadline)
                    .await
                    .map_err(|e| match e {
                        LoginError::Timeout { .. } if Instant::now() >= phase_over => {
                            LoginError::PhaseOver
                        }
                        e => e,
                    })?;
                Ok::<_, LoginError>(client)
            }
            .await;
            let mut client = match outcome {
                Ok(ok) => ok,
                Err(e) => {
                    let _ = done.send(Err(format!("{name}: {e}")));
                    return Err(format!("{name}: {e}"));
                }
            };
            let _ = done.send(Ok(()));
            client
                .drain_until(&mut release)
                .await
                .map_err(|e| format!("{name}: lost while the others logged in: {e}"))?;
            Ok(Member {
                index: index as u32,
                name,
                client,
            })
        });
    }
    drop(done_tx);

    let started = Instant::now();
    let mut last_progress = Instant::now();
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut first_error = None;
    while ok + failed < count {
        let Some(result) = done_rx.recv().await else {
            break;
        };
        match result {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        if count >= 1000 && last_progress.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "ev-loadgen: {ok}/{count} logged in after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
    }
    let _ = release_tx.send(true);

    let mut members = Vec::with_capacity(count);
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.context("login task")? {
            Ok(member) => members.push(member),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        let first = first_error.unwrap_or_else(|| errors[0].clone());
        bail!(
            "{} of {count} sessions failed to log in or were dropped while waiting ({failed} at login); first: {first}",
            errors.len()
        );
    }
    members.sort_by_key(|m| m.index);
    Ok(members)
}
