//! What a game author implements: the [`Game`] trait, and the [`Setup`]
//! that registers its commands, out-of-band handlers and timers.

use std::collections::HashMap;

use super::context::Context;
use super::deferred::{Finished, WorkFn};
use super::objects::ObjectId;
use super::registry::Spec;
use super::timers::Fired;
use crate::store::StoreError;

/// A game: the runtime owns sessions, logins, the Link, the database and
/// every exactly-once guarantee; the game owns what happens in it.
///
/// Every method gets a [`Context`] over the current transaction: what it
/// changes, says and schedules is committed together, or not at all. A
/// game does no I/O of its own and never blocks.
///
/// ```
/// use ev_server::{Context, Game, Result, Setup, Spec};
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl Game for Echo {
///     fn setup(setup: &mut Setup<Self>) {
///         setup.command(Spec::new("echo", "echo TEXT", "Hear yourself."), Echo::echo);
///     }
/// }
///
/// impl Echo {
///     fn echo(&mut self, cx: &mut Context, text: &str) -> Result<()> {
///         cx.reply(&format!("You hear: {}", ev_server::markup::escape(text)));
///         Ok(())
///     }
/// }
/// ```
pub trait Game: Sized + Send + 'static {
    /// Registers the game's commands, out-of-band handlers and timer
    /// handlers. Called once, when the server starts.
    fn setup(setup: &mut Setup<Self>);

    /// The game's own schema changes, in order. The runtime runs each one
    /// not yet run, once, in the first transaction of the first server that
    /// serves with it (never in a standby waiting for a reload).
    fn migrations() -> Vec<Migration> {
        Vec::new()
    }

    /// When this server starts serving: after a fresh start, a reload or a
    /// crash, before any session is restored or any input is applied. Build
    /// the world here if it is not built yet.
    fn on_start(&mut self, cx: &mut Context) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Where a new character starts, and where a character goes whose
    /// location is gone. None: nowhere.
    fn start_location(&self, cx: &Context) -> Option<ObjectId> {
        let _ = cx;
        None
    }

    /// A session started playing its character ([`Context::session`],
    /// [`Context::character`]), by logging in or by a new account.
    fn on_login(&mut self, cx: &mut Context) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// A session stops playing: it quit or disconnected. (Not when another
    /// connection takes the character over: the character stays.)
    fn on_logout(&mut self, cx: &mut Context) -> Result<()> {
        let _ = cx;
        Ok(())
    }
}

/// One of the game's data changes: SQL run once, in order of `version`,
/// in the transaction of the first server that serves with it. It sees the
/// runtime's tables (`objects`: id, kind, name, location; `attributes`:
/// object, key, value as JSON text), so it can reshape what older code
/// stored, or make tables of its own.
///
/// ```
/// use ev_server::Migration;
///
/// // Version 2 of a game renamed the attribute `health` to `hp`.
/// fn migrations() -> Vec<Migration> {
///     vec![Migration {
///         version: 1,
///         name: "health is hp",
///         sql: "UPDATE attributes SET key = 'hp' WHERE key = 'health';",
///     }]
/// }
/// # let _ = migrations();
/// ```
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// What can go wrong in a game's handler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed: the runtime stalls or restarts the server, and
    /// the input is applied again by the next attempt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value does not have the type asked for, or a value cannot
    /// be stored as JSON.
    #[error("attribute {key:?}: {source}")]
    Value {
        key: String,
        source: serde_json::Error,
    },
    #[error("there is no object {0}")]
    NoObject(ObjectId),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A command's code: the game, the context, and the rest of the line after
/// the command's name.
pub type CommandFn<G> = fn(&mut G, &mut Context, &str) -> Result<()>;
/// Out-of-band data from a client: its data (JSON, `Null` if none).
pub type OobFn<G> = fn(&mut G, &mut Context, &serde_json::Value) -> Result<()>;
/// A timer firing.
pub type TimerFn<G> = fn(&mut G, &mut Context, &Fired) -> Result<()>;
/// The result of deferred work ([`Setup::work`]) coming back.
pub type ThenFn<G> = fn(&mut G, &mut Context, &Finished) -> Result<()>;

/// Where a game registers what it handles.
pub struct Setup<G> {
    pub(crate) commands: Vec<(Spec, CommandFn<G>)>,
    pub(crate) oob: HashMap<String, OobFn<G>>,
    pub(crate) timers: HashMap<String, TimerFn<G>>,
    pub(crate) work: HashMap<String, (WorkFn, ThenFn<G>)>,
}

impl<G> Default for Setup<G> {
    fn default() -> Setup<G> {
        Setup {
            commands: Vec::new(),
            oob: HashMap::new(),
            timers: HashMap::new(),
            work: HashMap::new(),
        }
    }
}

impl<G> Setup<G> {
    /// A command. Help, prefix matching, permission checks and keeping
    /// secrets out of logs all come from its [`Spec`]. A game command of
    /// the same name as one of the runtime's (`connect`, `help`, ...)
    /// replaces it.
    pub fn command(&mut self, spec: Spec, run: CommandFn<G>) -> &mut Self {
        self.commands.push((spec, run));
        self
    }

    /// Out-of-band messages of this name from clients (a GMCP package
    /// message like "Char.Skills.Get"), applied exactly once in order with
    /// the session's typed commands.
    ///
    /// ```
    /// # use ev_server::{Game, Setup};
    /// # struct G;
    /// # impl Game for G {
    /// fn setup(setup: &mut Setup<Self>) {
    ///     setup.oob("Char.Skills.Get", |_, cx, data| {
    ///         let group = data.get("group").and_then(|g| g.as_str()).unwrap_or("all");
    ///         if let Some(session) = cx.session() {
    ///             cx.oob(session, "Char.Skills.List", &serde_json::json!({ "group": group, "list": [] }))?;
    ///         }
    ///         Ok(())
    ///     });
    /// }
    /// # }
    /// ```
    pub fn oob(&mut self, name: &str, run: OobFn<G>) -> &mut Self {
        self.oob.insert(name.to_owned(), run);
        self
    }

    /// What runs when a timer of this name fires (scheduled with
    /// [`Context::schedule`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ev_server::{Game, Missed, Setup, Spec, Timer};
    /// # struct G;
    /// # impl Game for G {
    /// fn setup(setup: &mut Setup<Self>) {
    ///     setup
    ///         .command(Spec::new("nap", "nap", "Sleep a minute."), |_, cx, _| {
    ///             let Some(me) = cx.character() else { return Ok(()) };
    ///             cx.schedule(Timer::after(Duration::from_secs(60), "wake").on(me))?;
    ///             cx.reply("You doze off.");
    ///             Ok(())
    ///         })
    ///         .timer("wake", |_, cx, fired| {
    ///             if let Some(me) = fired.object {
    ///                 cx.tell(me, "You wake up, refreshed.");
    ///             }
    ///             Ok(())
    ///         });
    /// }
    /// # }
    /// ```
    pub fn timer(&mut self, name: &str, run: TimerFn<G>) -> &mut Self {
        self.timers.insert(name.to_owned(), run);
        self
    }

    /// Work too slow for a handler, run on a thread of its own
    /// (`server.deferred_workers` at a time) when a handler asks for it
    /// with [`Context::defer`]; `then` gets its result in a transaction of
    /// its own. `run` sees nothing but its input: no game, no database.
    ///
    /// What `then` does happens exactly once. `run` may run again with the
    /// same input if the server stops before `then` committed (a reload
    /// while it runs, a crash): the next server runs it again. So `run`
    /// must only compute; a panic in it reaches `then` as an error.
    ///
    /// ```
    /// # use ev_server::{Game, Setup, Spec};
    /// # struct G;
    /// # impl Game for G {
    /// fn setup(setup: &mut Setup<Self>) {
    ///     setup
    ///         .command(Spec::new("divine", "divine N", "Ask the oracle."), |_, cx, n| {
    ///             let n: u64 = n.trim().parse().unwrap_or(30);
    ///             cx.defer("oracle", &n)?;
    ///             cx.reply("The oracle ponders...");
    ///             Ok(())
    ///         })
    ///         .work(
    ///             "oracle",
    ///             // Slow on purpose: Fibonacci the hard way.
    ///             |n: u64| {
    ///                 fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
    ///                 fib(n.min(40))
    ///             },
    ///             |_, cx, finished| {
    ///                 let answer: u64 = finished.output()?;
    ///                 if let Some(session) = finished.session {
    ///                     cx.send(session, &format!("The oracle says: {answer}."));
    ///                 }
    ///                 Ok(())
    ///             },
    ///         );
    /// }
    /// # }
    /// ```
    pub fn work<I, O>(&mut self, name: &str, run: fn(I) -> O, then: ThenFn<G>) -> &mut Self
    where
        I: serde::de::DeserializeOwned + 'static,
        O: serde::Serialize + 'static,
    {
        let erased = super::deferred::erase(name, run);
        self.work.insert(name.to_owned(), (erased, then));
        self
    }
}
