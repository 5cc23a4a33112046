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
//!
//! # Storage faults
//! A transaction that fails because storage does (disk full, read-only,
//! I/O error: [`StoreError::is_outage`]) is not a crash: the engine
//! *stalls*. If the failure came before the game saw any event (the start of
//! the transaction), the events are held as they are. If it came at the
//! commit, the game in memory has already applied them; the store kept the
//! transaction's writes, and [`Store::retry`] makes them again. Either way
//! the engine retries after 50 ms, the wait doubling up to
//! `database.retry_max_ms`, until it commits, then sends what it produced
//! and runs what arrived meanwhile, in order. While stalled it answers the
//! portal's heartbeats (it is not hung) and nothing else: no input is acked,
//! so the portal keeps them all and tells players the game is paused.
//! A storage error in the middle of the game's work leaves memory half-way
//! through a batch; only then does the process exit (a crash, as before).

mod watchdog;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::auth::{Outcome, Pool};
use crate::event::{Batch, Inbound, Outbound, SessionId};
use crate::failpoint::{Failpoint, Point};
use crate::game::api::Game;
use crate::game::deferred::Deferred;
use crate::game::{Job, JobId, Kernel, Outbox};
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

/// The first wait before retrying a transaction that failed on storage.
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// How a transaction failed.
enum Failed<T> {
    /// On storage, before the game saw anything: here is the work back.
    Before(StoreError, T),
    /// On storage, at the commit: the game applied it, the store kept its
    /// writes for [`Store::retry`].
    Commit(StoreError),
    /// Anything else: the process cannot go on.
    Fatal(StoreError),
}

/// What the engine takes in, kept in order while it is stalled.
enum Intake {
    Events(Vec<Inbound>),
    Jobs(Vec<Done>),
    /// Results of the game's deferred work.
    Worked(Vec<Worked>),
    /// Fire the timers that are due.
    Timers,
}

/// What a stalled engine holds.
enum Held {
    /// Applied in memory, not committed: [`Store::retry`], then send `out`.
    Applied { out: Outbox, inputs: bool },
    /// Not applied at all: run it again.
    Work(Intake),
}

/// The engine is stalled on storage.
struct Stalled {
    held: Held,
    /// What came in since, to run in order after `held`.
    backlog: VecDeque<Intake>,
    next: tokio::time::Instant,
}

/// A storage outage, from the first failure to the commit that ends it.
struct Outage {
    since: Instant,
    attempts: u32,
}

/// The wait before retry number `attempts` (from 0): [`RETRY_FIRST`],
/// doubling up to `max`.
fn retry_delay(attempts: u32, max: Duration) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempts.min(20))
        .min(max.max(RETRY_FIRST))
}

/// A finished piece of the game's deferred work.
struct Worked {
    id: i64,
    output: Result<serde_json::Value, String>,
}

/// A finished password job.
struct Done {
    job: JobId,
    session: SessionId,
    outcome: Outcome,
}

pub struct Engine<G: Game> {
    game: Kernel<G>,
    store: Store,
    pool: Pool,
    /// Most password jobs in existence at once, running or waiting.
    max_jobs: usize,
    max_batch: usize,
    failure_delay: Duration,
    jobs: JoinSet<Done>,
    /// The game's deferred work running or waiting for a thread.
    work: JoinSet<Worked>,
    /// `server.deferred_workers` threads for it.
    work_threads: Arc<Semaphore>,
    migrated: bool,
    draining: bool,
    /// Delivered marks waiting for the next transaction.
    delivered: HashMap<SessionId, u64>,
    failpoint: Option<Failpoint>,
    watchdog: Option<Watchdog>,
    stalled: Option<Stalled>,
    outage: Option<Outage>,
    retry_max: Duration,
}

impl<G: Game> Engine<G> {
    pub fn new(
        game: Kernel<G>,
        store: Store,
        pool: Pool,
        max_jobs: usize,
        max_batch: usize,
        failure_delay: Duration,
    ) -> Engine<G> {
        Engine {
            game,
            store,
            pool,
            max_jobs,
            max_batch: max_batch.max(1),
            failure_delay,
            jobs: JoinSet::new(),
            work: JoinSet::new(),
            work_threads: Arc::new(Semaphore::new(2)),
            migrated: false,
            draining: false,
            delivered: HashMap::new(),
            failpoint: None,
            watchdog: None,
            stalled: None,
            outage: None,
            retry_max: Duration::from_secs(2),
        }
    }

    /// The longest wait between two retries of a commit that failed on
    /// storage (`database.retry_max_ms`).
    pub fn with_retry_max(mut self, max: Duration) -> Engine<G> {
        self.retry_max = max;
        self
    }

    /// Runs the game's deferred work on at most `threads` threads at once
    /// (`server.deferred_workers`).
    pub fn with_deferred_workers(mut self, threads: usize) -> Engine<G> {
        self.work_threads = Arc::new(Semaphore::new(threads.max(1)));
        self
    }

    /// Arms a failpoint (test build only).
    pub fn with_failpoint(mut self, failpoint: Option<Failpoint>) -> Engine<G> {
        self.failpoint = failpoint;
        self
    }

    /// Watches every transaction.
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Engine<G> {
        self.watchdog = Some(watchdog);
        self
    }

    /// Serves until a Drain is done (Ok) or the portal goes away.
    pub async fn serve(
        &mut self,
        mut inbound: mpsc::Receiver<Vec<Inbound>>,
        outbound: mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        loop {
            if self.draining && self.jobs.is_empty() && self.stalled.is_none() {
                send(&outbound, vec![Outbound::Drained]).await?;
                tracing::info!("drained");
                return Ok(());
            }
            let retry_at = self.stalled.as_ref().map(|s| s.next);
            let timer_at = if self.stalled.is_none() && !self.draining {
                self.game.next_timer().map(wake_at)
            } else {
                None
            };
            tokio::select! {
                batch = inbound.recv() => {
                    let Some(mut events) = batch else {
                        if self.stalled.is_some() {
                            tracing::error!("the portal went away while storage was failing; nothing held was acknowledged, so the next server gets it all");
                        }
                        return Err(EngineError::PortalGone);
                    };
                    if self.stalled.is_some() {
                        self.hold(Intake::Events(events), &outbound).await?;
                        continue;
                    }
                    // Whatever is already queued joins this group commit.
                    while inputs(&events) < self.max_batch && !has_drain(&events) {
                        match inbound.try_recv() {
                            Ok(more) => events.extend(more),
                            Err(_) => break,
                        }
                    }
                    self.apply(events, &outbound).await?;
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                    self.retry(&outbound).await?;
                }
                () = tokio::time::sleep_until(timer_at.unwrap_or_else(tokio::time::Instant::now)), if timer_at.is_some() => {
                    self.fire_timers(&outbound).await?;
                }
                Some(joined) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    let done = finished(joined, &mut self.jobs, "password job lost");
                    if self.stalled.is_some() {
                        self.hold(Intake::Jobs(done), &outbound).await?;
                        continue;
                    }
                    self.complete(done, &outbound).await?;
                }
                // A draining server applies no more results: the rows stay,
                // and the next server runs the work again.
                Some(joined) = self.work.join_next(), if !self.work.is_empty() && !self.draining => {
                    let worked = finished(joined, &mut self.work, "deferred work lost until the next server");
                    if self.stalled.is_some() {
                        self.hold(Intake::Worked(worked), &outbound).await?;
                        continue;
                    }
                    self.finish_work(worked, &outbound).await?;
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
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            count += usize::from(matches!(event, Inbound::Input { .. }));
            chunk.push(event);
            if count >= self.max_batch {
                self.apply_chunk(std::mem::take(&mut chunk), outbound)
                    .await?;
                count = 0;
                if let Some(stalled) = &mut self.stalled {
                    // The rest waits its turn behind the stalled chunk.
                    let rest: Vec<Inbound> = events.collect();
                    if !rest.is_empty() {
                        stalled.backlog.push_back(Intake::Events(rest));
                    }
                    return Ok(());
                }
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
        // Answered at once should the commit fail (again after it succeeds).
        let beats: Vec<Outbound> = events
            .iter()
            .filter_map(|e| match e {
                Inbound::Heartbeat { nonce, .. } => Some(Outbound::Heartbeat {
                    nonce: *nonce,
                    reply: true,
                }),
                _ => None,
            })
            .collect();
        let result = self.transact(events, inputs, &mut out);
        self.watched(Watchdog::end);
        match result {
            Ok(()) => {}
            Err(Failed::Before(error, events)) => {
                return self
                    .stall(Held::Work(Intake::Events(events)), error, outbound)
                    .await;
            }
            Err(Failed::Commit(error)) => {
                if !beats.is_empty() {
                    send(outbound, beats).await?;
                }
                let held = Held::Applied {
                    out,
                    inputs: inputs > 0,
                };
                return self.stall(held, error, outbound).await;
            }
            Err(Failed::Fatal(error)) => return Err(error.into()),
        }
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
    ) -> Result<(), Failed<Vec<Inbound>>> {
        let needs_tx = !self.draining && events.iter().any(is_game_event);
        if needs_tx && let Err(e) = self.migrate_once() {
            return Err(before(e, events));
        }
        let tx = if needs_tx {
            self.watched(Watchdog::begin);
            let tx = match begin(&mut self.store, &mut self.delivered) {
                Ok(tx) => tx,
                Err(e) => return Err(before(e, events)),
            };
            Some(tx)
        } else {
            None
        };
        let mut applied = 0;
        for event in events {
            match event {
                Inbound::Heartbeat { nonce, .. } => {
                    out.push(Outbound::Heartbeat { nonce, reply: true })
                }
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
                                typed: text.clone(),
                                secret: self.game.answers_secret(*session),
                            });
                        }
                        self.game.handle(tx, event, out).map_err(midway)?;
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
            Some(tx) => tx.commit().map_err(at_commit),
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
        match result {
            Ok(()) => self.send(out, outbound, false).await,
            Err(Failed::Before(error, done)) => {
                self.stall(Held::Work(Intake::Jobs(done)), error, outbound)
                    .await
            }
            Err(Failed::Commit(error)) => {
                let held = Held::Applied { out, inputs: false };
                self.stall(held, error, outbound).await
            }
            Err(Failed::Fatal(error)) => Err(error.into()),
        }
    }

    /// Applies finished jobs in one transaction and commits it. (Kept out of
    /// the async functions: a transaction must never live across an await.)
    fn resume(&mut self, done: Vec<Done>, out: &mut Outbox) -> Result<(), Failed<Vec<Done>>> {
        if let Err(e) = self.migrate_once() {
            return Err(before(e, done));
        }
        self.watched(Watchdog::begin);
        let tx = match begin(&mut self.store, &mut self.delivered) {
            Ok(tx) => tx,
            Err(e) => return Err(before(e, done)),
        };
        for d in done {
            if let Some(dog) = &self.watchdog {
                dog.applying(Work::Password { session: d.session });
            }
            self.game
                .resume(&tx, d.job, d.session, d.outcome, out)
                .map_err(midway)?;
        }
        tx.commit().map_err(at_commit)
    }

    async fn finish_work(
        &mut self,
        worked: Vec<Worked>,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        let mut out = Outbox::with_job_room(self.job_room());
        let result = self.apply_work(worked, &mut out);
        self.watched(Watchdog::end);
        match result {
            Ok(()) => {
                self.hit(Point::AfterCommit);
                self.send(out, outbound, true).await
            }
            Err(Failed::Before(error, worked)) => {
                self.stall(Held::Work(Intake::Worked(worked)), error, outbound)
                    .await
            }
            Err(Failed::Commit(error)) => {
                let held = Held::Applied { out, inputs: false };
                self.stall(held, error, outbound).await
            }
            Err(Failed::Fatal(error)) => Err(error.into()),
        }
    }

    /// Applies the results of deferred work in one transaction and commits it.
    fn apply_work(
        &mut self,
        worked: Vec<Worked>,
        out: &mut Outbox,
    ) -> Result<(), Failed<Vec<Worked>>> {
        if let Err(e) = self.migrate_once() {
            return Err(before(e, worked));
        }
        self.watched(Watchdog::begin);
        let tx = match begin(&mut self.store, &mut self.delivered) {
            Ok(tx) => tx,
            Err(e) => return Err(before(e, worked)),
        };
        if let Some(dog) = &self.watchdog {
            dog.applying(Work::Deferred);
        }
        for w in worked {
            self.game
                .finish_deferred(&tx, w.id, w.output, out)
                .map_err(midway)?;
        }
        tx.commit().map_err(at_commit)
    }

    /// Storage failed: hold `held` and retry it later. The first failure of
    /// an outage is an error in the log, the rest warnings.
    async fn stall(
        &mut self,
        held: Held,
        error: StoreError,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        // With its causes (SQLite's own message is the source).
        let error = anyhow::Error::new(error);
        if let Some(outage) = &self.outage {
            tracing::warn!(
                attempts = outage.attempts,
                "storage still failing after {} ms: {error:#}",
                outage.since.elapsed().as_millis()
            );
        }
        let outage = self.outage.get_or_insert_with(|| {
            tracing::error!(
                "storage failed: {error:#}; holding the batch and retrying until it commits (nothing is answered meanwhile; the portal tells players the game is paused)"
            );
            Outage {
                since: Instant::now(),
                attempts: 0,
            }
        });
        let delay = retry_delay(outage.attempts, self.retry_max);
        outage.attempts = outage.attempts.saturating_add(1);
        let held = match held {
            Held::Work(work) => Held::Work(answer_heartbeats(work, outbound).await?),
            held => held,
        };
        self.stalled = Some(Stalled {
            held,
            backlog: VecDeque::new(),
            next: tokio::time::Instant::now() + delay,
        });
        Ok(())
    }

    /// Stalled: heartbeats are answered, the rest waits its turn.
    async fn hold(
        &mut self,
        work: Intake,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        let work = answer_heartbeats(work, outbound).await?;
        if matches!(&work, Intake::Events(events) if events.is_empty()) {
            return Ok(());
        }
        if let Some(stalled) = &mut self.stalled {
            stalled.backlog.push_back(work);
        }
        Ok(())
    }

    /// Tries the held transaction again; once it commits, runs the backlog
    /// in order (which may stall again).
    async fn retry(&mut self, outbound: &mpsc::Sender<Batch>) -> Result<(), EngineError> {
        let Some(stalled) = self.stalled.take() else {
            return Ok(());
        };
        let Stalled { held, backlog, .. } = stalled;
        let mut backlog = backlog;
        match held {
            Held::Applied { out, inputs } => {
                self.watched(Watchdog::begin);
                let result = self.store.retry();
                self.watched(Watchdog::end);
                match result {
                    Ok(()) => {
                        self.recovered();
                        if inputs {
                            self.hit(Point::AfterCommit);
                        }
                        self.send(out, outbound, inputs).await?;
                    }
                    Err(e) if e.is_outage() => {
                        self.stall(Held::Applied { out, inputs }, e, outbound)
                            .await?;
                        self.requeue(backlog);
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Held::Work(work) => {
                self.run(work, outbound).await?;
                if self.stalled.is_some() {
                    self.requeue(backlog);
                    return Ok(());
                }
                self.recovered();
            }
        }
        while let Some(work) = backlog.pop_front() {
            self.run(work, outbound).await?;
            if self.stalled.is_some() {
                self.requeue(backlog);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Stalled again: what was waiting goes after what the new stall holds.
    fn requeue(&mut self, backlog: VecDeque<Intake>) {
        if let Some(stalled) = &mut self.stalled {
            stalled.backlog.extend(backlog);
        }
    }

    fn recovered(&mut self) {
        if let Some(outage) = self.outage.take() {
            tracing::warn!(
                attempts = outage.attempts,
                "storage is back after {} ms; the held batch committed",
                outage.since.elapsed().as_millis()
            );
        }
    }

    async fn run(
        &mut self,
        work: Intake,
        outbound: &mpsc::Sender<Batch>,
    ) -> Result<(), EngineError> {
        match work {
            Intake::Events(events) => self.apply(events, outbound).await,
            Intake::Jobs(done) => self.complete(done, outbound).await,
            Intake::Worked(worked) => self.finish_work(worked, outbound).await,
            Intake::Timers => self.fire_timers(outbound).await,
        }
    }

    /// Fires the due timers in one transaction (at most `max_batch`; the
    /// rest in the next) and sends what they produced after the commit.
    async fn fire_timers(&mut self, outbound: &mpsc::Sender<Batch>) -> Result<(), EngineError> {
        let mut out = Outbox::with_job_room(self.job_room());
        let result = self.tick(&mut out);
        self.watched(Watchdog::end);
        match result {
            Ok(fired) => {
                if fired > 0 {
                    self.hit(Point::AfterCommit);
                }
                self.send(out, outbound, fired > 0).await
            }
            Err(Failed::Before(error, ())) => {
                self.stall(Held::Work(Intake::Timers), error, outbound)
                    .await
            }
            Err(Failed::Commit(error)) => {
                let held = Held::Applied { out, inputs: false };
                self.stall(held, error, outbound).await
            }
            Err(Failed::Fatal(error)) => Err(error.into()),
        }
    }

    fn tick(&mut self, out: &mut Outbox) -> Result<usize, Failed<()>> {
        if let Err(e) = self.migrate_once() {
            return Err(before(e, ()));
        }
        self.watched(Watchdog::begin);
        let tx = match begin(&mut self.store, &mut self.delivered) {
            Ok(tx) => tx,
            Err(e) => return Err(before(e, ())),
        };
        if let Some(dog) = &self.watchdog {
            dog.applying(Work::Timers);
        }
        let fired = self
            .game
            .fire_timers(&tx, self.max_batch, out)
            .map_err(midway)?;
        tx.commit().map_err(at_commit)?;
        Ok(fired)
    }

    /// Sends what a committed transaction produced and starts its jobs.
    /// `inputs`: the transaction applied inputs (for the failpoint).
    async fn send(
        &mut self,
        mut out: Outbox,
        outbound: &mpsc::Sender<Batch>,
        inputs: bool,
    ) -> Result<(), EngineError> {
        for deferred in out.take_deferred() {
            self.start_work(deferred);
        }
        let (mut events, jobs) = out.finish();
        let split = inputs
            && self
                .failpoint
                .as_ref()
                .is_some_and(|f| f.is_at(Point::AfterOutput));
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

    /// Runs a piece of the game's deferred work on a blocking thread, when
    /// one of `work_threads` is free.
    fn start_work(&mut self, deferred: Deferred) {
        let Deferred { id, name, input } = deferred;
        let run = self.game.work(&name);
        let threads = self.work_threads.clone();
        self.work.spawn(async move {
            let Some(run) = run else {
                let output = Err(format!("no work is registered as {name:?} now"));
                return Worked { id, output };
            };
            let _thread = threads.acquire_owned().await;
            let output = match tokio::task::spawn_blocking(move || run(input)).await {
                Ok(output) => output,
                Err(e) if e.is_panic() => Err(format!("it panicked: {}", panic_text(e))),
                Err(e) => Err(e.to_string()),
            };
            Worked { id, output }
        });
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

/// The tokio instant of a wall-clock time (at most an hour ahead: the loop
/// looks again by then, whatever the clock did).
fn wake_at(at: std::time::SystemTime) -> tokio::time::Instant {
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .min(Duration::from_secs(3600));
    tokio::time::Instant::now() + wait
}

/// Begins a transaction that first prunes the outbox up to what the portal
/// said it delivered: those marks are in this transaction's writes then, a
/// retry included.
fn begin<'s>(
    store: &'s mut Store,
    delivered: &mut HashMap<SessionId, u64>,
) -> Result<crate::store::Tx<'s>, StoreError> {
    let tx = store.begin()?;
    for (&session, &seq) in delivered.iter() {
        tx.prune_outbox(session, seq)?;
    }
    delivered.clear();
    Ok(tx)
}

/// `first` and every other task of `set` already finished, in one batch;
/// a task that died instead is logged as `lost`.
fn finished<T: 'static>(
    first: Result<T, tokio::task::JoinError>,
    set: &mut JoinSet<T>,
    lost: &str,
) -> Vec<T> {
    let mut done = Vec::new();
    let mut next = Some(first);
    while let Some(joined) = next {
        match joined {
            Ok(d) => done.push(d),
            Err(e) => tracing::error!("{lost}: {e}"),
        }
        next = set.try_join_next();
    }
    done
}

/// What a panic said, if it said it in text.
fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

fn before<T>(error: StoreError, work: T) -> Failed<T> {
    if error.is_outage() {
        Failed::Before(error, work)
    } else {
        Failed::Fatal(error)
    }
}

fn at_commit<T>(error: StoreError) -> Failed<T> {
    if error.is_outage() {
        Failed::Commit(error)
    } else {
        Failed::Fatal(error)
    }
}

/// The game stopped half-way through its work: memory is ahead of any
/// transaction that could be retried.
fn midway<T>(error: StoreError) -> Failed<T> {
    if error.is_outage() {
        tracing::error!(
            "storage failed in the middle of a batch, not at its commit; the game in memory cannot be rolled back, so this server exits and the next one restores from the database"
        );
    }
    Failed::Fatal(error)
}

/// Answers the heartbeats in `work` at once: a stalled engine is waiting,
/// not hung, and the supervisor kills a server that stops answering.
async fn answer_heartbeats(
    work: Intake,
    outbound: &mpsc::Sender<Batch>,
) -> Result<Intake, EngineError> {
    let Intake::Events(events) = work else {
        return Ok(work);
    };
    let (beats, rest): (Vec<Inbound>, Vec<Inbound>) = events
        .into_iter()
        .partition(|e| matches!(e, Inbound::Heartbeat { .. }));
    let answers: Vec<Outbound> = beats
        .into_iter()
        .filter_map(|e| match e {
            Inbound::Heartbeat { nonce, .. } => Some(Outbound::Heartbeat { nonce, reply: true }),
            _ => None,
        })
        .collect();
    if !answers.is_empty() {
        send(outbound, answers).await?;
    }
    Ok(Intake::Events(rest))
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
        .filter(|e| matches!(e, Inbound::Input { .. } | Inbound::Oob { .. }))
        .count()
}

fn has_drain(events: &[Inbound]) -> bool {
    events.iter().any(|e| matches!(e, Inbound::Drain { .. }))
}

/// Whether an event needs a transaction. A Delivered alone waits for one.
fn is_game_event(event: &Inbound) -> bool {
    !matches!(
        event,
        Inbound::Hello(_)
            | Inbound::Heartbeat { .. }
            | Inbound::Drain { .. }
            | Inbound::Delivered { .. }
    )
}

/// An event's name for a log line (input text may hold a password).
fn kind(event: &Inbound) -> &'static str {
    match event {
        Inbound::Hello(_) => "PortalHello",
        Inbound::Opened { .. } => "SessionOpened",
        Inbound::SessionInfo(_) => "SessionInfo",
        Inbound::Input { .. } => "Input",
        Inbound::Oob { .. } => "ClientOob",
        Inbound::StaffNotice { .. } => "StaffNotice",
        Inbound::Closed { .. } => "SessionClosed",
        Inbound::Sync { .. } => "Sync",
        Inbound::Drain { .. } => "Drain",
        Inbound::Heartbeat { .. } => "Heartbeat",
        Inbound::Delivered { .. } => "Delivered",
    }
}

#[cfg(test)]
mod tests;
