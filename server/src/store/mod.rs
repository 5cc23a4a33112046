//! The game database: SQLite (bundled) in WAL mode.
//!
//! Every change goes through a [`Tx`]: the engine opens one per batch of
//! events, the game applies the whole batch in it (including each session's
//! last applied input seq), and only after the commit does anything leave the
//! server. So a crash loses either a whole batch (which the portal re-delivers)
//! or nothing.
//!
//! Here are the [`Store`] (its connection, opened and configured) and the
//! [`Tx`] (begun and committed). Each concept is a file of its own, with
//! its `impl Store` or `impl Tx`:
//! - [`schema`]: versions, forward-only migrations, auto-vacuum turned on;
//! - [`delivery`]: the runtime's tables, the exactly-once machinery
//!   (applied input seqs, output seqs, the outbox);
//! - [`accounts`]: accounts and characters (each character is an object);
//! - [`objects`]: the game's own data: objects, their attributes, timers,
//!   and which of the game's migrations ran;
//! - [`outage`]: storage faults: which errors are an outage, the writes a
//!   [`Tx`] records so that [`Store::retry`] can make them again,
//!   [`Store::preflight`], the test build's injected fault;
//! - [`checkpoint`]: the WAL checkpoint thread, which also gives free pages
//!   back;
//! - [`backup`]: a consistent copy of the live database, and restoring one.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ev::config::Synchronous;
use rusqlite::{Connection, TransactionBehavior};

mod accounts;
pub mod backup;
mod checkpoint;
mod delivery;
mod objects;
mod outage;
mod schema;

use checkpoint::{CHECKPOINT_EVERY, Checkpointer, WAL_RESTART_FRAMES, WAL_SIZE_LIMIT};
use outage::{Write, fault_at, injected_fault};
// The game's tables, the seam for the game-API issue (see `accounts`).
pub use accounts::{Account, Character, CreateError};
use delivery::OutputSeqs;
pub use delivery::SyncState;
pub use objects::{TimerRow, WorldChanges, WorldReader};
pub use schema::SCHEMA_VERSION;

/// How long a writer waits for another (e.g. `create-admin`) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {path} has schema version {found}, newer than version {known} that this ev-server knows; run a newer ev-server or restore a backup"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(
        "database {path} was changed by game migration {found}, which this build does not have (it knows up to {known}); a newer build of the game migrated it: run that build, or restore a backup"
    )]
    GameTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("opening database {path}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("creating directory {path}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path} cannot be written: {why}")]
    Unwritable { path: PathBuf, why: String },
    #[error(
        "retrying a failed commit gave other results than the first attempt ({0}); another process wrote to the database meanwhile, so the game in memory no longer matches it"
    )]
    Diverged(String),
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    _checkpoints: Checkpointer,
    /// The writes of the transaction in progress, or of the one whose commit
    /// failed, for [`Store::retry`].
    redo: RefCell<Vec<(Write, i64)>>,
    /// Each session's output counter (see `delivery`).
    seqs: RefCell<OutputSeqs>,
    /// Set once this server may change the database (it migrated): only then
    /// does the checkpoint thread give free pages back, which is a write.
    active: Arc<AtomicBool>,
    /// Test build only: while this file exists, writes fail (see
    /// [`Store::with_fault`]).
    fault: Option<PathBuf>,
}

/// What every connection to the database sets first: never map the file
/// (a mapped page that cannot be written faults the process), and keep
/// temporary data and a transaction's dirty pages in memory until the
/// commit, so a write transaction touches the disk only at its commit.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_spill", false)?;
    Ok(())
}

impl Store {
    /// Opens (creating if missing) the database at `path` and checks that its
    /// schema is not newer than this binary's. Changes nothing in the schema.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "database {} is not in WAL mode", path.display());
        }
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Checkpoints happen in the Checkpointer's thread instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(open_err)?;
        let active = Arc::new(AtomicBool::new(false));
        let store = Store {
            conn,
            path: path.to_owned(),
            _checkpoints: Checkpointer::start(
                path,
                CHECKPOINT_EVERY,
                WAL_RESTART_FRAMES,
                active.clone(),
            ),
            redo: RefCell::new(Vec::new()),
            seqs: RefCell::default(),
            active,
            fault: None,
        };
        store.check_version(store.schema_version()?)?;
        Ok(store)
    }

    /// Starts a write transaction. It takes the write lock at once, so it
    /// never fails half-way for want of it.
    pub fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        self.seqs.get_mut().begin();
        self.begin_keeping_counters()
    }

    /// [`Store::begin`] for the retry of a failed commit: the output
    /// counters that transaction set are this one's too.
    fn begin_keeping_counters(&mut self) -> Result<Tx<'_>, StoreError> {
        if self.fault_at("begin") {
            return Err(injected_fault());
        }
        let Store {
            conn,
            redo,
            seqs,
            fault,
            ..
        } = self;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        redo.get_mut().clear();
        Ok(Tx {
            tx,
            redo,
            seqs,
            fault: fault.as_deref(),
            world_rev: std::cell::Cell::new(None),
        })
    }
}

/// One write transaction; dropped without [`Tx::commit`] it rolls back.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    redo: &'a RefCell<Vec<(Write, i64)>>,
    seqs: &'a RefCell<OutputSeqs>,
    fault: Option<&'a Path>,
    /// The world revision this transaction's changes to the game's data
    /// carry, taken at its first such change (see `objects`).
    world_rev: std::cell::Cell<Option<i64>>,
}

impl Tx<'_> {
    /// Commits; on failure everything is rolled back and the writes are
    /// kept for [`Store::retry`].
    pub fn commit(self) -> Result<(), StoreError> {
        if fault_at(self.fault, "commit") {
            // Dropping the transaction rolls it back, as a failed commit does.
            return Err(injected_fault());
        }
        self.tx.commit()?;
        self.seqs.borrow_mut().committed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{OutboxRow, SessionId};

    // Fixtures the tests of every concept share.

    pub(super) fn open(dir: &Path) -> Store {
        let mut store = Store::open(&dir.join("data/game.db"), Synchronous::Normal).unwrap();
        store.migrate().unwrap();
        store
    }

    pub(super) fn row(session: u64, seq: u64, text: &str) -> OutboxRow {
        OutboxRow {
            session: SessionId(session),
            seq,
            kind: 1,
            payload: text.as_bytes().to_vec(),
        }
    }

    /// Gives `session` its next seq and writes a row for it.
    pub(super) fn put(tx: &Tx, session: u64, text: &str) -> u64 {
        let seq = tx.next_output_seq(SessionId(session)).unwrap();
        tx.put_outbox(&row(session, seq, text)).unwrap();
        seq
    }

    #[test]
    fn connections_never_map_the_file_nor_spill_before_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let get = |name: &str| -> i64 {
            store
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(get("mmap_size"), 0);
        assert_eq!(get("cache_spill"), 0);
        // 2: MEMORY.
        assert_eq!(get("temp_store"), 2);
    }
}
