//! The game: sessions, characters, the world and the commands.
//!
//! Pure logic over in-memory state and a store transaction: no sockets, no
//! async, no protobuf. The engine hands it events ([`Game::handle`]) and the
//! results of password work ([`Game::resume`]); the game writes everything it
//! wants sent into an [`Outbox`], which the engine sends only after the
//! transaction commits.
//!
//! # Exactly-once input
//! Each session remembers the last input seq applied (loaded from the
//! database on a Sync, which is authoritative) and the last one received. An
//! input at or below the applied mark is only acknowledged again; one already
//! received but not yet applied (waiting behind a password hash) is ignored.
//! Applying an input writes its seq in the same transaction as its effects.
//!
//! # Exactly-once output
//! Everything sent to a session in a transaction (Output, SessionUpdate,
//! Disconnect) is written to the store's outbox under the session's next
//! output seq before that transaction commits ([`Outbox::seal`], after every
//! event and before a session's counter is reset). A Sync re-sends, first,
//! every row above what the portal delivered; a re-sent SessionUpdate is the
//! session's true state (the snapshot predates it), and a re-sent Disconnect
//! means the session had already left the game.
//!
//! # Waiting for a password hash
//! `create` and `connect` need argon2 work. The command returns a [`Job`] and
//! the session is *busy*: its later inputs (and its close) queue behind the
//! job, in order, while other sessions go on. [`Game::resume`] applies the
//! result, records the seq, and runs the queue until it is empty or another
//! job starts.
//!
//! The engine bounds the jobs in existence ([`Outbox::with_job_room`]): a
//! command that would start one past the bound is answered "try again in a
//! moment" and applied, so a login flood costs the server a bounded amount
//! of memory, and so does its replay into the next server after a crash. A
//! session that goes while its job waits abandons the job: no hash is made
//! for a player who is no longer there.

mod command;
mod registry;
mod throttle;
mod world;

use std::collections::{HashMap, HashSet, VecDeque};

use crate::auth::{Abandon, Outcome, Work};
use crate::event::{
    Inbound, Outbound, OutboxRow, PortalSession, SessionId, SessionState, Snapshot, Stage,
};
use crate::store::{Account, Character, CreateError, StoreError, SyncState, Tx};
pub use command::valid_name;
pub use registry::Level;
use registry::{Found, Place, Registry, Spec};
pub use throttle::Limits;
use throttle::{Origin, Throttle, Verdict};
pub use world::START_ROOM;
use world::World;

/// The settings the game's texts and rules depend on.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Shown on the welcome screen.
    pub game_name: String,
    pub max_name_len: usize,
    pub min_password_len: usize,
    /// Failed logins and account creations: what is delayed or refused.
    pub login: Limits,
    /// What `version` prints.
    pub version: String,
    /// The test build's `@crash` (abort at once) and `@hang` (block the
    /// engine far past `server.command_timeout_ms`). Never in production.
    pub test_commands: bool,
    /// `game.crowd_size`: above it a room announces no comings and goings,
    /// and name lists are cut short.
    pub crowd_size: usize,
}

/// The answer to a login or account creation while every password worker
/// is busy and the queue is full.
const BUSY: &str = "The game is busy with other logins; please try again in a moment.";

/// How long `@hang` blocks: far past any command time limit, so only the
/// watchdog ends it.
#[cfg(any(test, feature = "test-build"))]
const HANG: std::time::Duration = std::time::Duration::from_secs(3600);

/// Identifies a password job, so a stale result (its session was closed or
/// replaced meanwhile) is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobId(u64);

/// Password work to run off the async threads; hand the outcome to
/// [`Game::resume`].
#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub session: SessionId,
    /// The input that waits on it.
    pub seq: u64,
    pub work: Work,
    /// Too many failed logins: delay the answer.
    pub delay: bool,
    /// Set by the game when the session goes before the job is done.
    pub abandon: Abandon,
}

/// What one transaction's worth of events produced, in order, plus the
/// password jobs to start once it is committed.
#[derive(Debug)]
pub struct Outbox {
    events: Vec<Outbound>,
    /// `events[..sealed]` have their output seqs and are in the store.
    sealed: usize,
    /// Highest seq to acknowledge per session, in order of first touch.
    acks: Vec<(SessionId, u64)>,
    ack_index: HashMap<SessionId, usize>,
    jobs: Vec<Job>,
    /// How many jobs this transaction may start.
    job_room: usize,
}

impl Default for Outbox {
    /// An outbox whose transaction may start any number of jobs.
    fn default() -> Outbox {
        Outbox::with_job_room(usize::MAX)
    }
}

impl Outbox {
    /// An outbox whose transaction may start at most `job_room` jobs.
    pub fn with_job_room(job_room: usize) -> Outbox {
        Outbox {
            events: Vec::new(),
            sealed: 0,
            acks: Vec::new(),
            ack_index: HashMap::new(),
            jobs: Vec::new(),
            job_room,
        }
    }

    pub fn push(&mut self, event: Outbound) {
        self.events.push(event);
    }

    fn output(&mut self, session: SessionId, text: impl Into<String>) {
        self.events.push(Outbound::Output {
            session,
            seq: 0,
            text: text.into(),
            form: ev::link::Form::PLAIN,
        });
    }

    fn update(&mut self, session: SessionId, state: &SessionState) {
        self.events.push(Outbound::Update {
            session,
            seq: 0,
            server: state.clone(),
        });
    }

    fn disconnect(&mut self, session: SessionId, reason: &str) {
        self.events.push(Outbound::Disconnect {
            session,
            seq: 0,
            reason: reason.into(),
        });
    }

    /// Gives every sequenced event pushed since the last seal its session's
    /// next output seq and writes it to the outbox, in `tx`.
    pub fn seal(&mut self, tx: &Tx) -> Result<(), StoreError> {
        for event in &mut self.events[self.sealed..] {
            if let Some((session, seq)) = event.sequence_mut() {
                if *seq == 0 {
                    *seq = tx.next_output_seq(session)?;
                    if let Some(row) = OutboxRow::of(event) {
                        tx.put_outbox(&row)?;
                    }
                }
            }
        }
        self.sealed = self.events.len();
        Ok(())
    }

    /// Events already in the outbox, sent again as they are.
    fn resend(&mut self, events: Vec<Outbound>) {
        self.events.extend(events);
        self.sealed = self.events.len();
    }

    fn ack(&mut self, session: SessionId, seq: u64) {
        match self.ack_index.get(&session) {
            Some(&i) => self.acks[i].1 = self.acks[i].1.max(seq),
            None => {
                self.ack_index.insert(session, self.acks.len());
                self.acks.push((session, seq));
            }
        }
    }

    /// The events to send (acks last) and the jobs to start.
    pub fn finish(mut self) -> (Vec<Outbound>, Vec<Job>) {
        self.events.extend(
            self.acks
                .into_iter()
                .map(|(session, seq)| Outbound::Ack { session, seq }),
        );
        (self.events, self.jobs)
    }
}

/// What a command left to do.
enum Flow {
    Done,
    Wait { work: Work, then: Then, delay: bool },
}

/// How to finish a command once its password work is done.
enum Then {
    Create {
        name: String,
    },
    /// `name` as typed, to count its failures whether or not it exists.
    Connect {
        name: String,
        account: Option<Account>,
    },
}

struct Pending {
    job: JobId,
    seq: u64,
    then: Then,
    abandon: Abandon,
}

enum Queued {
    Input { seq: u64, text: String },
    Close,
}

struct Session {
    state: SessionState,
    /// Where it connects from, for the login throttle.
    origin: Option<Origin>,
    /// Some exactly when `state.stage` is Playing.
    character: Option<Character>,
    last_applied: u64,
    last_received: u64,
    failures: u32,
    /// The account's permission level while playing; Player before.
    level: Level,
    pending: Option<Pending>,
    queue: VecDeque<Queued>,
    /// What the portal knows of the connection (window size, client,
    /// character set), as it last said.
    client: PortalSession,
}

impl Session {
    fn new(last_applied: u64, peer: &str) -> Session {
        Session {
            state: SessionState::login(),
            origin: Origin::of_peer(peer),
            character: None,
            last_applied,
            last_received: last_applied,
            failures: 0,
            level: Level::Player,
            pending: None,
            queue: VecDeque::new(),
            client: PortalSession::default(),
        }
    }
}

/// A command's code: the game, the transaction, who typed it and the rest
/// of their line.
type Handler = fn(&mut Game, &Tx, SessionId, &str, &mut Outbox) -> Result<Flow, StoreError>;

pub struct Game {
    rules: Rules,
    commands: Registry<Handler>,
    world: World,
    sessions: HashMap<SessionId, Session>,
    throttle: Throttle,
    next_job: u64,
    /// A Sync that has not had its last chunk.
    syncing: Option<Syncing>,
}

/// What a Sync in progress has seen so far.
struct Syncing {
    /// When its first chunk came, for the log.
    started: std::time::Instant,
    /// The sessions listed so far.
    listed: HashSet<SessionId>,
    /// The database's rows of each session not yet restored, read at the
    /// first chunk (restoring a session touches no other session's rows).
    stored: HashMap<SessionId, SyncState>,
}

impl Game {
    pub fn new(rules: Rules) -> Game {
        Game {
            commands: commands(rules.test_commands),
            throttle: Throttle::new(rules.login.clone(), std::time::Instant::now()),
            rules,
            world: World::default(),
            sessions: HashMap::new(),
            next_job: 0,
            syncing: None,
        }
    }

    #[cfg(test)]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies one event from the portal. Drain and Heartbeat are the
    /// engine's business, a hello the link's, and do nothing here.
    /// What it sends is sealed into the outbox before it returns.
    pub fn handle(&mut self, tx: &Tx, event: Inbound, out: &mut Outbox) -> Result<(), StoreError> {
        match event {
            Inbound::Opened(s) => {
                self.opened(tx, s.id, &s.peer, out)?;
                self.session_info(s);
            }
            Inbound::SessionInfo(s) => self.session_info(s),
            Inbound::Input { session, seq, text } => self.input(tx, session, seq, text, out)?,
            // Applied as nothing until the game API routes it.
            Inbound::Oob { session, seq, .. } => {
                self.input(tx, session, seq, String::new(), out)?
            }
            Inbound::Closed { session, .. } => self.closed(tx, session, out)?,
            Inbound::Sync { sessions, last } => self.sync(tx, sessions, last, out)?,
            Inbound::Delivered { session, seq } => tx.prune_outbox(session, seq)?,
            Inbound::Hello(_) | Inbound::Drain { .. } | Inbound::Heartbeat { .. } => {}
        }
        out.seal(tx)
    }

    /// Applies the outcome of a job: finishes its command, records its seq,
    /// then runs whatever the session queued meanwhile.
    pub fn resume(
        &mut self,
        tx: &Tx,
        job: JobId,
        id: SessionId,
        outcome: Outcome,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&id) else {
            tracing::debug!(session = %id, "password result for a closed session dropped");
            return Ok(());
        };
        let Some(pending) = session.pending.take_if(|p| p.job == job) else {
            tracing::debug!(session = %id, "stale password result dropped");
            return Ok(());
        };
        self.finish(tx, id, pending.then, outcome, out)?;
        self.applied(tx, id, pending.seq, out)?;
        self.run_queue(tx, id, out)?;
        out.seal(tx)
    }

    // === session life ===

    fn opened(
        &mut self,
        tx: &Tx,
        id: SessionId,
        peer: &str,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        if self.sessions.contains_key(&id) {
            tracing::warn!(session = %id, "opened twice; starting it afresh");
            self.remove(id, false, out);
        }
        // A new session has applied and been sent nothing, whatever an old
        // one of the same number left behind.
        forget(tx, id, out)?;
        self.sessions.insert(id, Session::new(0, peer));
        self.greet(id, out);
        Ok(())
    }

    /// What the portal knows of a session's connection changed.
    fn session_info(&mut self, portal: PortalSession) {
        if let Some(session) = self.sessions.get_mut(&portal.id) {
            session.client = portal;
        }
    }

    fn greet(&mut self, id: SessionId, out: &mut Outbox) {
        out.output(id, command::welcome(&self.rules.game_name));
        out.update(id, &SessionState::login());
    }

    fn closed(&mut self, tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
        match self.sessions.get_mut(&id) {
            Some(s) if s.pending.is_some() => {
                if let Some(pending) = &s.pending {
                    pending.abandon.set();
                }
                s.queue.push_back(Queued::Close);
                Ok(())
            }
            Some(_) => self.close(tx, id, out),
            None => forget(tx, id, out),
        }
    }

    fn close(&mut self, tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
        self.remove(id, true, out);
        forget(tx, id, out)
    }

    /// Takes a session out of the game. Its character leaves the room (seen
    /// by others if `announce`); inputs it still queued are acknowledged and
    /// ignored, like any input for an unknown session.
    fn remove(&mut self, id: SessionId, announce: bool, out: &mut Outbox) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        if let Some(pending) = &session.pending {
            pending.abandon.set();
        }
        for queued in session.queue {
            if let Queued::Input { seq, .. } = queued {
                out.ack(id, seq);
            }
        }
        if let Some(ch) = session.character {
            self.world.leave(ch.room, id);
            let others = self.world.others(ch.room, id);
            if announce && others.len() < self.rules.crowd_size {
                for other in others {
                    out.output(other, format!("{} has left.", ch.name));
                }
            }
        }
    }

    fn sync(
        &mut self,
        tx: &Tx,
        sessions: Vec<Snapshot>,
        last: bool,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let mut syncing = match self.syncing.take() {
            Some(syncing) => syncing,
            None => Syncing {
                started: std::time::Instant::now(),
                listed: HashSet::new(),
                stored: tx.sync_state()?,
            },
        };
        for snapshot in sessions {
            syncing.listed.insert(snapshot.portal.id);
            let state = syncing
                .stored
                .remove(&snapshot.portal.id)
                .unwrap_or_default();
            self.restore(tx, snapshot, state, out)?;
        }
        if !last {
            self.syncing = Some(syncing);
            return Ok(());
        }
        let gone: Vec<SessionId> = self
            .sessions
            .keys()
            .filter(|id| !syncing.listed.contains(id))
            .copied()
            .collect();
        for &id in &gone {
            self.remove(id, true, out);
        }
        out.seal(tx)?;
        // Nothing but the listed sessions is open: forget the rest, including
        // what a gone session was just sent ("X has left.").
        for id in syncing.stored.into_keys().chain(gone) {
            tx.forget_session(id)?;
        }
        out.push(Outbound::Ready {
            sessions: self.sessions.len() as u64,
        });
        tracing::info!(
            sessions = self.sessions.len(),
            micros = syncing.started.elapsed().as_micros() as u64,
            "sessions restored"
        );
        Ok(())
    }

    /// Restores one session of a Sync; `stored` is what the database held
    /// for it when the chunk began (restoring touches no other session's rows).
    fn restore(
        &mut self,
        tx: &Tx,
        snapshot: Snapshot,
        stored: SyncState,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let id = snapshot.portal.id;
        if self.sessions.contains_key(&id) {
            self.remove(id, false, out);
        }
        out.seal(tx)?;
        // What the portal has not delivered goes again, before anything new.
        let mut state = snapshot.server;
        let mut left = false;
        let mut resent = Vec::new();
        let last_seq = stored.last_seq;
        for row in tx.resync_output_from(id, snapshot.output_seq, stored)? {
            let seq = row.seq;
            match row.event() {
                Some(event) => {
                    match &event {
                        Outbound::Update { server: s, .. } => state = s.clone(),
                        Outbound::Disconnect { .. } => left = true,
                        _ => {}
                    }
                    resent.push(event);
                }
                None => tracing::error!(session = %id, seq, "unreadable outbox row skipped"),
            }
        }
        if !resent.is_empty() {
            tracing::info!(
                session = %id,
                count = resent.len(),
                from = snapshot.output_seq + 1,
                "re-sending undelivered output"
            );
        }
        out.resend(resent);
        if left {
            // It quit or was taken over: out of the game, waiting for the
            // portal to close it, as before the crash.
            return Ok(());
        }
        let mut session = Session::new(last_seq, &snapshot.portal.peer);
        session.client = snapshot.portal.clone();
        let snapshot = Snapshot {
            server: state,
            ..snapshot
        };
        match snapshot.server.stage {
            Stage::New => {
                self.sessions.insert(id, session);
                self.greet(id, out);
            }
            Stage::Login => {
                session.state = SessionState {
                    stage: Stage::Login,
                    ..snapshot.server
                };
                self.sessions.insert(id, session);
            }
            Stage::Playing => match tx.character_and_level(snapshot.server.character_id)? {
                Some((mut ch, level)) => {
                    ch.room = self.world.resolve(ch.room);
                    self.world.enter(ch.room, id);
                    session.level = Level::from_i64(level);
                    session.state = SessionState {
                        account_id: ch.account_id,
                        character_id: ch.id,
                        ..snapshot.server
                    };
                    session.character = Some(ch);
                    self.sessions.insert(id, session);
                }
                None => {
                    tracing::warn!(
                        session = %id,
                        character = snapshot.server.character_id,
                        "synced session plays a character that does not exist; back to the login screen"
                    );
                    self.sessions.insert(id, session);
                    self.greet(id, out);
                }
            },
        }
        Ok(())
    }

    // === input ===

    fn input(
        &mut self,
        tx: &Tx,
        id: SessionId,
        seq: u64,
        text: String,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let Some(session) = self.sessions.get_mut(&id) else {
            tracing::debug!(session = %id, seq, "input for an unknown session acknowledged and ignored");
            out.ack(id, seq);
            return Ok(());
        };
        if seq <= session.last_applied {
            out.ack(id, seq);
            return Ok(());
        }
        if seq <= session.last_received {
            tracing::debug!(session = %id, seq, "input already waiting; duplicate ignored");
            return Ok(());
        }
        session.last_received = seq;
        if session.pending.is_some() {
            session.queue.push_back(Queued::Input { seq, text });
            return Ok(());
        }
        self.run_input(tx, id, seq, &text, out)
    }

    fn run_input(
        &mut self,
        tx: &Tx,
        id: SessionId,
        seq: u64,
        text: &str,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        match self.command(tx, id, text, out)? {
            Flow::Done => self.applied(tx, id, seq, out),
            Flow::Wait { .. } if out.jobs.len() >= out.job_room => {
                out.output(id, BUSY);
                self.applied(tx, id, seq, out)
            }
            Flow::Wait { work, then, delay } => {
                let job = JobId(self.next_job);
                self.next_job += 1;
                let abandon = Abandon::default();
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.pending = Some(Pending {
                        job,
                        seq,
                        then,
                        abandon: abandon.clone(),
                    });
                }
                out.jobs.push(Job {
                    id: job,
                    session: id,
                    seq,
                    work,
                    delay,
                    abandon,
                });
                Ok(())
            }
        }
    }

    /// Records that input `seq` of `id` is applied, in the same transaction.
    fn applied(
        &mut self,
        tx: &Tx,
        id: SessionId,
        seq: u64,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        tx.set_last_seq(id, seq)?;
        if let Some(session) = self.sessions.get_mut(&id) {
            session.last_applied = seq;
        }
        out.ack(id, seq);
        Ok(())
    }

    fn run_queue(&mut self, tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
        loop {
            let Some(session) = self.sessions.get_mut(&id) else {
                return Ok(());
            };
            if session.pending.is_some() {
                return Ok(());
            }
            match session.queue.pop_front() {
                None => return Ok(()),
                Some(Queued::Input { seq, text }) => self.run_input(tx, id, seq, &text, out)?,
                Some(Queued::Close) => self.close(tx, id, out)?,
            }
        }
    }

    // === commands ===

    fn command(
        &mut self,
        tx: &Tx,
        id: SessionId,
        text: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let Some((playing, level)) = self.standing(id) else {
            return Ok(Flow::Done);
        };
        let Some(typed) = self.commands.split(text) else {
            return Ok(Flow::Done);
        };
        let verb = typed.verb;
        let unknown = || {
            if playing {
                format!("Unknown command '{verb}'. Type help for a list.")
            } else {
                format!(
                    "Unknown command '{verb}'. Type create NAME PASSWORD, connect NAME PASSWORD, or help."
                )
            }
        };
        let handler = match self.commands.find(verb, playing, level) {
            Found::Command(_, handler) => *handler,
            Found::Ambiguous(names) => {
                out.output(id, format!("Which did you mean: {}?", names.join(", ")));
                return Ok(Flow::Done);
            }
            Found::Elsewhere(spec) if playing && spec.place == Place::Login => {
                out.output(id, "You are already playing.");
                return Ok(Flow::Done);
            }
            Found::Elsewhere(_) | Found::Unknown => {
                out.output(id, unknown());
                return Ok(Flow::Done);
            }
        };
        handler(self, tx, id, typed.rest, out)
    }

    /// Whether session `id` plays, and its level: which commands it sees.
    fn standing(&self, id: SessionId) -> Option<(bool, Level)> {
        let session = self.sessions.get(&id)?;
        Some((session.character.is_some(), session.level))
    }

    /// `text` as a log may show it: no secret of any command.
    pub fn loggable(&self, text: &str) -> String {
        self.commands.loggable(text)
    }

    fn help(
        &mut self,
        _: &Tx,
        id: SessionId,
        topic: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let Some((playing, level)) = self.standing(id) else {
            return Ok(Flow::Done);
        };
        let text = if topic.is_empty() {
            self.commands.listing(playing, level)
        } else {
            self.commands
                .help_for(topic, playing, level)
                .unwrap_or_else(|| format!("There is no help on '{topic}'."))
        };
        out.output(id, text);
        Ok(Flow::Done)
    }

    /// `@grant NAME LEVEL`: an admin sets an account's permission level; its
    /// sessions in play have it at once.
    fn grant(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let wanted = match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            &[name, level] => Level::parse(level).map(|level| (name, level)),
            _ => None,
        };
        let Some((name, level)) = wanted else {
            out.output(id, "Usage: @grant NAME player|builder|admin");
            return Ok(Flow::Done);
        };
        let Some(account) = tx.account_by_name(name)? else {
            out.output(id, format!("There is no account '{name}'."));
            return Ok(Flow::Done);
        };
        tx.set_level(account.id, level.as_i64())?;
        for s in self.sessions.values_mut() {
            if s.character
                .as_ref()
                .is_some_and(|c| c.account_id == account.id)
            {
                s.level = level;
            }
        }
        tracing::info!(session = %id, account = account.name, level = level.name(), "level granted");
        out.output(id, format!("{} is now {}.", account.name, level.name()));
        Ok(Flow::Done)
    }

    fn quit(&mut self, id: SessionId, out: &mut Outbox) {
        out.output(id, "Goodbye.");
        out.disconnect(id, "quit");
        self.remove(id, true, out);
    }

    fn create(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let args: Vec<&str> = args.split_whitespace().collect();
        let &[name, password] = args.as_slice() else {
            out.output(id, "Usage: create NAME PASSWORD");
            return Ok(Flow::Done);
        };
        let max = self.rules.max_name_len;
        let min = self.rules.min_password_len;
        if !command::valid_name(name, max) {
            out.output(id, format!("Names are 2-{max} letters, A to Z only."));
        } else if password.chars().count() < min {
            out.output(id, format!("Passwords need at least {min} characters."));
        } else if tx.name_taken(name)? {
            out.output(id, "That name is taken.");
        } else if let Verdict::Refuse(why) = self.throttle.create(self.origin(id), now()) {
            tracing::info!(session = %id, "account creation refused: {why}");
            out.output(id, why);
        } else {
            return Ok(Flow::Wait {
                work: Work::Hash {
                    password: password.to_owned(),
                },
                then: Then::Create {
                    name: name.to_owned(),
                },
                delay: false,
            });
        }
        Ok(Flow::Done)
    }

    fn connect(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let args: Vec<&str> = args.split_whitespace().collect();
        let &[name, password] = args.as_slice() else {
            out.output(id, "Usage: connect NAME PASSWORD");
            return Ok(Flow::Done);
        };
        let account = if command::valid_name(name, self.rules.max_name_len) {
            tx.account_by_name(name)?
        } else {
            None
        };
        let failures = self.sessions.get(&id).map_or(0, |s| s.failures);
        let delay = match self.throttle.login(self.origin(id), name, failures, now()) {
            Verdict::Go => false,
            Verdict::Delay => true,
            Verdict::Refuse(why) => {
                tracing::info!(session = %id, "login refused: {why}");
                out.output(id, why);
                return Ok(Flow::Done);
            }
        };
        Ok(Flow::Wait {
            work: Work::Verify {
                password: password.to_owned(),
                hash: account.as_ref().map(|a| a.password_hash.clone()),
            },
            then: Then::Connect {
                name: name.to_owned(),
                account,
            },
            delay,
        })
    }

    /// The second half of `create` and `connect`.
    fn finish(
        &mut self,
        tx: &Tx,
        id: SessionId,
        then: Then,
        outcome: Outcome,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        match (then, outcome) {
            (Then::Create { name }, Outcome::Hashed(hash)) => {
                match tx.create_account(&name, &hash, Level::Player.as_i64(), START_ROOM) {
                    Ok(ch) => {
                        tracing::info!(session = %id, name, "account created");
                        tx.record_login(ch.account_id)?;
                        self.enter_game(id, ch, format!("Welcome, {name}!"), out);
                    }
                    Err(CreateError::Taken) => out.output(id, "That name is taken."),
                    Err(CreateError::Store(e)) => return Err(e),
                }
            }
            (
                Then::Connect {
                    name,
                    account: Some(account),
                },
                Outcome::Verified(true),
            ) => match tx.character_of(account.id)? {
                Some(ch) => {
                    self.throttle.succeeded(&name);
                    // An account `create-admin` made has never logged in.
                    let greeting = if tx.record_login(account.id)? {
                        format!("Welcome back, {}!", ch.name)
                    } else {
                        format!("Welcome, {}!", ch.name)
                    };
                    self.enter_game(id, ch, greeting, out);
                    if let Some(session) = self.sessions.get_mut(&id) {
                        session.level = Level::from_i64(account.level);
                    }
                }
                None => {
                    tracing::warn!(session = %id, account = account.id, "account has no character");
                    out.output(id, "That account has no character.");
                }
            },
            (Then::Connect { name, .. }, Outcome::Verified(false)) => {
                self.throttle.failed(self.origin(id), &name, now());
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.failures = session.failures.saturating_add(1);
                }
                out.output(id, "Wrong name or password.");
            }
            // Only a closed session abandons its job: nobody to answer.
            (_, Outcome::Abandoned) => {}
            (_, outcome) => {
                tracing::error!(session = %id, ?outcome, "password work failed");
                out.output(id, "Something went wrong; please try again.");
            }
        }
        Ok(())
    }

    /// Puts session `id` in the game as `ch`, taking the character over from
    /// any other session that plays it.
    fn enter_game(&mut self, id: SessionId, mut ch: Character, greeting: String, out: &mut Outbox) {
        ch.room = self.world.resolve(ch.room);
        let previous = self
            .sessions
            .iter()
            .find(|(other, s)| **other != id && s.character.as_ref().is_some_and(|c| c.id == ch.id))
            .map(|(other, _)| *other);
        if let Some(other) = previous {
            if let Some(s) = self.sessions.get_mut(&other) {
                if let Some(old) = s.character.take() {
                    self.world.leave(old.room, other);
                }
                s.level = Level::Player;
                s.state = SessionState {
                    extra: std::mem::take(&mut s.state.extra),
                    ..SessionState::login()
                };
                out.output(other, format!("Another connection took over {}.", ch.name));
                out.update(other, &s.state);
                out.disconnect(other, "takeover");
            }
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.failures = 0;
        session.state = SessionState {
            stage: Stage::Playing,
            account_id: ch.account_id,
            character_id: ch.id,
            extra: std::mem::take(&mut session.state.extra),
        };
        out.update(id, &session.state);
        self.world.enter(ch.room, id);
        let (name, room) = (ch.name.clone(), ch.room);
        session.character = Some(ch);
        out.output(id, greeting);
        out.output(id, self.look(id));
        // A takeover is the same character staying put: nobody arrives.
        let others = self.world.others(room, id);
        if previous.is_none() && others.len() < self.rules.crowd_size {
            for other in others {
                out.output(other, format!("{name} has arrived."));
            }
        }
    }

    fn origin(&self, id: SessionId) -> Option<Origin> {
        self.sessions.get(&id)?.origin
    }

    fn character(&self, id: SessionId) -> Option<&Character> {
        self.sessions.get(&id)?.character.as_ref()
    }

    /// Names of the characters in `room` other than `id`'s, sorted.
    fn names_here(&self, room: i64, id: SessionId) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .world
            .others(room, id)
            .into_iter()
            .filter_map(|other| self.character(other).map(|c| c.name.as_str()))
            .collect();
        sort_names(&mut names, self.rules.crowd_size);
        names
    }

    fn look(&self, id: SessionId) -> String {
        let Some(ch) = self.character(id) else {
            return String::new();
        };
        let room = self.world.room(ch.room);
        let names = self.names_here(ch.room, id);
        let here = if names.is_empty() {
            "You are alone here.".to_owned()
        } else {
            format!("Here: {}", self.name_list(&names))
        };
        format!("{}\n{}\n{here}", room.name, room.description)
    }

    fn say(&mut self, id: SessionId, text: &str, out: &mut Outbox) {
        let text = command::printable(text);
        let text = text.trim();
        let Some(ch) = self.character(id) else {
            return;
        };
        if text.is_empty() {
            out.output(id, "Say what?");
            return;
        }
        out.output(id, format!("You say, \"{text}\""));
        let heard = format!("{} says, \"{text}\"", ch.name);
        for other in self.world.others(ch.room, id) {
            out.output(other, heard.clone());
        }
    }

    fn who(&self, id: SessionId, out: &mut Outbox) {
        let mut names: Vec<&str> = self
            .sessions
            .values()
            .filter_map(|s| s.character.as_ref().map(|c| c.name.as_str()))
            .collect();
        sort_names(&mut names, self.rules.crowd_size);
        out.output(
            id,
            format!(
                "Players online ({}): {}",
                names.len(),
                self.name_list(&names)
            ),
        );
    }

    /// `names`, or in a crowd the first `crowd_size` of them and a count.
    fn name_list(&self, names: &[&str]) -> String {
        let shown = names.len().min(self.rules.crowd_size);
        let list = names[..shown].join(", ");
        match names.len() - shown {
            0 => list,
            rest => format!("{list} and {rest} more"),
        }
    }
}

/// Limits no unit test runs into by accident.
#[cfg(test)]
pub(crate) fn test_limits() -> Limits {
    Limits {
        creates_per_address_per_hour: 10_000,
        creates_per_minute: 10_000,
        ..Limits::from_config(&ev::config::AuthConfig::default())
    }
}

/// The login throttle's clock.
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// What `client` says, e.g. "Your client: MUDLET 4.17 (XTERM), 120x40,
/// UTF-8; capabilities: ANSI, 256 colours".
fn describe_client(c: &PortalSession) -> String {
    let mut parts = vec![match (c.client.as_str(), c.terminal.as_str()) {
        ("", _) => "unknown".to_owned(),
        (name, t) if t.is_empty() || t == name => name.to_owned(),
        (name, t) => format!("{name} ({t})"),
    }];
    if c.width > 0 && c.height > 0 {
        parts.push(format!("{}x{}", c.width, c.height));
    }
    if !c.encoding.is_empty() {
        parts.push(c.encoding.to_uppercase());
    }
    let capabilities = c.capabilities.names();
    if capabilities.is_empty() {
        format!("Your client: {}", parts.join(", "))
    } else {
        format!(
            "Your client: {}; capabilities: {}",
            parts.join(", "),
            capabilities.join(", ")
        )
    }
}

/// The demo's commands. A name or alias two of them share is a mistake in
/// this list, caught by a unit test; at run time it is logged and the
/// second one left out.
fn commands(test_commands: bool) -> Registry<Handler> {
    let account = |spec: Spec| Spec {
        place: Place::Login,
        category: "Account",
        secret_from: Some(1),
        ..spec
    };
    let anywhere = |spec: Spec| Spec {
        place: Place::Anywhere,
        ..spec
    };
    let list: Vec<(Spec, Handler)> = vec![
        (
            account(Spec::new(
                "create",
                "create NAME PASSWORD",
                "Make a new character.",
            )),
            Game::create,
        ),
        (
            account(Spec::new(
                "connect",
                "connect NAME PASSWORD",
                "Play your character.",
            )),
            Game::connect,
        ),
        (
            Spec::new("look", "look", "See where you are."),
            |g, _, id, _, out| {
                let text = g.look(id);
                out.output(id, text);
                Ok(Flow::Done)
            },
        ),
        (
            Spec {
                aliases: &["\"", "'"],
                ..Spec::new("say", "say TEXT", "Talk to everyone here (or \"TEXT).")
            },
            |g, _, id, rest, out| {
                g.say(id, rest, out);
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new("who", "who", "List the players online."),
            |g, _, id, _, out| {
                g.who(id, out);
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new("version", "version", "Show the server's version."),
            |g, _, id, _, out| {
                out.output(id, g.rules.version.clone());
                Ok(Flow::Done)
            },
        ),
        (
            anywhere(Spec::new("ping", "ping [TEXT]", "Check the connection.")),
            |_, _, id, rest, out| {
                out.output(
                    id,
                    if rest.is_empty() {
                        "pong".to_owned()
                    } else {
                        format!("pong {rest}")
                    },
                );
                Ok(Flow::Done)
            },
        ),
        (
            anywhere(Spec::new(
                "client",
                "client",
                "What the game knows of your client: name, window, characters.",
            )),
            |g, _, id, _, out| {
                if let Some(session) = g.sessions.get(&id) {
                    out.output(id, describe_client(&session.client));
                }
                Ok(Flow::Done)
            },
        ),
        (
            anywhere(Spec::new(
                "help",
                "help [COMMAND]",
                "This list, or more on one command.",
            )),
            Game::help,
        ),
        (
            anywhere(Spec::new("quit", "quit", "Leave the game.")),
            |g, _, id, _, out| {
                g.quit(id, out);
                Ok(Flow::Done)
            },
        ),
        (
            Spec {
                level: Level::Admin,
                category: "Admin",
                ..Spec::new(
                    "@grant",
                    "@grant NAME LEVEL",
                    "Make an account a player, builder or admin.",
                )
            },
            Game::grant,
        ),
    ];
    let mut registry = Registry::default();
    for (spec, handler) in list.into_iter().chain(test_only(test_commands)) {
        if let Err(clash) = registry.add(spec, handler) {
            tracing::error!("{clash}: the second is left out");
        }
    }
    registry
}

/// `@crash` (abort at once) and `@hang` (block the engine far past the
/// command timeout), when `on`: only the test build has them at all.
#[cfg(any(test, feature = "test-build"))]
fn test_only(on: bool) -> Vec<(Spec, Handler)> {
    if !on {
        return Vec::new();
    }
    let test = |spec: Spec| Spec {
        place: Place::Anywhere,
        category: "Test build",
        ..spec
    };
    vec![
        (
            test(Spec::new("@crash", "@crash", "Abort the server.")),
            |_, _, id, _, _| {
                tracing::error!(session = %id, "@crash: aborting the server");
                std::process::abort();
            },
        ),
        (
            test(Spec::new(
                "@hang",
                "@hang",
                "Block the engine past the command timeout.",
            )),
            |_, _, id, _, out| {
                tracing::warn!(session = %id, "@hang: blocking the engine");
                std::thread::sleep(HANG);
                out.output(id, "Hung.");
                Ok(Flow::Done)
            },
        ),
    ]
}

#[cfg(not(any(test, feature = "test-build")))]
fn test_only(_: bool) -> Vec<(Spec, Handler)> {
    Vec::new()
}

/// Forgets a session in the store, after sealing what was already sent to it
/// (under its old counter, so no seq is reused).
fn forget(tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
    out.seal(tx)?;
    tx.forget_session(id)
}

/// Puts the first `shown` names in order (case-insensitive, then by bytes);
/// the rest are only counted, so a crowd is not sorted for a list of
/// `crowd_size`. Compared byte by byte: lowering whole names allocated two
/// strings per comparison, a millisecond for one `look` among a thousand.
fn sort_names(names: &mut [&str], shown: usize) {
    fn by_name(a: &&str, b: &&str) -> std::cmp::Ordering {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
            .then(a.cmp(b))
    }
    if shown < names.len() {
        names.select_nth_unstable_by(shown, by_name);
    }
    let shown = shown.min(names.len());
    names[..shown].sort_by(by_name);
}

#[cfg(test)]
mod tests;
