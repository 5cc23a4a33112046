//! A test kit for game authors: the game in process, with fake sessions,
//! its own temporary database, a clock moved by hand, and reloads through
//! the server's own Sync and restore code.
//!
//! Each call runs what a server would (one transaction per input, password
//! work and the game's deferred work done at once, unless
//! [`hold_work`](TestGame::hold_work) says to wait) and delivers everything
//! sent, as a portal would.
//! What a session was sent is read back as plain text ([`TestGame::seen`]).
//!
//! ```
//! use ev_server::testkit::TestGame;
//! # use ev_server::{Context, Game, Result, Setup, Spec};
//! # #[derive(Default)] struct Echo;
//! # impl Game for Echo {
//! #     fn setup(setup: &mut Setup<Self>) {
//! #         setup.command(Spec::new("echo", "echo TEXT", "Echo."), |_, cx, text| {
//! #             cx.reply(&format!("You hear: {text}"));
//! #             Ok(())
//! #         });
//! #     }
//! # }
//! let mut game = TestGame::new(Echo::default);
//! let alice = game.player("Alice");
//! assert_eq!(game.input(alice, "echo hi"), ["You hear: hi"]);
//! game.reload();
//! assert_eq!(game.input(alice, "echo again"), ["You hear: again"]);
//! ```
// A test kit fails the test that uses it by panicking, as `assert!` does.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ev::config::Synchronous;

use crate::auth::{Hasher, Outcome};
use crate::event::{Inbound, Oob, Outbound, PortalSession, SessionId, SessionState, Snapshot};
use crate::game::api::Game;
use crate::game::context::Context;
use crate::game::deferred::Deferred;
use crate::game::{Job, Kernel, Limits, Outbox, Rules};
use crate::store::Store;

/// The password [`TestGame::player`] gives every account.
pub const PASSWORD: &str = "secret";

/// What the fake portal keeps of each session, as a real one does.
#[derive(Debug, Default)]
struct Fake {
    portal: PortalSession,
    server: SessionState,
    inputs: u64,
    acked: u64,
    delivered: u64,
    /// Lines, prompts and secret prompts, as plain text.
    seen: Vec<String>,
    /// Out-of-band data: name and value.
    oob: Vec<(String, serde_json::Value)>,
    closed: bool,
    /// The game was told of the close.
    told_closed: bool,
}

/// A game under test. See the module docs.
pub struct TestGame<G: Game> {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
    kernel: Kernel<G>,
    make: Box<dyn Fn() -> G>,
    hasher: Hasher,
    sessions: BTreeMap<SessionId, Fake>,
    next_session: u64,
    clock: SystemTime,
    rules: Rules,
    /// The game's deferred work, not yet run.
    work: Vec<Deferred>,
    hold_work: bool,
}

impl<G: Game> TestGame<G> {
    /// The game `make` makes, on a new empty database, served at once (its
    /// `on_start` has run). `make` is called again at each reload.
    pub fn new(make: impl Fn() -> G + 'static) -> TestGame<G> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("game.db");
        let rules = Rules {
            game_name: "Test game".into(),
            max_name_len: 20,
            min_password_len: 4,
            login: Limits {
                creates_per_address_per_hour: u32::MAX,
                creates_per_minute: u32::MAX,
                ..Limits::from_config(&ev::config::AuthConfig::default())
            },
            version: "test".into(),
            test_commands: false,
            crowd_size: 100,
        };
        let store = open(&path);
        let mut game = TestGame {
            kernel: Kernel::new(make(), rules.clone()),
            _dir: dir,
            path,
            store,
            make: Box::new(make),
            hasher: Hasher::cheap().expect("cheap argon2 parameters are valid"),
            sessions: BTreeMap::new(),
            next_session: 0,
            // A fixed time, so what a game prints of it is the same each run.
            clock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            rules,
            work: Vec::new(),
            hold_work: false,
        };
        game.kernel.state_mut().clock = Some(game.clock);
        game.run(vec![Inbound::Sync {
            sessions: Vec::new(),
            last: true,
        }]);
        game
    }

    /// Opens a session at the login screen (its welcome is in [`seen`](Self::seen)).
    pub fn connect(&mut self) -> SessionId {
        self.next_session += 1;
        let id = SessionId(self.next_session);
        let portal = PortalSession {
            id,
            protocol: "test".into(),
            peer: format!("10.0.0.{}:4000", self.next_session % 250 + 1),
            ..PortalSession::default()
        };
        self.sessions.insert(
            id,
            Fake {
                portal: portal.clone(),
                ..Fake::default()
            },
        );
        self.run(vec![Inbound::Opened(portal)]);
        id
    }

    /// A session playing a new character `name` (password [`PASSWORD`]);
    /// what it was sent so far is cleared.
    pub fn player(&mut self, name: &str) -> SessionId {
        let id = self.connect();
        self.input(id, &format!("create {name} {PASSWORD}"));
        let playing = self.sessions.get(&id).is_some_and(|s| s.server.logged_in());
        assert!(
            playing,
            "creating {name} failed: {:?}",
            self.sessions[&id].seen
        );
        self.seen(id);
        self.oob_seen(id);
        id
    }

    /// `line` typed by `session`; gives the text `session` was sent since
    /// last asked (other sessions keep theirs for [`seen`](Self::seen)).
    pub fn input(&mut self, session: SessionId, line: &str) -> Vec<String> {
        let seq = self.next_input(session);
        self.run(vec![Inbound::Input {
            session,
            seq,
            text: line.to_owned(),
        }]);
        self.seen(session)
    }

    /// Out-of-band data from `session`'s client.
    pub fn client_oob(&mut self, session: SessionId, name: &str, data: &str) {
        let seq = self.next_input(session);
        self.run(vec![Inbound::Oob {
            session,
            seq,
            oob: Oob {
                name: name.to_owned(),
                data: data.to_owned(),
            },
        }]);
    }

    /// The text `session` was sent since last asked (lines, prompts and
    /// secret prompts), as plain text.
    pub fn seen(&mut self, session: SessionId) -> Vec<String> {
        self.sessions
            .get_mut(&session)
            .map(|s| std::mem::take(&mut s.seen))
            .unwrap_or_default()
    }

    /// The out-of-band data `session` was sent since last asked: each
    /// message's name and value.
    pub fn oob_seen(&mut self, session: SessionId) -> Vec<(String, serde_json::Value)> {
        self.sessions
            .get_mut(&session)
            .map(|s| std::mem::take(&mut s.oob))
            .unwrap_or_default()
    }

    /// Whether the game still has `session` open (it did not quit).
    pub fn is_open(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_some_and(|s| !s.closed)
    }

    /// The player closes the connection.
    pub fn close(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.closed = true;
            s.told_closed = true;
        }
        self.run(vec![Inbound::Closed {
            session,
            reason: "closed by the test".into(),
        }]);
    }

    /// Moves the clock on and fires the timers that fall due, in order.
    pub fn advance(&mut self, by: Duration) {
        let until = self.clock + by;
        loop {
            let next = self.kernel.next_timer();
            match next {
                Some(due) if due <= until => {
                    self.clock = self.clock.max(due);
                    self.kernel.state_mut().clock = Some(self.clock);
                    self.transact(|kernel, tx, out| kernel.fire_timers(tx, 1, out).map(|_| ()));
                }
                _ => break,
            }
        }
        self.clock = until;
        self.kernel.state_mut().clock = Some(until);
        if !self.hold_work {
            self.run_work();
        }
    }

    /// Moves the clock on without firing anything, as if no server ran
    /// meanwhile; the next [`advance`](Self::advance) or
    /// [`reload`](Self::reload) fires what fell due, by each timer's
    /// [`Missed`](crate::Missed) policy.
    pub fn skip(&mut self, by: Duration) {
        self.clock += by;
        self.kernel.state_mut().clock = Some(self.clock);
    }

    /// The game's clock.
    pub fn now(&self) -> SystemTime {
        self.clock
    }

    /// While `hold` is true, deferred work ([`Context::defer`]) waits for
    /// [`run_work`](Self::run_work) instead of running at once: to see what
    /// happens meanwhile, or across a [`reload`](Self::reload) (which, like
    /// a real one, leaves the work to the new server to run again).
    pub fn hold_work(&mut self, hold: bool) {
        self.hold_work = hold;
    }

    /// How many pieces of deferred work wait to run.
    pub fn work_waiting(&self) -> usize {
        self.work.len()
    }

    /// Runs the deferred work waiting, oldest first, each result applied
    /// in a transaction of its own; and the work those results defer.
    pub fn run_work(&mut self) {
        while !self.work.is_empty() {
            let Deferred { id, name, input } = self.work.remove(0);
            let output = match self.kernel.work(&name) {
                Some(run) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(input)))
                    .unwrap_or_else(|_| Err("it panicked".to_owned())),
                None => Err(format!("no work is registered as {name:?}")),
            };
            self.transact(|kernel, tx, out| kernel.finish_deferred(tx, id, output, out));
        }
    }

    /// A reload: a new game from `make`, the database reopened, and every
    /// open session handed to it by the server's own Sync, as a portal
    /// does. Nothing a session was sent is lost or sent twice.
    pub fn reload(&mut self) {
        // The old server's work in flight is lost; its rows are not.
        self.work.clear();
        self.store = open(&self.path);
        let mut kernel = Kernel::new((self.make)(), self.rules.clone());
        kernel.state_mut().clock = Some(self.clock);
        // As a standby does: the world read ahead, caught up at the Sync.
        kernel.preload(&self.store);
        self.kernel = kernel;
        let snapshots = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.closed)
            .map(|(_, s)| Snapshot {
                portal: s.portal.clone(),
                server: s.server.clone(),
                acked_seq: s.acked,
                output_seq: s.delivered,
            })
            .collect();
        self.run(vec![Inbound::Sync {
            sessions: snapshots,
            last: true,
        }]);
        self.advance(Duration::ZERO);
    }

    /// Runs `f` with a context over a transaction of its own, committed:
    /// look at the game's state, or set some up.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut G, &mut Context) -> R) -> R {
        let mut result = None;
        self.transact(|kernel, tx, out| {
            result = Some(kernel.with_game(tx, out, None, f));
            Ok(())
        });
        result.expect("the closure ran")
    }

    fn next_input(&mut self, session: SessionId) -> u64 {
        let fake = self.sessions.entry(session).or_default();
        fake.inputs += 1;
        fake.inputs
    }

    /// One transaction over `events`, then every password job they start,
    /// each in a transaction of its own, as the engine does; then the
    /// connections the game disconnected close, as the portal closes them.
    fn run(&mut self, events: Vec<Inbound>) {
        self.run_once(events);
        if !self.hold_work {
            self.run_work();
        }
        let ended: Vec<SessionId> = self
            .sessions
            .iter_mut()
            .filter(|(_, s)| s.closed && !s.told_closed)
            .map(|(id, s)| {
                s.told_closed = true;
                *id
            })
            .collect();
        if !ended.is_empty() {
            self.run_once(
                ended
                    .into_iter()
                    .map(|session| Inbound::Closed {
                        session,
                        reason: "disconnected by the game".into(),
                    })
                    .collect(),
            );
        }
    }

    fn run_once(&mut self, events: Vec<Inbound>) {
        let mut jobs = self.transact(|kernel, tx, out| {
            for event in events {
                kernel.handle(tx, event, out)?;
            }
            Ok(())
        });
        while !jobs.is_empty() {
            let job: Job = jobs.remove(0);
            let outcome = if job.abandon.is_set() {
                Outcome::Abandoned
            } else {
                self.hasher.run_blocking(job.work)
            };
            let more = self
                .transact(|kernel, tx, out| kernel.resume(tx, job.id, job.session, outcome, out));
            jobs.extend(more);
        }
    }

    fn transact(
        &mut self,
        f: impl FnOnce(&mut Kernel<G>, &crate::store::Tx, &mut Outbox) -> Result<(), crate::StoreError>,
    ) -> Vec<Job> {
        let mut out = Outbox::default();
        let tx = self.store.begin().expect("a transaction");
        f(&mut self.kernel, &tx, &mut out).expect("the game's storage works");
        out.seal(&tx).expect("the outbox is written");
        tx.commit().expect("the transaction commits");
        self.work.extend(out.take_deferred());
        let (events, jobs) = out.finish();
        for event in events {
            self.deliver(event);
        }
        jobs
    }

    /// What a portal does with what the server sent.
    fn deliver(&mut self, event: Outbound) {
        let (session, seq) = match &event {
            Outbound::Output { session, seq, .. }
            | Outbound::Oob { session, seq, .. }
            | Outbound::Update { session, seq, .. }
            | Outbound::Disconnect { session, seq, .. } => (*session, *seq),
            Outbound::Ack { session, seq } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.acked = s.acked.max(*seq);
                }
                return;
            }
            _ => return,
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if seq != 0 && seq <= s.delivered {
            panic!("session {session} was sent seq {seq} twice: {event:?}");
        }
        s.delivered = s.delivered.max(seq);
        match event {
            Outbound::Output { text, form, .. } => s.seen.push(if form.markup {
                ev::markup::plain(&text)
            } else {
                text
            }),
            Outbound::Oob { oob, .. } => s.oob.push((
                oob.name,
                serde_json::from_str(&oob.data).unwrap_or(serde_json::Value::Null),
            )),
            Outbound::Update { server, .. } => s.server = server,
            Outbound::Disconnect { .. } => s.closed = true,
            _ => {}
        }
    }
}

fn open(path: &std::path::Path) -> Store {
    let mut store = Store::open(path, Synchronous::Normal).expect("the test database opens");
    store.migrate().expect("the test database migrates");
    store
}
