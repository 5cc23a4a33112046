//! Storage faults: which errors are the storage failing, how a transaction
//! outlives one, and how a standby learns it will not meet one.
//!
//! A disk that is full, read-only or failing makes a commit fail
//! ([`StoreError::is_outage`]); the engine keeps what the transaction did to
//! the game in memory and retries the commit ([`Store::retry`]) until
//! storage is back. So nothing may reach the disk before the commit (the
//! page cache never spills mid-transaction, temporary data stays in memory,
//! the file is never mapped: a mapped file that cannot be written is a
//! SIGBUS, not an error; see `configure`), and a [`Tx`] records every write
//! it makes so that [`Store::retry`] can make them again.
//!
//! Before a standby attaches, [`Store::preflight`] proves it will be able to
//! write, without writing. The test build makes writes fail on purpose
//! ([`Store::with_fault`]).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{Store, StoreError, Tx, accounts, delivery, objects};

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

impl Store {
    /// Test build only: while the file at `path` exists, writes fail with an
    /// I/O error (at the commit; at the start of the transaction if the file
    /// says `begin`) and [`Store::preflight`] fails, as on a disk that cannot
    /// be written.
    pub fn with_fault(mut self, path: Option<PathBuf>) -> Store {
        self.fault = path;
        self
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
        // The output counters the failed transaction set wait for this
        // commit, as its writes do.
        let tx = self.begin_keeping_counters()?;
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
    pub(super) fn fault_at(&self, at: &str) -> bool {
        fault_at(self.fault.as_deref(), at)
    }
}

/// One write of a transaction, as [`Store::retry`] makes it again: to the
/// delivery tables or to the game's.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Write {
    Delivery(delivery::Write),
    Accounts(accounts::Write),
    Objects(objects::Write),
}

impl Write {
    fn name(&self) -> &'static str {
        match self {
            Write::Delivery(write) => write.name(),
            Write::Accounts(write) => write.name(),
            Write::Objects(write) => write.name(),
        }
    }
}

impl From<delivery::Write> for Write {
    fn from(write: delivery::Write) -> Write {
        Write::Delivery(write)
    }
}

impl From<objects::Write> for Write {
    fn from(write: objects::Write) -> Write {
        Write::Objects(write)
    }
}

impl From<accounts::Write> for Write {
    fn from(write: accounts::Write) -> Write {
        Write::Accounts(write)
    }
}

/// Makes one write; gives what the caller goes on from (a seq, a row id) or
/// else the number of rows changed, which a retry must match.
fn execute(conn: &Connection, write: &Write) -> rusqlite::Result<i64> {
    match write {
        Write::Delivery(write) => write.execute(conn),
        Write::Accounts(write) => write.execute(conn),
        Write::Objects(write) => write.execute(conn),
    }
}

/// Whether the fault file exists and names `at` (empty means `commit`).
pub(super) fn fault_at(fault: Option<&Path>, at: &str) -> bool {
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
pub(super) fn injected_fault() -> StoreError {
    StoreError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
        Some("storage fault injected by the test build".into()),
    ))
}

impl Tx<'_> {
    /// Makes `write` and records it for a retry.
    pub(super) fn write(&self, write: impl Into<Write>) -> rusqlite::Result<i64> {
        let write = write.into();
        let got = execute(&self.tx, &write)?;
        self.redo.borrow_mut().push((write, got));
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SessionId;
    use crate::store::tests::{open, put, row};

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
        let ch = tx.create_account("Held", "h", 0, None).unwrap();
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
        tx.create_account("Mine", "h", 0, None).unwrap();
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
