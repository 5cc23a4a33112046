//! The game's side of the server: the [`Kernel`] (sessions, logins,
//! exactly-once input, the runtime's commands) and the API a game is
//! written against ([`api`], [`context`], [`objects`], [`timers`]).
//!
//! Pure logic over in-memory state and a store transaction: no sockets, no
//! async, no protobuf. The engine hands the kernel events
//! ([`Kernel::handle`]), the results of password work ([`Kernel::resume`])
//! and due timers ([`Kernel::fire_timers`]); everything to be sent goes into
//! an [`Outbox`], which the engine sends only after the transaction commits.
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

pub mod api;
mod command;
pub mod context;
pub mod deferred;
mod idmap;
pub mod objects;
mod registry;
mod throttle;
pub mod timers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use crate::auth::{Abandon, Outcome, Work};
use crate::event::{
    ColourChoice, Form, Inbound, Oob, Outbound, OutboxRow, PortalSession, SessionId, SessionState,
    Snapshot, Stage,
};
use crate::store::{Account, Character, CreateError, StoreError, SyncState, Tx};
use api::{CommandFn, Error, Game, OobFn, Setup, ThenFn, TimerFn};
pub use command::valid_name;
use context::Context;
use deferred::{Deferred, Finished, WorkFn};
use idmap::IdMap;
use objects::{ObjectId, Objects};
use registry::Found;
pub(crate) use registry::Registry;
pub use registry::{Level, Place, Spec};
pub use throttle::Limits;
use throttle::{Origin, Throttle, Verdict};
use timers::Timers;

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

/// `server.max_deferred`'s default, for a kernel not told otherwise.
const DEFAULT_MAX_DEFERRED: usize = 10_000;

/// The answer to a login or account creation while every password worker
/// is busy and the queue is full.
const BUSY: &str = "The game is busy with other logins; please try again in a moment.";

/// The name of the test build's `@timer` timers; they tell every player
/// their text.
#[cfg(any(test, feature = "test-build"))]
const TEST_TIMER: &str = "@timer";

/// The name of the test build's `@work` deferred work.
#[cfg(any(test, feature = "test-build"))]
const TEST_WORK: &str = "@work";

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
    /// The game's deferred work to start once this commits.
    pub(crate) deferred: Vec<Deferred>,
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
            deferred: Vec::new(),
        }
    }

    /// The game's deferred work this transaction started (or found left by
    /// an earlier server): run it once the transaction commits.
    pub fn take_deferred(&mut self) -> Vec<Deferred> {
        std::mem::take(&mut self.deferred)
    }

    pub fn push(&mut self, event: Outbound) {
        self.events.push(event);
    }

    /// A line of markup.
    fn output(&mut self, session: SessionId, text: impl Into<String>) {
        self.text(session, text, Form::LINE);
    }

    pub(crate) fn text(&mut self, session: SessionId, text: impl Into<String>, form: Form) {
        self.events.push(Outbound::Output {
            session,
            seq: 0,
            text: text.into(),
            form,
        });
    }

    pub(crate) fn oob(&mut self, session: SessionId, oob: Oob) {
        self.events.push(Outbound::Oob {
            session,
            seq: 0,
            oob,
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
    Oob { seq: u64, oob: Oob },
    Close,
}

/// A login asked for step by step (`connect` or `create` alone): what the
/// session's next line answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asking {
    Name {
        create: bool,
    },
    /// The answer is a password: never logged, never echoed.
    Password {
        create: bool,
        name: String,
    },
}

pub(crate) struct Session {
    state: SessionState,
    /// Where it connects from, for the login throttle.
    origin: Option<Origin>,
    /// Some exactly when `state.stage` is Playing.
    pub(crate) character: Option<Character>,
    last_applied: u64,
    last_received: u64,
    failures: u32,
    /// The account's permission level while playing; Player before.
    pub(crate) level: Level,
    /// Boxed: the map of sessions holds a slot of this struct's size for
    /// every session and more, and a session rarely waits.
    pending: Option<Box<Pending>>,
    queue: VecDeque<Queued>,
    asking: Option<Asking>,
    /// What the portal knows of the connection (window size, client,
    /// character set), as it last said.
    pub(crate) client: PortalSession,
    /// The game's values kept with the session (in `state.extra`, as JSON).
    pub(crate) values: serde_json::Map<String, serde_json::Value>,
    /// `values` changed since the portal was last told (the session is in
    /// `State::values_changed`).
    pub(crate) values_changed: bool,
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
            asking: None,
            client: PortalSession::default(),
            values: serde_json::Map::new(),
            values_changed: false,
        }
    }

    /// Takes the game's values back from a snapshot's `extra`.
    fn restore_values(&mut self) {
        if self.state.extra.is_empty() {
            return;
        }
        match serde_json::from_slice(&self.state.extra) {
            Ok(values) => self.values = values,
            Err(e) => tracing::warn!("a session's values are unreadable and start empty: {e}"),
        }
    }
}

/// What a game's code sees through its [`Context`]: the sessions, who
/// plays which character, the objects and the timers.
pub(crate) struct State {
    /// Boxed: a map keeps a slot for every session and a third more on
    /// average, and a slot of 480 bytes made that third cost 0.3 KiB a
    /// session.
    pub(crate) sessions: IdMap<SessionId, Box<Session>>,
    /// The session playing each character. Changed only by [`State::play`]
    /// and [`State::stop_playing`], which keep the objects' index of
    /// where the played characters are in step.
    pub(crate) playing: IdMap<ObjectId, SessionId>,
    /// Replaced only by [`State::set_world`], for the same reason.
    pub(crate) objects: Objects,
    pub(crate) timers: Timers,
    /// The game's deferred work not yet finished.
    pub(crate) deferred: deferred::Waiting,
    pub(crate) crowd_size: usize,
    /// The test kit's clock; None: the system's.
    pub(crate) clock: Option<SystemTime>,
    /// Sessions whose game values changed since the portal was last told:
    /// a list, so an event does not walk every session to find them.
    pub(crate) values_changed: Vec<SessionId>,
}

impl State {
    pub(crate) fn now(&self) -> SystemTime {
        self.clock.unwrap_or_else(SystemTime::now)
    }

    /// `session` plays `character` from now on (in place of any other).
    pub(crate) fn play(&mut self, character: ObjectId, session: SessionId) {
        self.playing.insert(character, session);
        self.objects.set_played(character, true);
    }

    /// Nobody plays `character` any more.
    pub(crate) fn stop_playing(&mut self, character: ObjectId) {
        if self.playing.remove(&character).is_some() {
            self.objects.set_played(character, false);
        }
    }

    /// A whole new world (loaded, or read ahead and caught up): the
    /// characters played meanwhile are played in it too.
    pub(crate) fn set_world(&mut self, objects: Objects) {
        self.objects = objects;
        for &character in self.playing.keys() {
            self.objects.set_played(character, true);
        }
    }
}

/// What runs a command: the runtime's own (login, help, quit...) or the
/// game's.
enum Action<G> {
    Runtime(Builtin<G>),
    Game(CommandFn<G>),
}

impl<G> Clone for Action<G> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<G> Copy for Action<G> {}

/// A runtime command's code: the kernel, the transaction, who typed it and
/// the rest of their line.
type Builtin<G> = fn(&mut Kernel<G>, &Tx, SessionId, &str, &mut Outbox) -> Result<Flow, StoreError>;

/// The runtime's side of the game: sessions, exactly-once input, logins,
/// the runtime's commands, and the calls into the [`Game`].
pub struct Kernel<G> {
    game: G,
    rules: Rules,
    commands: Registry<Action<G>>,
    oob: HashMap<String, OobFn<G>>,
    timer_fns: HashMap<String, TimerFn<G>>,
    work_fns: HashMap<String, (WorkFn, ThenFn<G>)>,
    state: State,
    throttle: Throttle,
    next_job: u64,
    /// A Sync that has not had its last chunk.
    syncing: Option<Syncing>,
    /// The game's migrations ran, the objects are loaded and `on_start` ran.
    started: bool,
    /// The world read ahead of serving (as a standby), and its revision.
    preloaded: Option<(Objects, i64)>,
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

/// What a game handler's error becomes: a storage failure goes up to the
/// engine (which stalls or restarts, so the input is applied again), any
/// other is logged and the player told.
fn settle(
    result: api::Result<()>,
    session: Option<SessionId>,
    what: &str,
    out: &mut Outbox,
) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(Error::Store(e)) => Err(e),
        Err(e) => {
            tracing::error!(session = ?session.map(|s| s.0), "{what} failed: {e}");
            if let Some(id) = session {
                out.output(id, "Something went wrong; that did not work.");
            }
            Ok(())
        }
    }
}

impl<G: Game> Kernel<G> {
    pub fn new(game: G, rules: Rules) -> Kernel<G> {
        let mut setup = Setup::default();
        G::setup(&mut setup);
        let mut commands = builtins::<G>(rules.test_commands);
        #[cfg(any(test, feature = "test-build"))]
        if rules.test_commands {
            let run = deferred::erase(TEST_WORK, test_work);
            setup
                .work
                .insert(TEST_WORK.to_owned(), (run, test_work_done::<G>));
        }
        for (spec, run) in setup.commands {
            if commands.remove(spec.name) {
                tracing::info!(
                    command = spec.name,
                    "the game replaces the runtime's command"
                );
            }
            if let Err(clash) = commands.add(spec, Action::Game(run)) {
                tracing::error!("{clash}: the second is left out");
            }
        }
        Kernel {
            game,
            commands,
            oob: setup.oob,
            timer_fns: setup.timers,
            throttle: Throttle::new(rules.login.clone(), std::time::Instant::now()),
            state: State {
                sessions: IdMap::default(),
                playing: IdMap::default(),
                objects: Objects::default(),
                timers: Timers::default(),
                deferred: deferred::Waiting {
                    names: setup.work.keys().cloned().collect(),
                    max: DEFAULT_MAX_DEFERRED,
                    ..deferred::Waiting::default()
                },
                crowd_size: rules.crowd_size,
                clock: None,
                values_changed: Vec::new(),
            },
            work_fns: setup.work,
            rules,
            next_job: 0,
            syncing: None,
            started: false,
            preloaded: None,
        }
    }

    /// Reads the world ahead of serving, without writing: a standby does
    /// this while the old server still serves, so its first transaction
    /// only catches up on what changed since. Any failure (an older schema
    /// the first transaction will migrate) leaves the load to that
    /// transaction.
    pub fn preload(&mut self, store: &crate::store::Store) {
        let began = std::time::Instant::now();
        match store.schema_version() {
            Ok(v) if v == crate::store::SCHEMA_VERSION => {}
            _ => return,
        }
        match Objects::read(store) {
            Ok((objects, rev)) => {
                tracing::info!(
                    objects = objects.len(),
                    rev,
                    micros = began.elapsed().as_micros() as u64,
                    "world read ahead"
                );
                self.preloaded = Some((objects, rev));
            }
            Err(e) => tracing::debug!("the world is loaded at the first transaction: {e}"),
        }
    }

    /// At most `max` pieces of deferred work waiting (`server.max_deferred`).
    pub fn limit_deferred(&mut self, max: usize) {
        self.state.deferred.max = max;
    }

    /// The work registered as `name`, to run off the engine's thread.
    pub fn work(&self, name: &str) -> Option<WorkFn> {
        self.work_fns.get(name).map(|(run, _)| run.clone())
    }

    /// Applies the result of deferred work `id`: its row goes, and its
    /// `then` handler runs, in this transaction. A result for work not
    /// pending (finished already) is dropped.
    pub fn finish_deferred(
        &mut self,
        tx: &Tx,
        id: i64,
        output: std::result::Result<serde_json::Value, String>,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        self.start(tx, out)?;
        let Some((name, session)) = self.state.deferred.rows.remove(&id) else {
            tracing::debug!(id, "result of deferred work no longer pending dropped");
            return Ok(());
        };
        tx.undefer(id)?;
        // The session is the one that deferred it only while it is still here.
        let session = session.filter(|s| self.state.sessions.contains_key(s));
        if let Err(why) = &output {
            tracing::error!(work = name, "deferred work failed: {why}");
        }
        let Some(&(_, then)) = self.work_fns.get(&name) else {
            tracing::warn!(
                work = name,
                "no work of this name is registered now; its result is dropped"
            );
            return Ok(());
        };
        let finished = Finished {
            name: name.clone(),
            session,
            output,
        };
        let result = self.with_game(tx, out, session, |game, cx| then(game, cx, &finished));
        settle(result, session, &format!("work {name}"), out)?;
        self.tell_values(out);
        out.seal(tx)
    }

    #[cfg(test)]
    pub fn session_count(&self) -> usize {
        self.state.sessions.len()
    }

    #[cfg(feature = "testkit")]
    pub(crate) fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Runs `f` on the game with a context over `tx` for `actor`.
    pub(crate) fn with_game<R>(
        &mut self,
        tx: &Tx,
        out: &mut Outbox,
        actor: Option<SessionId>,
        f: impl FnOnce(&mut G, &mut Context) -> R,
    ) -> R {
        let mut cx = Context {
            state: &mut self.state,
            tx,
            out,
            actor,
            login: None,
        };
        f(&mut self.game, &mut cx)
    }

    /// Once, in the first transaction of the server that serves: the
    /// game's migrations not yet run, the objects and timers into memory,
    /// then the game's `on_start`.
    fn start(&mut self, tx: &Tx, out: &mut Outbox) -> Result<(), StoreError> {
        if self.started {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let done = tx.game_migrations()?;
        let mut migrations = G::migrations();
        migrations.sort_by_key(|m| m.version);
        let mut migrated = false;
        for m in migrations.iter().filter(|m| !done.contains(&m.version)) {
            tx.run_game_migration(m.version, m.name, m.sql)?;
            migrated = true;
            tracing::info!(version = m.version, name = m.name, "game migration ran");
        }
        let (objects, caught_up) = self.load_world(tx, migrated)?;
        self.state.set_world(objects);
        self.state.timers = Timers::load(tx)?;
        // Work a server before this one deferred and did not finish runs again.
        for row in tx.load_deferred()? {
            let session = row.session.map(|s| SessionId(s as u64));
            let input = serde_json::from_str(&row.input).unwrap_or(serde_json::Value::Null);
            self.state
                .deferred
                .rows
                .insert(row.id, (row.name.clone(), session));
            out.deferred.push(Deferred {
                id: row.id,
                name: row.name,
                input,
            });
        }
        // No standby loaded before now: tombstones so far have done their work.
        tx.prune_tombstones(tx.world_rev()?)?;
        self.started = true;
        tracing::info!(
            objects = self.state.objects.len(),
            timers = self.state.timers.len(),
            deferred = self.state.deferred.rows.len(),
            caught_up = ?caught_up,
            micros = began.elapsed().as_micros() as u64,
            "world loaded"
        );
        let result = self.with_game(tx, out, None, |game, cx| game.on_start(cx));
        settle(result, None, "on_start", out)
    }

    /// The world: the one read ahead, caught up on what changed since (the
    /// number of changes), or else read now (None).
    fn load_world(
        &mut self,
        tx: &Tx,
        migrated: bool,
    ) -> Result<(Objects, Option<usize>), StoreError> {
        // A migration's SQL changes rows without a revision: load afresh.
        let preloaded = self.preloaded.take().filter(|_| !migrated);
        if let Some((mut objects, rev)) = preloaded
            && let Some(changes) = tx.world_since(rev)?
        {
            let n = changes.objects.len() + changes.attributes.len() + changes.deleted.len();
            objects.apply(changes);
            return Ok((objects, Some(n)));
        }
        Ok((Objects::load(tx)?, None))
    }

    /// When the next timer is due, once serving.
    pub fn next_timer(&self) -> Option<SystemTime> {
        if self.started && self.syncing.is_none() {
            self.state.timers.next_due()
        } else {
            None
        }
    }

    /// Fires the timers due by now, at most `max`, in `tx`; gives how many.
    pub fn fire_timers(
        &mut self,
        tx: &Tx,
        max: usize,
        out: &mut Outbox,
    ) -> Result<usize, StoreError> {
        self.start(tx, out)?;
        let mut fired = 0;
        while fired < max {
            let now = self.state.now();
            let Some(timer) = self.state.timers.take_due(tx, now)? else {
                break;
            };
            fired += 1;
            #[cfg(any(test, feature = "test-build"))]
            if timer.name == TEST_TIMER {
                let text = timer.data.as_str().unwrap_or_default().to_owned();
                tracing::info!(text, "@timer fired");
                for &session in self.state.playing.values() {
                    out.output(session, ev::markup::escape(&text));
                }
                continue;
            }
            let Some(run) = self.timer_fns.get(&timer.name).copied() else {
                tracing::warn!(
                    timer = timer.name,
                    "no handler for this timer; it is dropped"
                );
                continue;
            };
            let result = self.with_game(tx, out, None, |game, cx| run(game, cx, &timer));
            settle(result, None, &format!("timer {}", timer.name), out)?;
        }
        self.tell_values(out);
        out.seal(tx)?;
        Ok(fired)
    }

    /// Applies one event from the portal. Drain and Heartbeat are the
    /// engine's business, a hello the link's, and do nothing here.
    /// What it sends is sealed into the outbox before it returns.
    pub fn handle(&mut self, tx: &Tx, event: Inbound, out: &mut Outbox) -> Result<(), StoreError> {
        self.start(tx, out)?;
        match event {
            Inbound::Opened(s) => {
                self.opened(tx, s.id, &s.peer, out)?;
                self.session_info(s);
            }
            Inbound::SessionInfo(s) => self.session_info(s),
            Inbound::Input { session, seq, text } => {
                self.input(tx, session, seq, Queued::Input { seq, text }, out)?
            }
            Inbound::Oob { session, seq, oob } => {
                self.input(tx, session, seq, Queued::Oob { seq, oob }, out)?
            }
            Inbound::Closed { session, .. } => self.closed(tx, session, out)?,
            Inbound::StaffNotice { text } => self.tell_staff(&text, out),
            Inbound::Sync { sessions, last } => self.sync(tx, sessions, last, out)?,
            Inbound::Delivered { session, seq } => tx.prune_outbox(session, seq)?,
            Inbound::Hello(_) | Inbound::Drain { .. } | Inbound::Heartbeat { .. } => {}
        }
        self.tell_values(out);
        out.seal(tx)
    }

    /// Tells the portal the new values of every session whose game values
    /// changed, so a snapshot carries them to the next server.
    fn tell_values(&mut self, out: &mut Outbox) {
        for id in std::mem::take(&mut self.state.values_changed) {
            let Some(session) = self.state.sessions.get_mut(&id) else {
                continue;
            };
            session.values_changed = false;
            session.state.extra = serde_json::to_vec(&session.values).unwrap_or_default();
            out.update(id, &session.state);
        }
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
        self.start(tx, out)?;
        let Some(session) = self.state.sessions.get_mut(&id) else {
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
        self.tell_values(out);
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
        if self.state.sessions.contains_key(&id) {
            tracing::warn!(session = %id, "opened twice; starting it afresh");
            self.remove(tx, id, false, out)?;
        }
        // A new session has applied and been sent nothing, whatever an old
        // one of the same number left behind.
        forget(tx, id, out)?;
        self.state
            .sessions
            .insert(id, Box::new(Session::new(0, peer)));
        self.greet(id, out);
        Ok(())
    }

    /// What the portal knows of a session's connection changed.
    fn session_info(&mut self, portal: PortalSession) {
        if let Some(session) = self.state.sessions.get_mut(&portal.id) {
            session.client = portal;
        }
    }

    fn greet(&mut self, id: SessionId, out: &mut Outbox) {
        out.output(id, command::welcome(&self.rules.game_name));
        out.update(id, &SessionState::login());
    }

    fn closed(&mut self, tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
        match self.state.sessions.get_mut(&id) {
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
        self.remove(tx, id, true, out)?;
        forget(tx, id, out)
    }

    /// Takes a session out of the game. If it played and `logout`, the
    /// game's `on_logout` runs first (the character still online); inputs
    /// it still queued are acknowledged and ignored, like any input for an
    /// unknown session.
    fn remove(
        &mut self,
        tx: &Tx,
        id: SessionId,
        logout: bool,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let playing = self
            .state
            .sessions
            .get(&id)
            .and_then(|s| s.character.as_ref())
            .map(|c| ObjectId(c.id));
        if logout && playing.is_some() {
            let result = self.with_game(tx, out, Some(id), |game, cx| game.on_logout(cx));
            settle(result, None, "on_logout", out)?;
        }
        let Some(session) = self.state.sessions.remove(&id) else {
            return Ok(());
        };
        if let Some(ch) = playing
            && self.state.playing.get(&ch) == Some(&id)
        {
            self.state.stop_playing(ch);
        }
        if let Some(pending) = &session.pending {
            pending.abandon.set();
        }
        for queued in session.queue {
            if let Queued::Input { seq, .. } | Queued::Oob { seq, .. } = queued {
                out.ack(id, seq);
            }
        }
        Ok(())
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
        // Every playing session's character in one read, not one each.
        let playing: Vec<i64> = sessions
            .iter()
            .filter(|s| s.server.stage == Stage::Playing)
            .map(|s| s.server.character_id)
            .collect();
        let mut characters = tx.characters_and_levels(&playing)?;
        self.state.sessions.reserve(sessions.len());
        for snapshot in sessions {
            syncing.listed.insert(snapshot.portal.id);
            let state = syncing
                .stored
                .remove(&snapshot.portal.id)
                .unwrap_or_default();
            self.restore(tx, snapshot, state, &mut characters, out)?;
        }
        if !last {
            self.syncing = Some(syncing);
            return Ok(());
        }
        let gone: Vec<SessionId> = self
            .state
            .sessions
            .keys()
            .filter(|id| !syncing.listed.contains(id))
            .copied()
            .collect();
        for &id in &gone {
            self.remove(tx, id, true, out)?;
        }
        out.seal(tx)?;
        // Nothing but the listed sessions is open: forget the rest, including
        // what a gone session was just sent ("X has left.").
        for id in syncing.stored.into_keys().chain(gone) {
            tx.forget_session(id)?;
        }
        out.push(Outbound::Ready {
            sessions: self.state.sessions.len() as u64,
        });
        tracing::info!(
            sessions = self.state.sessions.len(),
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
        characters: &mut HashMap<i64, (Character, i64)>,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let id = snapshot.portal.id;
        if self.state.sessions.contains_key(&id) {
            self.remove(tx, id, false, out)?;
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
        match state.stage {
            Stage::New => {
                self.state.sessions.insert(id, Box::new(session));
                self.greet(id, out);
            }
            Stage::Login => {
                session.state = SessionState {
                    stage: Stage::Login,
                    ..state
                };
                session.restore_values();
                self.state.sessions.insert(id, Box::new(session));
            }
            Stage::Playing => {
                // Read ahead for the chunk, unless the outbox's last word
                // moved the session to another character.
                let found = match characters.remove(&state.character_id) {
                    Some(found) => Some(found),
                    None => tx.character_and_level(state.character_id)?,
                };
                match found {
                    Some((ch, level)) => {
                        session.level = Level::from_i64(level);
                        session.state = SessionState {
                            account_id: ch.account_id,
                            character_id: ch.id,
                            ..state
                        };
                        session.restore_values();
                        self.state.play(ObjectId(ch.id), id);
                        session.character = Some(ch);
                        self.state.sessions.insert(id, Box::new(session));
                    }
                    None => {
                        tracing::warn!(
                            session = %id,
                            character = state.character_id,
                            "synced session plays a character that does not exist; back to the login screen"
                        );
                        self.state.sessions.insert(id, Box::new(session));
                        self.greet(id, out);
                    }
                }
            }
        }
        Ok(())
    }

    // === input ===

    fn input(
        &mut self,
        tx: &Tx,
        id: SessionId,
        seq: u64,
        input: Queued,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let Some(session) = self.state.sessions.get_mut(&id) else {
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
            session.queue.push_back(input);
            return Ok(());
        }
        self.run_input(tx, id, input, out)
    }

    fn run_input(
        &mut self,
        tx: &Tx,
        id: SessionId,
        input: Queued,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let (seq, flow) = match input {
            Queued::Input { seq, text } => (seq, self.line(tx, id, &text, out)?),
            Queued::Oob { seq, oob } => {
                self.client_oob(tx, id, oob, out)?;
                (seq, Flow::Done)
            }
            Queued::Close => return self.close(tx, id, out),
        };
        match flow {
            Flow::Done => self.applied(tx, id, seq, out),
            Flow::Wait { .. } if out.jobs.len() >= out.job_room => {
                out.output(id, BUSY);
                self.applied(tx, id, seq, out)
            }
            Flow::Wait { work, then, delay } => {
                let job = JobId(self.next_job);
                self.next_job += 1;
                let abandon = Abandon::default();
                if let Some(session) = self.state.sessions.get_mut(&id) {
                    session.pending = Some(Box::new(Pending {
                        job,
                        seq,
                        then,
                        abandon: abandon.clone(),
                    }));
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

    /// Out-of-band data from a client, to the game's handler of its name.
    fn client_oob(
        &mut self,
        tx: &Tx,
        id: SessionId,
        oob: Oob,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let Some(run) = self.oob.get(&oob.name).copied() else {
            tracing::debug!(session = %id, name = oob.name, "no handler for this OOB message");
            return Ok(());
        };
        let data = if oob.data.trim().is_empty() {
            serde_json::Value::Null
        } else {
            match serde_json::from_str(&oob.data) {
                Ok(data) => data,
                Err(e) => {
                    tracing::debug!(session = %id, name = oob.name, "OOB data is not JSON: {e}");
                    return Ok(());
                }
            }
        };
        let result = self.with_game(tx, out, Some(id), |game, cx| run(game, cx, &data));
        settle(result, Some(id), &format!("OOB {}", oob.name), out)
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
        if let Some(session) = self.state.sessions.get_mut(&id) {
            session.last_applied = seq;
        }
        out.ack(id, seq);
        Ok(())
    }

    fn run_queue(&mut self, tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
        loop {
            let Some(session) = self.state.sessions.get_mut(&id) else {
                return Ok(());
            };
            if session.pending.is_some() {
                return Ok(());
            }
            match session.queue.pop_front() {
                None => return Ok(()),
                Some(queued) => self.run_input(tx, id, queued, out)?,
            }
        }
    }

    // === commands ===

    /// A line a session typed: the answer to a login question, or a command.
    fn line(
        &mut self,
        tx: &Tx,
        id: SessionId,
        text: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let asking = self
            .state
            .sessions
            .get_mut(&id)
            .and_then(|s| s.asking.take());
        match asking {
            Some(asking) => self.answer(tx, id, asking, text, out),
            None => self.command(tx, id, text, out),
        }
    }

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
            let verb = echoed(verb);
            if playing {
                format!("Unknown command '{verb}'. Type help for a list.")
            } else {
                format!(
                    "Unknown command '{verb}'. Type create NAME PASSWORD, connect NAME PASSWORD, or help."
                )
            }
        };
        let action = match self.commands.find(verb, playing, level) {
            Found::Command(_, action) => *action,
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
        match action {
            Action::Runtime(run) => run(self, tx, id, typed.rest, out),
            Action::Game(run) => {
                let result =
                    self.with_game(tx, out, Some(id), |game, cx| run(game, cx, typed.rest));
                settle(result, Some(id), verb, out)?;
                Ok(Flow::Done)
            }
        }
    }

    /// Whether session `id` plays, and its level: which commands it sees.
    fn standing(&self, id: SessionId) -> Option<(bool, Level)> {
        let session = self.state.sessions.get(&id)?;
        Some((session.character.is_some(), session.level))
    }

    /// Whether what `session` types next answers a password prompt: a log
    /// must show none of it.
    pub fn answers_secret(&self, session: SessionId) -> bool {
        matches!(
            self.state
                .sessions
                .get(&session)
                .and_then(|s| s.asking.as_ref()),
            Some(Asking::Password { .. })
        )
    }

    /// What hides the secrets of the game's commands from a log (see
    /// [`Registry::loggable`]), for a thread of its own: the command
    /// watchdog redacts a line only when it logs one, not for every input.
    pub fn redactor(&self) -> Registry<()> {
        self.commands.specs()
    }

    /// `text`, typed by `session`, as a log may show it: no secret of any
    /// command, and nothing of an answer to a password prompt.
    #[cfg(test)]
    pub fn loggable(&self, session: SessionId, text: &str) -> String {
        self.commands
            .loggable_input(text, self.answers_secret(session))
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
                .unwrap_or_else(|| format!("There is no help on '{}'.", echoed(topic)))
        };
        out.output(id, ev::markup::escape(&text));
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
            out.output(id, format!("There is no account '{}'.", echoed(name)));
            return Ok(Flow::Done);
        };
        tx.set_level(account.id, level.as_i64())?;
        for s in self.state.sessions.values_mut() {
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

    /// `colour [SETTING]`: the player's colours, kept on the account and
    /// sent to the portal in the session's state, in this transaction's
    /// sequence, so the reply and everything after it is in the new
    /// colours, and the setting comes back at each login and in a Sync.
    fn colour(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let Some(session) = self.state.sessions.get_mut(&id) else {
            return Ok(Flow::Done);
        };
        let choices = ColourChoice::ALL.map(ColourChoice::name).join("|");
        let args = args.trim();
        if args.is_empty() {
            out.output(
                id,
                format!(
                    "Your colours: {}. Change them with: colour {choices}",
                    describe_colours(session.state.colours)
                ),
            );
            return Ok(Flow::Done);
        }
        let Some(choice) = ColourChoice::parse(args) else {
            out.output(
                id,
                format!(
                    "There is no colour setting '{}'. Usage: colour {choices}",
                    echoed(args)
                ),
            );
            return Ok(Flow::Done);
        };
        tx.set_colours(session.state.account_id, choice.name())?;
        session.state.colours = choice;
        out.update(id, &session.state);
        out.output(
            id,
            format!(
                "Your colours: {}. {{red}}red{{/}} {{green}}green{{/}} {{x208}}orange{{/}} {{#3399ff}}sky{{/}}",
                describe_colours(choice)
            ),
        );
        Ok(Flow::Done)
    }

    fn quit(&mut self, tx: &Tx, id: SessionId, out: &mut Outbox) -> Result<(), StoreError> {
        out.output(id, "Goodbye.");
        out.disconnect(id, "quit");
        self.remove(tx, id, true, out)
    }

    /// `create NAME PASSWORD`; `create` alone asks for a name, then a
    /// password; `create NAME` for the password.
    fn create(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        self.login_line(tx, id, args, true, out)
    }

    fn try_create(
        &mut self,
        tx: &Tx,
        id: SessionId,
        name: &str,
        password: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let max = self.rules.max_name_len;
        let min = self.rules.min_password_len;
        if !command::valid_name(name, max) {
            out.output(id, format!("Names are 2-{max} letters, A to Z only."));
        } else if password.chars().count() < min || password.chars().any(char::is_whitespace) {
            out.output(
                id,
                format!("Passwords need at least {min} characters and no spaces."),
            );
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

    /// `connect NAME PASSWORD`; `connect` alone asks for a name, then a
    /// password; `connect NAME` for the password.
    fn connect(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        self.login_line(tx, id, args, false, out)
    }

    /// The arguments of `create` (if `create`) or `connect`: both, or what
    /// is missing asked for.
    fn login_line(
        &mut self,
        tx: &Tx,
        id: SessionId,
        args: &str,
        create: bool,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let args: Vec<&str> = args.split_whitespace().collect();
        match args.as_slice() {
            [] => self.ask(id, Asking::Name { create }, out),
            &[name] => {
                let name = name.to_owned();
                self.ask(id, Asking::Password { create, name }, out);
            }
            &[name, password] if create => return self.try_create(tx, id, name, password, out),
            &[name, password] => return self.try_connect(tx, id, name, password, out),
            _ => {
                let verb = if create { "create" } else { "connect" };
                out.output(
                    id,
                    format!("Usage: {verb} NAME PASSWORD (or {verb} alone, to be asked)"),
                );
            }
        }
        Ok(Flow::Done)
    }

    /// Puts a login question to session `id`; its next line answers it.
    fn ask(&mut self, id: SessionId, asking: Asking, out: &mut Outbox) {
        let form = |kind| Form { markup: true, kind };
        match &asking {
            Asking::Name { .. } => out.text(id, "Name: ", form(ev::link::TextKind::Prompt)),
            Asking::Password { .. } => out.text(id, "Password: ", form(ev::link::TextKind::Secret)),
        }
        if let Some(session) = self.state.sessions.get_mut(&id) {
            session.asking = Some(asking);
        }
    }

    /// The answer to a login question. An empty answer gives up.
    fn answer(
        &mut self,
        tx: &Tx,
        id: SessionId,
        asking: Asking,
        text: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let answer = text.trim();
        if answer.is_empty() {
            out.output(id, "Never mind.");
            return Ok(Flow::Done);
        }
        match asking {
            Asking::Name { create } => {
                self.ask(
                    id,
                    Asking::Password {
                        create,
                        name: answer.to_owned(),
                    },
                    out,
                );
                Ok(Flow::Done)
            }
            Asking::Password { create: true, name } => self.try_create(tx, id, &name, answer, out),
            Asking::Password {
                create: false,
                name,
            } => self.try_connect(tx, id, &name, answer, out),
        }
    }

    fn try_connect(
        &mut self,
        tx: &Tx,
        id: SessionId,
        name: &str,
        password: &str,
        out: &mut Outbox,
    ) -> Result<Flow, StoreError> {
        let account = if command::valid_name(name, self.rules.max_name_len) {
            tx.account_by_name(name)?
        } else {
            None
        };
        let failures = self.state.sessions.get(&id).map_or(0, |s| s.failures);
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
                let start = self.with_game(tx, out, Some(id), |game, cx| game.start_location(cx));
                match tx.create_account(&name, &hash, Level::Player.as_i64(), start.map(|s| s.0)) {
                    Ok(ch) => {
                        tracing::info!(session = %id, name, "account created");
                        tx.record_login(ch.account_id)?;
                        self.state.objects.insert(
                            ObjectId(ch.id),
                            objects::Object {
                                kind: "character".into(),
                                name: ch.name.clone(),
                                location: start,
                                attributes: Default::default(),
                            },
                        );
                        self.enter_game(tx, id, ch, Level::Player, Login::New, out)?;
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
                    let login = if tx.record_login(account.id)? {
                        Login::Returning
                    } else {
                        Login::New
                    };
                    let level = Level::from_i64(account.level);
                    self.enter_game(tx, id, ch, level, login, out)?;
                }
                None => {
                    tracing::warn!(session = %id, account = account.id, "account has no character");
                    out.output(id, "That account has no character.");
                }
            },
            (Then::Connect { name, .. }, Outcome::Verified(false)) => {
                self.throttle.failed(self.origin(id), &name, now());
                if let Some(session) = self.state.sessions.get_mut(&id) {
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
    /// any other session that plays it, then runs the game's `on_login`.
    fn enter_game(
        &mut self,
        tx: &Tx,
        id: SessionId,
        ch: Character,
        level: Level,
        login: Login,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let object = ObjectId(ch.id);
        let previous = self
            .state
            .playing
            .get(&object)
            .copied()
            .filter(|p| *p != id);
        if let Some(other) = previous
            && let Some(s) = self.state.sessions.get_mut(&other)
        {
            s.character = None;
            s.level = Level::Player;
            s.state = SessionState {
                extra: std::mem::take(&mut s.state.extra),
                ..SessionState::login()
            };
            out.output(other, format!("Another connection took over {}.", ch.name));
            out.update(other, &s.state);
            out.disconnect(other, "takeover");
        }
        // A character somewhere that is gone goes to the start.
        let here = self.state.objects.get(object).and_then(|o| o.location);
        if here.is_none_or(|at| self.state.objects.get(at).is_none()) {
            let start = self.with_game(tx, out, Some(id), |game, cx| game.start_location(cx));
            if start.is_some() && start != here {
                tx.move_object(ch.id, start.map(|s| s.0))?;
                self.state.objects.set_location(object, start);
            }
        }
        // The account's colour setting goes to the portal with the login,
        // so the first line in play is already in the player's colours.
        let colours = tx
            .colours_of(ch.account_id)?
            .and_then(|name| ColourChoice::parse(&name))
            .unwrap_or_default();
        let Some(session) = self.state.sessions.get_mut(&id) else {
            return Ok(());
        };
        session.failures = 0;
        session.level = level;
        session.state = SessionState {
            stage: Stage::Playing,
            account_id: ch.account_id,
            character_id: ch.id,
            extra: std::mem::take(&mut session.state.extra),
            colours,
        };
        out.update(id, &session.state);
        let greeting = match (login, previous) {
            (_, Some(_)) | (Login::Returning | Login::Takeover, _) => {
                format!("Welcome back, {}!", ch.name)
            }
            (Login::New, _) => format!("Welcome, {}!", ch.name),
        };
        session.character = Some(ch);
        self.state.play(object, id);
        out.output(id, greeting);
        let login = if previous.is_some() {
            Login::Takeover
        } else {
            login
        };
        let result = self.with_game(tx, out, Some(id), |game, cx| {
            cx.login = Some(login);
            game.on_login(cx)
        });
        settle(result, Some(id), "on_login", out)
    }

    /// A line from the operator's tools to every admin in play.
    fn tell_staff(&mut self, text: &str, out: &mut Outbox) {
        tracing::info!(text, "telling the admins");
        let line = format!("{{yellow}}[ev] {}{{/}}", ev::markup::escape(text));
        for (&id, session) in &self.state.sessions {
            if session.character.is_some() && session.level >= Level::Admin {
                out.output(id, line.clone());
            }
        }
    }

    fn origin(&self, id: SessionId) -> Option<Origin> {
        self.state.sessions.get(&id)?.origin
    }

    fn who(&self, id: SessionId, out: &mut Outbox) {
        let mut names: Vec<&str> = self
            .state
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
                name_list(&names, self.rules.crowd_size)
            ),
        );
    }
}

/// How a session came to play its character, as `on_login` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The account's first time in play (just created, or made by
    /// `create-admin`).
    New,
    /// Logged in again.
    Returning,
    /// Took the character over from another connection: the character
    /// did not go anywhere.
    Takeover,
}

/// `names`, or in a crowd the first `crowd_size` of them and a count.
/// Sort them first with [`sort_names`].
pub fn name_list(names: &[&str], crowd_size: usize) -> String {
    let shown = names.len().min(crowd_size);
    let list = names[..shown].join(", ");
    match names.len() - shown {
        0 => list,
        rest => format!("{list} and {rest} more"),
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

/// The runtime's own commands, which every game has unless it registers a
/// command of the same name. A name or alias two of them share is a mistake
/// in this list, caught by a unit test; at run time it is logged and the
/// second one left out.
fn builtins<G: Game>(test_commands: bool) -> Registry<Action<G>> {
    let account = |spec: Spec| spec.at_login().category("Account").secret_from(1);
    let list: Vec<(Spec, Builtin<G>)> = vec![
        (
            account(Spec::new(
                "create",
                "create NAME PASSWORD",
                "Make a new character (or type create alone to be asked).",
            )),
            Kernel::create,
        ),
        (
            account(Spec::new(
                "connect",
                "connect NAME PASSWORD",
                "Play your character (or type connect alone to be asked).",
            )),
            Kernel::connect,
        ),
        (
            Spec::new("who", "who", "List the players online."),
            |k, _, id, _, out| {
                k.who(id, out);
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new("version", "version", "Show the server's version."),
            |k, _, id, _, out| {
                out.output(id, ev::markup::escape(&k.rules.version));
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new("ping", "ping [TEXT]", "Check the connection.").anywhere(),
            |_, _, id, rest, out| {
                out.output(
                    id,
                    if rest.is_empty() {
                        "pong".to_owned()
                    } else {
                        format!("pong {}", echoed(rest))
                    },
                );
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new(
                "client",
                "client",
                "What the game knows of your client: name, window, characters.",
            )
            .anywhere(),
            |k, _, id, _, out| {
                if let Some(session) = k.state.sessions.get(&id) {
                    out.output(id, ev::markup::escape(&describe_client(&session.client)));
                }
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new(
                "help",
                "help [COMMAND]",
                "This list, or more on one command.",
            )
            .anywhere(),
            Kernel::help,
        ),
        (
            Spec::new(
                "colour",
                "colour [auto|plain|ansi16|xterm256|truecolour]",
                "Your colours: as your client says (auto), none, or as many as you choose.",
            )
            .aliases(&["color"]),
            Kernel::colour,
        ),
        (
            Spec::new("quit", "quit", "Leave the game.").anywhere(),
            |k, tx, id, _, out| {
                k.quit(tx, id, out)?;
                Ok(Flow::Done)
            },
        ),
        (
            Spec::new(
                "@grant",
                "@grant NAME LEVEL",
                "Make an account a player, builder or admin.",
            )
            .level(Level::Admin)
            .category("Admin"),
            Kernel::grant,
        ),
    ];
    let mut registry = Registry::default();
    for (spec, run) in list.into_iter().chain(test_only::<G>(test_commands)) {
        if let Err(clash) = registry.add(spec, Action::Runtime(run)) {
            tracing::error!("{clash}: the second is left out");
        }
    }
    registry
}

/// `@crash` (abort at once), `@hang` (block the engine far past the
/// command timeout), `@timer` and `@markup` (the player's text as the
/// game's own markup, so tests can send what no game's escaping would
/// let through), when `on`: only the test build has them at all.
#[cfg(any(test, feature = "test-build"))]
fn test_only<G: Game>(on: bool) -> Vec<(Spec, Builtin<G>)> {
    if !on {
        return Vec::new();
    }
    let test = |spec: Spec| spec.anywhere().category("Test build");
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
                "@timer",
                "@timer SECS TEXT",
                "Tell everyone TEXT in SECS seconds.",
            )),
            |k, tx, id, args, out| {
                let (secs, text) = args.split_once(' ').unwrap_or((args, ""));
                let secs: u64 = secs.parse().unwrap_or(1);
                let now = k.state.now();
                let timer = timers::Timer::after(std::time::Duration::from_secs(secs), TEST_TIMER)
                    .with(&text)
                    .unwrap_or_else(|_| {
                        timers::Timer::after(std::time::Duration::ZERO, TEST_TIMER)
                    });
                k.state.timers.schedule(tx, timer, now)?;
                out.output(id, "Timer set.");
                Ok(Flow::Done)
            },
        ),
        (
            test(Spec::new(
                "@work",
                "@work MS TEXT",
                "Defer work that takes MS milliseconds, then tell you TEXT.",
            )),
            |k, tx, id, args, out| {
                let (ms, text) = args.split_once(' ').unwrap_or((args, ""));
                let input = (ms.parse::<u64>().unwrap_or(0), text.to_owned());
                let result = k.with_game(tx, out, Some(id), |_, cx| cx.defer(TEST_WORK, &input));
                settle(result, Some(id), "@work", out)?;
                out.output(id, "Work deferred.");
                Ok(Flow::Done)
            },
        ),
        (
            test(Spec::new(
                "@markup",
                "@markup TEXT",
                "Reply TEXT as markup, unescaped: what a game could write.",
            )),
            |_, _, id, args, out| {
                out.output(id, args.to_owned());
                Ok(Flow::Done)
            },
        ),
        (
            test(Spec::new("@timers", "@timers", "Count the @timer timers.")),
            |k, _, id, _, out| {
                let n = k.state.timers.count(TEST_TIMER);
                out.output(id, format!("Test timers: {n}"));
                Ok(Flow::Done)
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
fn test_only<G: Game>(_: bool) -> Vec<(Spec, Builtin<G>)> {
    Vec::new()
}

/// The test build's `@work`: sleeps, then gives its text back.
#[cfg(any(test, feature = "test-build"))]
fn test_work((ms, text): (u64, String)) -> String {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    text
}

/// ...which its session is told.
#[cfg(any(test, feature = "test-build"))]
fn test_work_done<G>(_: &mut G, cx: &mut Context, finished: &Finished) -> api::Result<()> {
    let text: String = finished.output()?;
    tracing::info!(text, "@work done");
    if let Some(session) = finished.session {
        cx.send(session, &format!("Worked: {}", ev::markup::escape(&text)));
    }
    Ok(())
}

/// What a player typed, quoted back in a reply: control characters
/// dropped and braces escaped, so it shows as typed and is never markup.
fn echoed(typed: &str) -> String {
    ev::markup::escape(&ev::text::printable(typed))
}

/// A colour setting as the player reads it.
fn describe_colours(choice: ColourChoice) -> String {
    match choice {
        ColourChoice::Auto => "auto (as your client says)".to_owned(),
        fixed => fixed.name().to_owned(),
    }
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
pub fn sort_names(names: &mut [&str], shown: usize) {
    if shown < names.len() {
        names.select_nth_unstable_by(shown, by_name);
    }
    let shown = shown.min(names.len());
    names[..shown].sort_by(by_name);
}

/// Case-insensitive (ASCII), then by bytes, exactly only on a tie: a
/// `look` among 10,000 makes some 30,000 of these, and comparing every
/// pair exactly as well was 8% of the server's time in that crowd.
fn by_name(a: &&str, b: &&str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        .then_with(|| a.cmp(b))
}

#[cfg(test)]
pub(crate) mod tests;
