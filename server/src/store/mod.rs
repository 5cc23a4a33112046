//! The game database: SQLite (bundled) in WAL mode.
//!
//! Every change goes through a [`Tx`]: the engine opens one per batch of
//! events, the game applies the whole batch in it (including each session's
//! last applied input seq), and only after the commit does anything leave the
//! server. So a crash loses either a whole batch (which the portal re-delivers)
//! or nothing.
//!
//! What a batch sends to players is part of it: every Output, SessionUpdate
//! and Disconnect is written to `outbox` under its session's next output seq
//! (`output_seq` holds the counter) in the same transaction. Rows go when the
//! portal reports them delivered, when the session closes or opens afresh, or
//! when a Sync says the portal already delivered them; a server that crashed
//! before sending re-sends the rest after the next Sync.
//!
//! The schema and its migrations are in [`schema`]. Before a standby
//! attaches, [`Store::preflight`] proves it will be able to write, without
//! writing.
//!
//! # Storage faults
//! A disk that is full, read-only or failing makes a commit fail; the engine
//! keeps what the transaction did to the game in memory and retries the
//! commit ([`Store::retry`]) until storage is back. So nothing may reach the
//! disk before the commit (the page cache never spills mid-transaction,
//! temporary data stays in memory, the file is never mapped: a mapped file
//! that cannot be written is a SIGBUS, not an error), and a [`Tx`] records
//! every write it makes so that [`Store::retry`] can make them again.
//!
//! # Space
//! The database uses incremental auto-vacuum: the checkpoint thread gives
//! free pages back to the filesystem once a burst of outbox rows is gone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ev::config::Synchronous;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::event::{OutboxRow, SessionId};

mod checkpoint;
mod schema;

use checkpoint::{CHECKPOINT_EVERY, Checkpointer, WAL_RESTART_FRAMES, WAL_SIZE_LIMIT};
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

impl StoreError {
    /// Whether this is the storage failing (full, read-only, I/O error,
    /// locked) rather than the data or the program: the same write may
    /// succeed once storage is back.
    pub fn is_outage(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(
                    C::SystemIoFailure
                        | C::DiskFull
                        | C::ReadOnly
                        | C::CannotOpen
                        | C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::PermissionDenied
                        | C::FileLockingProtocolFailed
                        | C::NoLargeFileSupport
                )
            ),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Character {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub room: i64,
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the name is taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CreateError {
    fn from(e: rusqlite::Error) -> CreateError {
        CreateError::Store(e.into())
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    _checkpoints: Checkpointer,
    /// The writes of the transaction in progress, or of the one whose commit
    /// failed, for [`Store::retry`].
    redo: RefCell<Vec<(Write, i64)>>,
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
            active,
            fault: None,
        };
        store.check_version(store.schema_version()?)?;
        Ok(store)
    }

    /// Test build only: while the file at `path` exists, writes fail with an
    /// I/O error (at the commit; at the start of the transaction if the file
    /// says `begin`) and [`Store::preflight`] fails, as on a disk that cannot
    /// be written.
    pub fn with_fault(mut self, path: Option<PathBuf>) -> Store {
        self.fault = path;
        self
    }

    /// Starts a write transaction. It takes the write lock at once, so it
    /// never fails half-way for want of it.
    pub fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        if self.fault_at("begin") {
            return Err(injected_fault());
        }
        let Store {
            conn, redo, fault, ..
        } = self;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        redo.get_mut().clear();
        Ok(Tx {
            tx,
            redo,
            fault: fault.as_deref(),
        })
    }

    /// Makes again, in a new transaction, every write of the transaction
    /// whose commit failed, and commits. Each write must give what it gave
    /// the first time (the same seq, row id or count of rows), or the game
    /// in memory, which went on from those, would not match the database:
    /// that is [`StoreError::Diverged`], never an outage. Only another
    /// process writing meanwhile (`ev-server create-admin`) can cause it.
    pub fn retry(&mut self) -> Result<(), StoreError> {
        let writes = self.redo.take();
        let result = self.redo_writes(&writes);
        // Kept for the next attempt until one commits.
        *self.redo.get_mut() = writes;
        result
    }

    fn redo_writes(&mut self, writes: &[(Write, i64)]) -> Result<(), StoreError> {
        let tx = self.begin()?;
        for (write, first) in writes {
            let again = execute(&tx.tx, write)?;
            if again != *first {
                return Err(StoreError::Diverged(format!(
                    "{} gave {again}, not {first}",
                    write.name()
                )));
            }
        }
        tx.commit()
    }

    /// Proves, without writing to the database or locking it, that this
    /// server will be able to write: SQLite opened the file for writing, the
    /// file, its `-wal` and `-shm` and their directory are writable, the
    /// filesystem is not read-only and has `min_free` bytes free. A standby
    /// changes nothing, so this is all it can know before it is promoted.
    pub fn preflight(&self, min_free: u64) -> Result<(), StoreError> {
        use nix::sys::statvfs::{FsFlags, statvfs};
        use nix::unistd::{AccessFlags, access};
        let unwritable = |why: String| StoreError::Unwritable {
            path: self.path.clone(),
            why,
        };
        if let Some(fault) = self.fault.as_deref().filter(|f| f.exists()) {
            return Err(unwritable(format!(
                "storage fault injected ({} exists)",
                fault.display()
            )));
        }
        if self.conn.is_readonly("main")? {
            return Err(unwritable(
                "SQLite could open it only for reading (check its owner and mode)".into(),
            ));
        }
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut files = vec![self.path.clone()];
        for suffix in ["-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let file = PathBuf::from(name);
            if file.exists() {
                files.push(file);
            }
        }
        for file in &files {
            access(file, AccessFlags::W_OK).map_err(|e| {
                unwritable(format!("{} is not writable: {}", file.display(), e.desc()))
            })?;
        }
        // SQLite creates and deletes the -wal and -shm files beside it.
        access(&dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            unwritable(format!(
                "its directory {} is not writable: {}",
                dir.display(),
                e.desc()
            ))
        })?;
        let fs = statvfs(&dir).map_err(|e| {
            unwritable(format!(
                "cannot check the filesystem of {}: {}",
                dir.display(),
                e.desc()
            ))
        })?;
        if fs.flags().contains(FsFlags::ST_RDONLY) {
            return Err(unwritable(format!(
                "the filesystem of {} is mounted read-only",
                dir.display()
            )));
        }
        let free = fs.blocks_available().saturating_mul(fs.fragment_size());
        if free < min_free {
            return Err(unwritable(format!(
                "only {} MiB free on the filesystem of {}, less than database.min_free_mb = {}",
                free >> 20,
                dir.display(),
                min_free >> 20
            )));
        }
        Ok(())
    }

    /// Whether the test build's fault file exists and asks to fail at `at`.
    fn fault_at(&self, at: &str) -> bool {
        fault_at(self.fault.as_deref(), at)
    }
}

/// SQLite integers are signed; ids and seqs are stored bit for bit.
/// One session's rows as a Sync finds them (see [`Tx::sync_state`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncState {
    pub last_seq: u64,
    /// The output counter; 0 when there is none.
    pub output_seq: u64,
    /// Its outbox rows, in seq order.
    pub outbox: Vec<OutboxRow>,
}

fn sql_u64(value: u64) -> i64 {
    value as i64
}

/// One write transaction; dropped without [`Tx::commit`] it rolls back.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    redo: &'a RefCell<Vec<(Write, i64)>>,
    fault: Option<&'a Path>,
}

/// One write of a transaction, as [`Store::retry`] makes it again.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    LastSeq {
        session: i64,
        seq: i64,
    },
    Forget {
        session: i64,
    },
    NextOutputSeq {
        session: i64,
    },
    RaiseOutputSeq {
        session: i64,
        to: i64,
    },
    Outbox(OutboxRow),
    Prune {
        session: i64,
        upto: i64,
    },
    Account {
        name: String,
        hash: String,
        is_admin: bool,
        created_at: i64,
    },
    Character {
        account_id: i64,
        name: String,
        room: i64,
    },
}

impl Write {
    fn name(&self) -> &'static str {
        match self {
            Write::LastSeq { .. } => "recording an applied input",
            Write::Forget { .. } => "forgetting a session",
            Write::NextOutputSeq { .. } => "taking an output seq",
            Write::RaiseOutputSeq { .. } => "raising an output seq",
            Write::Outbox(_) => "writing an outbox row",
            Write::Prune { .. } => "pruning the outbox",
            Write::Account { .. } => "creating an account",
            Write::Character { .. } => "creating a character",
        }
    }
}

/// Makes one write; gives what the caller goes on from (a seq, a row id) or
/// else the number of rows changed, which a retry must match.
fn execute(conn: &Connection, write: &Write) -> rusqlite::Result<i64> {
    let changed = |n: usize| n as i64;
    Ok(match write {
        Write::LastSeq { session, seq } => changed(
            conn.prepare_cached(
                "INSERT INTO session_seq (session_id, last_seq) VALUES (?1, ?2)
                 ON CONFLICT (session_id) DO UPDATE SET last_seq = excluded.last_seq",
            )?
            .execute([session, seq])?,
        ),
        Write::Forget { session } => {
            let mut n = 0;
            for sql in [
                "DELETE FROM session_seq WHERE session_id = ?1",
                "DELETE FROM output_seq WHERE session_id = ?1",
                "DELETE FROM outbox WHERE session_id = ?1",
            ] {
                n += conn.prepare_cached(sql)?.execute([session])?;
            }
            changed(n)
        }
        Write::NextOutputSeq { session } => conn
            .prepare_cached(
                "INSERT INTO output_seq (session_id, last_seq) VALUES (?1, 1)
                 ON CONFLICT (session_id) DO UPDATE SET last_seq = last_seq + 1
                 RETURNING last_seq",
            )?
            .query_row([session], |row| row.get(0))?,
        Write::RaiseOutputSeq { session, to } => changed(
            conn.prepare_cached(
                "INSERT INTO output_seq (session_id, last_seq) VALUES (?1, ?2)
                 ON CONFLICT (session_id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
            )?
            .execute([session, to])?,
        ),
        Write::Outbox(row) => changed(
            conn.prepare_cached(
                "INSERT INTO outbox (session_id, seq, kind, payload) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                sql_u64(row.session.0),
                sql_u64(row.seq),
                row.kind,
                row.payload
            ])?,
        ),
        Write::Prune { session, upto } => changed(
            conn.prepare_cached("DELETE FROM outbox WHERE session_id = ?1 AND seq <= ?2")?
                .execute([session, upto])?,
        ),
        Write::Account {
            name,
            hash,
            is_admin,
            created_at,
        } => {
            conn.prepare_cached(
                "INSERT INTO accounts (name, password_hash, is_admin, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![name, hash, is_admin, created_at])?;
            conn.last_insert_rowid()
        }
        Write::Character {
            account_id,
            name,
            room,
        } => {
            conn.prepare_cached(
                "INSERT INTO characters (account_id, name, room) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![account_id, name, room])?;
            conn.last_insert_rowid()
        }
    })
}

/// Whether the fault file exists and names `at` (empty means `commit`).
fn fault_at(fault: Option<&Path>, at: &str) -> bool {
    let Some(path) = fault else {
        return false;
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim();
            text == at || (text.is_empty() && at == "commit")
        }
        Err(_) => false,
    }
}

/// What the test build's fault file makes a write return: what SQLite
/// returns when the disk refuses a write.
fn injected_fault() -> StoreError {
    StoreError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
        Some("storage fault injected by the test build".into()),
    ))
}

impl Tx<'_> {
    /// Commits; on failure everything is rolled back and the writes are
    /// kept for [`Store::retry`].
    pub fn commit(self) -> Result<(), StoreError> {
        if fault_at(self.fault, "commit") {
            // Dropping the transaction rolls it back, as a failed commit does.
            return Err(injected_fault());
        }
        Ok(self.tx.commit()?)
    }

    /// Makes `write` and records it for a retry.
    fn write(&self, write: Write) -> rusqlite::Result<i64> {
        let got = execute(&self.tx, &write)?;
        self.redo.borrow_mut().push((write, got));
        Ok(got)
    }

    /// The last input seq of `session` applied and committed; 0 if none.
    #[cfg(test)]
    pub fn last_seq(&self, session: SessionId) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .tx
            .prepare_cached("SELECT last_seq FROM session_seq WHERE session_id = ?1")?
            .query_row([sql_u64(session.0)], |row| row.get(0))
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    pub fn set_last_seq(&self, session: SessionId, seq: u64) -> Result<(), StoreError> {
        self.write(Write::LastSeq {
            session: sql_u64(session.0),
            seq: sql_u64(seq),
        })?;
        Ok(())
    }

    /// Forgets a session: its applied input seq, its output counter and
    /// its outbox rows.
    pub fn forget_session(&self, session: SessionId) -> Result<(), StoreError> {
        self.write(Write::Forget {
            session: sql_u64(session.0),
        })?;
        Ok(())
    }

    /// The last output seq given to `session`; 0 if none.
    #[cfg(test)]
    pub fn output_seq(&self, session: SessionId) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .tx
            .prepare_cached("SELECT last_seq FROM output_seq WHERE session_id = ?1")?
            .query_row([sql_u64(session.0)], |row| row.get(0))
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// Gives `session` its next output seq and records it.
    pub fn next_output_seq(&self, session: SessionId) -> Result<u64, StoreError> {
        let seq = self.write(Write::NextOutputSeq {
            session: sql_u64(session.0),
        })?;
        Ok(seq as u64)
    }

    pub fn put_outbox(&self, row: &OutboxRow) -> Result<(), StoreError> {
        self.write(Write::Outbox(row.clone()))?;
        Ok(())
    }

    /// Drops the outbox rows of `session` up to `seq`: the portal delivered them.
    pub fn prune_outbox(&self, session: SessionId, seq: u64) -> Result<(), StoreError> {
        self.write(Write::Prune {
            session: sql_u64(session.0),
            upto: sql_u64(seq),
        })?;
        Ok(())
    }

    /// The outbox rows of `session` above `seq`, in order.
    #[cfg(test)]
    pub fn outbox_after(&self, session: SessionId, seq: u64) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT seq, kind, payload FROM outbox
                 WHERE session_id = ?1 AND seq > ?2 ORDER BY seq",
            )?
            .query_map([sql_u64(session.0), sql_u64(seq)], |row| {
                Ok(OutboxRow {
                    session,
                    seq: row.get::<_, i64>(0)? as u64,
                    kind: row.get(1)?,
                    payload: row.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// What a Sync needs of every session the database knows: three scans
    /// with cached statements, once per Sync. (These tables hold only the
    /// sessions of the last Sync and those opened since.) Statements listing
    /// a chunk's ids cost a new server a third of its restore, the dark time
    /// of a reload, in parsing the list.
    pub fn sync_state(&self) -> Result<HashMap<SessionId, SyncState>, StoreError> {
        let mut state: HashMap<SessionId, SyncState> = HashMap::new();
        let pairs = |sql: &str| -> Result<Vec<(u64, u64)>, StoreError> {
            Ok(self
                .tx
                .prepare_cached(sql)?
                .query_map([], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<_, _>>()?)
        };
        for (id, seq) in pairs("SELECT session_id, last_seq FROM session_seq")? {
            state.entry(SessionId(id)).or_default().last_seq = seq;
        }
        for (id, seq) in pairs("SELECT session_id, last_seq FROM output_seq")? {
            state.entry(SessionId(id)).or_default().output_seq = seq;
        }
        let mut stmt = self.tx.prepare_cached(
            "SELECT session_id, seq, kind, payload FROM outbox ORDER BY session_id, seq",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(OutboxRow {
                session: SessionId(row.get::<_, i64>(0)? as u64),
                seq: row.get::<_, i64>(1)? as u64,
                kind: row.get(2)?,
                payload: row.get(3)?,
            })
        })?;
        for row in rows {
            let row = row?;
            state.entry(row.session).or_default().outbox.push(row);
        }
        Ok(state)
    }

    /// [`Tx::resync_output`] for a session whose [`SyncState`] was read
    /// already: writes only what changes.
    pub fn resync_output_from(
        &self,
        session: SessionId,
        delivered: u64,
        state: SyncState,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        if state.output_seq < delivered {
            self.write(Write::RaiseOutputSeq {
                session: sql_u64(session.0),
                to: sql_u64(delivered),
            })?;
        }
        if state.outbox.iter().any(|row| row.seq <= delivered) {
            self.prune_outbox(session, delivered)?;
        }
        Ok(state
            .outbox
            .into_iter()
            .filter(|row| row.seq > delivered)
            .collect())
    }

    /// A Sync says the portal delivered `session`'s output up to
    /// `delivered`: its counter goes on from at least there, the rows up to
    /// it go, and the rows above it are returned, in order, to send again.
    /// (The game reads every session's rows at once with [`Tx::sync_state`].)
    #[cfg(test)]
    pub fn resync_output(
        &self,
        session: SessionId,
        delivered: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let state = self.sync_state()?.remove(&session).unwrap_or_default();
        self.resync_output_from(session, delivered, state)
    }

    /// The account of this name, compared case-insensitively.
    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id, name, password_hash, is_admin FROM accounts WHERE name = ?1",
            )?
            .query_row([name], |row| {
                Ok(Account {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    password_hash: row.get(2)?,
                    is_admin: row.get(3)?,
                })
            })
            .optional()?)
    }

    /// Whether an account or a character already has this name (any case).
    pub fn name_taken(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE name = ?1)
                     OR EXISTS (SELECT 1 FROM characters WHERE name = ?1)",
            )?
            .query_row([name], |row| row.get(0))?)
    }

    /// Creates an account and its character of the same name in `room`.
    pub fn create_account(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
        room: i64,
    ) -> Result<Character, CreateError> {
        if self.name_taken(name)? {
            return Err(CreateError::Taken);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let account_id = self
            .write(Write::Account {
                name: name.to_owned(),
                hash: password_hash.to_owned(),
                is_admin,
                created_at: now,
            })
            .map_err(taken_or)?;
        let id = self
            .write(Write::Character {
                account_id,
                name: name.to_owned(),
                room,
            })
            .map_err(taken_or)?;
        Ok(Character {
            id,
            account_id,
            name: name.to_owned(),
            room,
        })
    }

    pub fn character(&self, id: i64) -> Result<Option<Character>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT id, account_id, name, room FROM characters WHERE id = ?1")?
            .query_row([id], character_row)
            .optional()?)
    }

    /// The account's first character.
    pub fn character_of(&self, account_id: i64) -> Result<Option<Character>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id, account_id, name, room FROM characters
                 WHERE account_id = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([account_id], character_row)
            .optional()?)
    }
}

fn character_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Character> {
    Ok(Character {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        room: row.get(3)?,
    })
}

/// A UNIQUE violation means another writer took the name first.
fn taken_or(e: rusqlite::Error) -> CreateError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => CreateError::Taken,
        _ => CreateError::Store(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn open(dir: &Path) -> Store {
        let mut store = Store::open(&dir.join("data/game.db"), Synchronous::Normal).unwrap();
        store.migrate().unwrap();
        store
    }

    #[test]
    fn names_are_unique_in_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        let c = tx.create_account("Alice", "h", false, 1).unwrap();
        assert!(matches!(
            tx.create_account("aLICE", "h", false, 1),
            Err(CreateError::Taken)
        ));
        let a = tx.account_by_name("ALICE").unwrap().unwrap();
        assert_eq!(a.name, "Alice");
        assert_eq!(tx.character_of(a.id).unwrap().unwrap(), c);
        tx.commit().unwrap();
    }

    #[test]
    fn session_seq_survives_a_reopen_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        tx.set_last_seq(SessionId(7), 3).unwrap();
        tx.set_last_seq(SessionId(u64::MAX), u64::MAX).unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        tx.set_last_seq(SessionId(7), 4).unwrap();
        drop(tx); // rolled back
        drop(store);
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        assert_eq!(tx.last_seq(SessionId(7)).unwrap(), 3);
        assert_eq!(tx.last_seq(SessionId(u64::MAX)).unwrap(), u64::MAX);
        assert_eq!(tx.last_seq(SessionId(8)).unwrap(), 0);
        let known = tx.sync_state().unwrap();
        assert_eq!(known.len(), 2);
        assert_eq!(known[&SessionId(u64::MAX)].last_seq, u64::MAX);
        assert_eq!(known[&SessionId(7)].last_seq, 3);
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
    fn outbox_rows_and_counters_are_kept_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "a"), 1);
        assert_eq!(put(&tx, 1, "b"), 2);
        assert_eq!(put(&tx, 2, "c"), 1);
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "lost"), 3);
        drop(tx);
        drop(store);
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        assert_eq!(tx.output_seq(SessionId(1)).unwrap(), 2);
        assert_eq!(
            tx.outbox_after(SessionId(1), 0).unwrap(),
            [row(1, 1, "a"), row(1, 2, "b")]
        );
        assert_eq!(put(&tx, 1, "d"), 3, "no seq is skipped or reused");
    }

    #[test]
    fn resync_prunes_up_to_the_mark_and_returns_the_rest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        for text in ["1", "2", "3", "4", "5"] {
            put(&tx, 9, text);
        }
        put(&tx, 8, "other");
        assert_eq!(
            tx.resync_output(SessionId(9), 3).unwrap(),
            [row(9, 4, "4"), row(9, 5, "5")]
        );
        assert_eq!(tx.outbox_after(SessionId(9), 0).unwrap().len(), 2);
        assert_eq!(tx.output_seq(SessionId(9)).unwrap(), 5);
        tx.prune_outbox(SessionId(9), 4).unwrap();
        assert_eq!(tx.outbox_after(SessionId(9), 0).unwrap(), [row(9, 5, "5")]);
        // A mark above the counter moves the counter.
        assert!(tx.resync_output(SessionId(9), 7).unwrap().is_empty());
        assert_eq!(put(&tx, 9, "8"), 8);
        assert!(tx.resync_output(SessionId(3), 0).unwrap().is_empty());
        // Forgetting: everything of a session.
        tx.forget_session(SessionId(9)).unwrap();
        assert_eq!(tx.output_seq(SessionId(9)).unwrap(), 0);
        assert!(tx.outbox_after(SessionId(9), 0).unwrap().is_empty());
        assert_eq!(tx.outbox_after(SessionId(8), 0).unwrap().len(), 1);
    }

    fn sqlite_error(code: std::ffi::c_int) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn storage_failures_are_told_from_other_errors() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_BUSY,
        ] {
            assert!(sqlite_error(code).is_outage(), "{code}");
        }
        for code in [
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_MISUSE,
        ] {
            assert!(!sqlite_error(code).is_outage(), "{code}");
        }
        assert!(!StoreError::Diverged("x".into()).is_outage());
        assert!(injected_fault().is_outage());
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

    /// The writes of a transaction whose commit failed, made again.
    #[test]
    fn a_failed_commit_is_made_again_by_retry_with_the_same_results() {
        let dir = tempfile::tempdir().unwrap();
        let fault = dir.path().join("fault");
        let mut store = open(dir.path()).with_fault(Some(fault.clone()));
        let tx = store.begin().unwrap();
        put(&tx, 1, "before");
        tx.commit().unwrap();

        std::fs::write(&fault, "").unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "held"), 2);
        tx.set_last_seq(SessionId(1), 9).unwrap();
        let ch = tx.create_account("Held", "h", false, 1).unwrap();
        tx.prune_outbox(SessionId(1), 1).unwrap();
        let err = tx.commit().unwrap_err();
        assert!(err.is_outage(), "{err}");
        // Still failing: retried, kept.
        assert!(store.retry().unwrap_err().is_outage());

        std::fs::remove_file(&fault).unwrap();
        store.retry().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(
            tx.outbox_after(SessionId(1), 0).unwrap(),
            [row(1, 2, "held")]
        );
        assert_eq!(tx.last_seq(SessionId(1)).unwrap(), 9);
        let account = tx.account_by_name("Held").unwrap().unwrap();
        assert_eq!(tx.character_of(account.id).unwrap(), Some(ch));
        assert_eq!(put(&tx, 1, "next"), 3, "no seq is skipped or reused");
    }

    #[test]
    fn a_retry_after_another_writer_is_refused_as_diverged() {
        let dir = tempfile::tempdir().unwrap();
        let fault = dir.path().join("fault");
        let mut store = open(dir.path()).with_fault(Some(fault.clone()));
        std::fs::write(&fault, "").unwrap();
        let tx = store.begin().unwrap();
        tx.create_account("Mine", "h", false, 1).unwrap();
        assert!(tx.commit().is_err());
        std::fs::remove_file(&fault).unwrap();
        // `create-admin` meanwhile: the next row id is taken.
        let other = Connection::open(dir.path().join("data/game.db")).unwrap();
        other
            .execute(
                "INSERT INTO accounts (name, password_hash, created_at) VALUES ('Admin', 'h', 0)",
                [],
            )
            .unwrap();
        let err = store.retry().unwrap_err();
        assert!(matches!(err, StoreError::Diverged(_)), "{err}");
        assert!(!err.is_outage());
    }

    #[test]
    fn a_fault_at_begin_fails_the_transaction_before_anything() {
        let dir = tempfile::tempdir().unwrap();
        let fault = dir.path().join("fault");
        let mut store = open(dir.path()).with_fault(Some(fault.clone()));
        std::fs::write(&fault, "begin\n").unwrap();
        assert!(store.begin().err().unwrap().is_outage());
        std::fs::remove_file(&fault).unwrap();
        store.begin().unwrap().commit().unwrap();
    }

    #[test]
    fn preflight_passes_on_a_writable_database_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let fault = dir.path().join("fault");
        let store = open(dir.path()).with_fault(Some(fault.clone()));
        store.preflight(1 << 20).unwrap();

        let err = store.preflight(u64::MAX).unwrap_err().to_string();
        assert!(
            err.contains("MiB free") && err.contains("database.min_free_mb"),
            "{err}"
        );
        assert!(err.contains("game.db"), "{err}");

        std::fs::write(&fault, "").unwrap();
        let err = store.preflight(0).unwrap_err().to_string();
        assert!(err.contains("storage fault injected"), "{err}");
    }

    /// Permissions only bind a process that is not root.
    #[test]
    fn preflight_fails_on_a_read_only_directory() {
        use std::os::unix::fs::PermissionsExt;
        if nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let data = dir.path().join("data");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
        let result = store.preflight(0);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = result.unwrap_err().to_string();
        assert!(err.contains("is not writable"), "{err}");
    }
}
