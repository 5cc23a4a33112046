//! Work a game runs off the engine's thread, whose result comes back as an
//! event: [`Setup::work`](super::api::Setup::work) registers it,
//! [`Context::defer`](super::context::Context::defer) asks for it.
//!
//! A game's handlers never block, so anything slow (a costly computation,
//! a pathfinding over a big map) is *deferred*: the handler stores what the
//! work needs, as JSON, in a row of the `deferred` table, in its own
//! transaction; the engine runs the work on a blocking thread once that
//! transaction commits; the work's result is handed to the game's `then`
//! handler in a later transaction, which deletes the row. So the effects of
//! a result are applied exactly once, while the work itself may run more
//! than once: a server that dies before that transaction leaves the row to
//! the next server, which runs the work again. Work must therefore be a
//! function of its input alone (no I/O a second run would repeat, no game
//! state: it has none).
//!
//! Between the handler that defers and the result, other inputs run: the
//! player is not made to wait (a game that wants them to can keep a
//! session value saying so).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::api::{Error, Result};
use crate::event::SessionId;

/// The work itself, type-erased: JSON in, JSON (or why not) out.
pub type WorkFn = Arc<dyn Fn(Value) -> std::result::Result<Value, String> + Send + Sync>;

/// Work to start once the transaction that deferred it commits (or, for
/// rows a previous server left, once this one starts serving).
#[derive(Debug, Clone)]
pub struct Deferred {
    pub id: i64,
    pub name: String,
    pub input: Value,
}

/// A deferred work's result, as its `then` handler gets it.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The name it was registered and deferred under.
    pub name: String,
    /// The session whose handler deferred it, if it is still connected
    /// (then it is also [`Context::session`](super::context::Context::session)).
    pub session: Option<SessionId>,
    pub(crate) output: std::result::Result<Value, String>,
}

impl Finished {
    /// What the work returned, as the type it returned. An error when the
    /// work panicked or its output is not that type.
    pub fn output<T: DeserializeOwned>(&self) -> Result<T> {
        match &self.output {
            Ok(value) => serde_json::from_value(value.clone()).map_err(|source| Error::Value {
                key: format!("output of work {}", self.name),
                source,
            }),
            Err(why) => Err(Error::Other(format!("work {} failed: {why}", self.name))),
        }
    }
}

/// The deferred work not yet finished, by id, and the names a game
/// registered.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    pub(crate) names: HashSet<String>,
    pub(crate) rows: HashMap<i64, (String, Option<SessionId>)>,
    /// The most rows there may be (`server.max_deferred`).
    pub(crate) max: usize,
}

/// `run` as a [`WorkFn`]: its input read from JSON, its output written.
pub(crate) fn erase<I, O>(name: &str, run: fn(I) -> O) -> WorkFn
where
    I: DeserializeOwned + 'static,
    O: serde::Serialize + 'static,
{
    let name = name.to_owned();
    Arc::new(move |input: Value| {
        let input: I = serde_json::from_value(input)
            .map_err(|e| format!("the input of work {name} is not what it takes: {e}"))?;
        serde_json::to_value(run(input))
            .map_err(|e| format!("the output of work {name} cannot be JSON: {e}"))
    })
}
