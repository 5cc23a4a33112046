//! Backups: a consistent copy of a live database, and putting one back.
//!
//! A backup is `VACUUM INTO` from a read-only connection of its own. In WAL
//! mode a reader never blocks the writer, so the game goes on while the copy
//! is made, and the copy is one transaction's view: whole batches, never half
//! of one. It is written beside its destination and renamed into place, so
//! a backup file that exists is complete.
//!
//! A restore is for a stopped game: the copy is checked (SQLite's integrity
//! check, and a schema version this binary knows), the database it replaces
//! is kept beside it, and its WAL and shared-memory files are removed with
//! it, so nothing of the old database is replayed into the restored one.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, SCHEMA_VERSION, StoreError};

/// Why a backup or restore could not be done.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path} exists; choose another file")]
    Exists { path: PathBuf },
    #[error("{path}: {why}")]
    Unusable { path: PathBuf, why: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError {
    let path = path.to_owned();
    move |e| BackupError::Unusable {
        path,
        why: e.to_string(),
    }
}

/// Copies the database at `db` to `dest`, while it may be in use.
pub fn backup(db: &Path, dest: &Path) -> Result<(), BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists {
            path: dest.to_owned(),
        });
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let partial = sibling(dest, "partial");
    let _ = std::fs::remove_file(&partial);
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite(db))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(db))?;
    let target = partial.to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", [&target])
        .map_err(sqlite(db))?;
    drop(conn);
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &partial))?;
    std::fs::rename(&partial, dest).map_err(io("renaming into", dest))
}

/// Checks a backup: SQLite finds it intact, and its schema is one this
/// binary can run (an older one is migrated at the next start). Returns
/// its schema version.
pub fn check(file: &Path) -> Result<u32, BackupError> {
    let unusable = |why: String| BackupError::Unusable {
        path: file.to_owned(),
        why,
    };
    if !file.is_file() {
        return Err(unusable("no such file".into()));
    }
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(file))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| unusable(format!("not an ev database ({e})")))?;
    if verdict != "ok" {
        return Err(unusable(format!("damaged: {verdict}")));
    }
    let version = super::schema::read_version(&conn)?;
    if version == 0 {
        return Err(unusable("not an ev database (no schema version)".into()));
    }
    if version > SCHEMA_VERSION {
        return Err(unusable(format!(
            "schema version {version} is newer than version {SCHEMA_VERSION} that this server knows; restore it with a newer build"
        )));
    }
    Ok(version)
}

/// Puts the backup `file` in place of the database at `db` (the game must
/// be stopped). Returns where the replaced database was kept, if any.
pub fn restore(file: &Path, db: &Path) -> Result<Option<PathBuf>, BackupError> {
    check(file)?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let incoming = sibling(db, "restoring");
    std::fs::copy(file, &incoming).map_err(io("copying into", &incoming))?;
    std::fs::File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &incoming))?;
    let kept = if db.exists() {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let kept = sibling(db, &format!("replaced-{stamp}"));
        std::fs::rename(db, &kept).map_err(io("keeping", &kept))?;
        Some(kept)
    } else {
        None
    };
    for suffix in ["wal", "shm"] {
        let side = PathBuf::from(format!("{}-{suffix}", db.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &side)(e)),
        }
    }
    std::fs::rename(&incoming, db).map_err(io("renaming into", db))?;
    Ok(kept)
}

/// `path` with `.what` added to its file name.
fn sibling(path: &Path, what: &str) -> PathBuf {
    PathBuf::from(format!("{}.{what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{open, put};

    #[test]
    fn a_backup_of_a_live_database_restores_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        tx.create_account("Alice", "h", 0, None).unwrap();
        put(&tx, 7, "hello");
        tx.commit().unwrap();
        let db = dir.path().join("data/game.db");
        let file = dir.path().join("backups/one.db");
        // The store stays open: the game runs while it is copied.
        backup(&db, &file).unwrap();
        assert!(matches!(
            backup(&db, &file),
            Err(BackupError::Exists { .. })
        ));
        assert_eq!(check(&file).unwrap(), SCHEMA_VERSION);

        let tx = store.begin().unwrap();
        tx.create_account("Later", "h", 0, None).unwrap();
        tx.commit().unwrap();
        drop(store);
        let kept = restore(&file, &db)
            .unwrap()
            .expect("the old database is kept");
        assert!(kept.exists());
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        assert!(tx.account_by_name("alice").unwrap().is_some());
        assert!(
            tx.account_by_name("later").unwrap().is_none(),
            "the backup predates it"
        );
        assert_eq!(
            tx.outbox_after(crate::event::SessionId(7), 0)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_damaged_foreign_or_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"this is no database at all, not even close").unwrap();
        let err = check(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.db"), "{err}");
        let empty = dir.path().join("empty.db");
        Connection::open(&empty)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(
            check(&empty)
                .unwrap_err()
                .to_string()
                .contains("no schema version")
        );
        let store = open(dir.path());
        store
            .conn
            .execute("UPDATE meta SET schema_version = 99", [])
            .unwrap();
        drop(store);
        let newer = dir.path().join("data/game.db");
        let err = check(&newer).unwrap_err().to_string();
        assert!(err.contains("schema version 99 is newer"), "{err}");
        assert!(check(&dir.path().join("missing.db")).is_err());
    }
}
