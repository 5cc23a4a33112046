//! The engine: the one task that owns the game and the store.
//!
//! It waits on two things: batches from the portal and finished password
//! jobs. Each is applied inside one transaction (group commit: a whole
//! received batch, split at `server.max_batch` inputs, plus whatever batches
//! were already queued behind it), and what the game produced is sent as one
//! batch only after the commit. Password jobs run on the auth [`Pool`]
//! (after too many failed logins, once a delay has passed on a timer);
//! neither blocks the engine. At most `password_workers + password_queue`
//! jobs exist at once: each transaction's [`Outbox`] says how many more the
//! game may start, and the game tells a player past that to try again.
//!
//! [`Pool`]: crate::auth::Pool
//!
//! A Drain stops the engine taking new work: it finishes the jobs in flight
//! (and the inputs queued behind them), sends `Drained` and returns.
//!
//! What a transaction sends to players is in its outbox rows (see `game`),
//! so the send after the commit may be lost to a crash: the next server
//! re-sends it. `Delivered` from the portal prunes those rows, in the next
//! transaction (it never opens one of its own).
//!
//! A [`Watchdog`] thread aborts the process if one transaction runs past
//! `server.command_timeout_ms`. The test build also arms a [`Failpoint`].

mod watchdog;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::auth::{Outcome, Pool};
use crate::event::{Batch, Inbound, Outbound, SessionId};
use crate::failpoint::{Failpoint, Point};
use crate::game::{Game, Job, JobId, Outbox};
use crate::store::{Store, StoreError};
pub use watchdog::Watchdog;
use watchdog::Work;

/// After the `after_output` failpoint's message left the engine, how long
/// the transport gets to write it before the abort (test build only).
const FAILPOINT_FLUSH: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the portal closed the link without a Drain")]
    PortalGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A finished password job.
struct Done {
    job: JobId,
    session: SessionId,
    outcome: Outcome,
}

pub struct Engine {
    game: Game,
    store: Store,
    pool: Pool,
    /// Most password jobs in existence at once, running or waiting.
    max_jobs: usize,
    max_batch: usize,
    failure_delay: Duration,
    jobs: JoinSet<Done>,
    migrated: bool,
    draining: bool,
    /// Delivered marks waiting for the next transaction.
    delivered: HashMap<SessionId, u64>,
    failpoint: Option<Failpoint>,
    watchdog: Option<Watchdog>,
}

impl Engine {
    pub fn new(
        game: Game,
        store: Store,
        pool: Pool,
        max_jobs: usize,
        max_batch: usize,
        failure_delay: Duration,
    ) -> Engine {
        Engine {
            game,
            store,
            pool,
            max_jobs,
            max_batch: max_batch.max(1),
            failure_delay,
            jobs: JoinSet::new(),
            migrated: false,
            draining: false,
            delivered: HashMap::new(),
            failpoint: None,
            watchdog: None,
        }
    }

    /// Arms a failpoint (test build only).
    pub fn with_failpoint(mut self, failpoint: Option<Failpoint>) -> Engine {
        self.failpoint = failpoint;
        self
    }

    /// Watches every transaction.
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Engine {
        self.watchdog = Some(watchdog);
        self
    }

    /// Serves until a Drain is done (Ok) or the portal goes away.
    pub async fn serve(
        mut self,
        mut inbound: mpsc::Receiver<Vec<Inbound>>,
        outbound: mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        loop {
            if self.draining && self.jobs.is_empty() {
                send(&outbound, vec![Outbound::Drained]).await?;
                tracing::info!("drained");
                return Ok(());
            }
            tokio::select! {
                batch = inbound.recv() => {
                    let Some(mut events) = batch else {
                        return Err(EngineError::PortalGone);
                    };
                    // Whatever is already queued joins this group commit.
                    while inputs(&events) < self.max_batch && !has_drain(&events) {
                        match inbound.try_recv() {
                            Ok(more) => events.extend(more),
                            Err(_) => break,
                        }
                    }
                    self.apply(events, &outbound).await?;
                }
                Some(joined) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    let mut done = Vec::new();
                    let mut next = Some(joined);
                    while let Some(joined) = next {
                        match joined {
                            Ok(d) => done.push(d),
                            Err(e) => tracing::error!("password job lost: {e}"),
                        }
                        next = self.jobs.try_join_next();
                    }
                    self.complete(done, &outbound).await?;
                }
            }
        }
    }

    /// Applies a run of portal events, one transaction per `max_batch` inputs.
    async fn apply(
        &mut self,
        events: Vec<Inbound>,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        let mut chunk = Vec::new();
        let mut count = 0;
        for event in events {
            count += usize::from(matches!(event, Inbound::Input { .. }));
            chunk.push(event);
            if count >= self.max_batch {
                self.apply_chunk(std::mem::take(&mut chunk), outbound)
                    .await?;
                count = 0;
            }
        }
        if !chunk.is_empty() {
            self.apply_chunk(chunk, outbound).await?;
        }
        Ok(())
    }

    async fn apply_chunk(
        &mut self,
        events: Vec<Inbound>,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        let mut out = Outbox::with_job_room(self.job_room());
        let inputs = if self.draining { 0 } else { inputs(&events) };
        let result = self.transact(events, inputs, &mut out);
        self.watched(Watchdog::end);
        result?;
        if inputs > 0 {
            self.hit(Point::AfterCommit);
        }
        self.send(out, outbound, inputs > 0).await
    }

    /// Applies `events` (`inputs` of them inputs) in one transaction and
    /// commits it.
    fn transact(
        &mut self,
        events: Vec<Inbound>,
        inputs: usize,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let needs_tx = !self.draining && events.iter().any(is_game_event);
        if needs_tx {
            self.migrate_once()?;
        }
        let tx = if needs_tx {
            self.watched(Watchdog::begin);
            let tx = self.store.begin()?;
            for (session, seq) in self.delivered.drain() {
                tx.prune_outbox(session, seq)?;
            }
            Some(tx)
        } else {
            None
        };
        let mut applied = 0;
        for event in events {
            match event {
                Inbound::Heartbeat { nonce } => out.push(Outbound::Heartbeat { nonce }),
                Inbound::Drain { reason } => {
                    tracing::info!(reason, "draining");
                    self.draining = true;
                }
                Inbound::Delivered { session, seq } if tx.is_none() => {
                    let mark = self.delivered.entry(session).or_default();
                    *mark = (*mark).max(seq);
                }
                event if self.draining => {
                    // Not acknowledged, so the portal hands it to the next server.
                    tracing::warn!("ignoring {} received after Drain", kind(&event));
                }
                event => match &tx {
                    Some(tx) => {
                        let input = matches!(event, Inbound::Input { .. });
                        if let (Some(dog), Inbound::Input { session, seq, text }) =
                            (&self.watchdog, &event)
                        {
                            dog.applying(Work::Input {
                                session: *session,
                                seq: *seq,
                                text: watchdog::loggable(text),
                            });
                        }
                        self.game.handle(tx, event, out)?;
                        applied += usize::from(input);
                        if input && inputs >= 2 && applied == inputs / 2 {
                            if let Some(failpoint) = &mut self.failpoint {
                                failpoint.hit(Point::MidBatch);
                            }
                        }
                    }
                    None => tracing::error!("no transaction for {}", kind(&event)),
                },
            }
        }
        match tx {
            Some(tx) => tx.commit(),
            None => Ok(()),
        }
    }

    async fn complete(
        &mut self,
        done: Vec<Done>,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        let mut out = Outbox::with_job_room(self.job_room());
        let result = self.resume(done, &mut out);
        self.watched(Watchdog::end);
        result?;
        self.send(out, outbound, false).await
    }

    /// Applies finished jobs in one transaction and commits it. (Kept out of
    /// the async functions: a transaction must never live across an await.)
    fn resume(&mut self, done: Vec<Done>, out: &mut Outbox) -> Result<(), StoreError> {
        self.migrate_once()?;
        self.watched(Watchdog::begin);
        let tx = self.store.begin()?;
        for (session, seq) in self.delivered.drain() {
            tx.prune_outbox(session, seq)?;
        }
        for d in done {
            if let Some(dog) = &self.watchdog {
                dog.applying(Work::Password { session: d.session });
            }
            self.game.resume(&tx, d.job, d.session, d.outcome, out)?;
        }
        tx.commit()
    }

    /// Sends what a committed transaction produced and starts its jobs.
    /// `inputs`: the transaction applied inputs (for the failpoint).
    async fn send(
        &mut self,
        out: Outbox,
        outbound: &mpsc::Sender<Batch>,
        inputs: bool,
    ) -> Result<(), EngineError> {
        let (mut events, jobs) = out.finish();
        let split = inputs
            && self
                .failpoint
                .as_ref()
                .is_some_and(|f| f.point == Point::AfterOutput);
        if split {
            // The outputs as a message of their own, on the wire; die
            // before the acks follow.
            let (acks, sent): (Vec<Outbound>, Vec<Outbound>) = events
                .into_iter()
                .partition(|e| matches!(e, Outbound::Ack { .. }));
            let (handed, taken) = oneshot::channel();
            outbound
                .send(Batch {
                    events: sent,
                    handed: Some(handed),
                })
                .await
                .map_err(|_| EngineError::PortalGone)?;
            if taken.await.is_err() {
                return Err(EngineError::PortalGone);
            }
            tokio::time::sleep(FAILPOINT_FLUSH).await;
            self.hit(Point::AfterOutput);
            events = acks;
        }
        // The portal must not take a login's wait for a stalled server.
        events.extend(jobs.iter().map(|job| Outbound::Working {
            session: job.session,
            seq: job.seq,
        }));
        if !events.is_empty() {
            send(outbound, events).await?;
        }
        for job in jobs {
            self.spawn(job);
        }
        Ok(())
    }

    fn hit(&mut self, point: Point) {
        if let Some(failpoint) = &mut self.failpoint {
            failpoint.hit(point);
        }
    }

    fn watched(&self, f: impl FnOnce(&Watchdog)) {
        if let Some(dog) = &self.watchdog {
            f(dog);
        }
    }

    /// How many more password jobs may start.
    fn job_room(&self) -> usize {
        self.max_jobs.saturating_sub(self.jobs.len())
    }

    fn spawn(&mut self, job: Job) {
        let pool = self.pool.clone();
        let delay = job.delay.then_some(self.failure_delay);
        self.jobs.spawn(async move {
            // The delay comes first and holds no worker.
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let outcome = pool.run(job.work, &job.abandon).await;
            Done {
                job: job.id,
                session: job.session,
                outcome,
            }
        });
    }

    /// The schema is brought up to date only when there is work to do: a
    /// standby must not change it while the active server still serves.
    fn migrate_once(&mut self) -> Result<(), StoreError> {
        if !self.migrated {
            self.store.migrate()?;
            self.migrated = true;
        }
        Ok(())
    }
}

async fn send(outbound: &mpsc::Sender<Batch>, events: Vec<Outbound>) -> Result<(), EngineError> {
    outbound
        .send(events.into())
        .await
        .map_err(|_| EngineError::PortalGone)
}

fn inputs(events: &[Inbound]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Inbound::Input { .. }))
        .count()
}

fn has_drain(events: &[Inbound]) -> bool {
    events.iter().any(|e| matches!(e, Inbound::Drain { .. }))
}

/// Whether an event needs a transaction. A Delivered alone waits for one.
fn is_game_event(event: &Inbound) -> bool {
    !matches!(
        event,
        Inbound::Heartbeat { .. } | Inbound::Drain { .. } | Inbound::Delivered { .. }
    )
}

/// An event's name for a log line (input text may hold a password).
fn kind(event: &Inbound) -> &'static str {
    match event {
        Inbound::Opened { .. } => "SessionOpened",
        Inbound::Input { .. } => "Input",
        Inbound::Closed { .. } => "SessionClosed",
        Inbound::Sync { .. } => "Sync",
        Inbound::Drain { .. } => "Drain",
        Inbound::Heartbeat { .. } => "Heartbeat",
        Inbound::Delivered { .. } => "Delivered",
    }
}

#[cfg(test)]
mod tests;
