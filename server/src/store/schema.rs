//! The schema: its versions and the migrations between them, and turning
//! incremental auto-vacuum on.
//!
//! Schema changes are forward-only migrations recorded in `meta`; a database
//! written by a newer ev-server is refused, never downgraded. [`Store::open`]
//! only checks the version: a standby server opens the database while the
//! active one still serves, and migrates ([`Store::migrate`]) only once that
//! one has drained. The migrations hold the tables of every concept (the
//! runtime's delivery tables and the game's accounts and characters) in one
//! sequence, since the first migration made both.

use std::sync::atomic::Ordering;

use rusqlite::{Connection, TransactionBehavior};

use super::{Store, StoreError};

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// `MIGRATIONS[n]` takes a database from version n to n + 1.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE characters (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        room INTEGER NOT NULL
    );
    CREATE INDEX characters_account ON characters(account_id);
    CREATE TABLE session_seq (
        session_id INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );
",
    "
    -- The last output seq given to each session's Output/Update/Disconnect.
    CREATE TABLE output_seq (
        session_id INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );
    -- Sequenced events committed with the command that produced them and
    -- kept until the portal says it delivered them.
    CREATE TABLE outbox (
        session_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
",
    "
    -- Permission levels (0 player, 1 builder, 2 admin) replace the admin flag.
    ALTER TABLE accounts ADD COLUMN level INTEGER NOT NULL DEFAULT 0;
    UPDATE accounts SET level = 2 WHERE is_admin = 1;
    ALTER TABLE accounts DROP COLUMN is_admin;
",
    "
    -- When the account last logged in (Unix seconds); NULL: never, so its
    -- first login is greeted as one. Accounts from before are taken to have
    -- logged in (most were made by `create`, which logs in): a returning
    -- player is not welcomed as a new one.
    ALTER TABLE accounts ADD COLUMN last_login INTEGER;
    UPDATE accounts SET last_login = created_at;
",
    "
    -- The game's own data. Objects are whatever a game makes (rooms,
    -- things); a character is an object too, of the same id. Where each
    -- character was is left to the game's start location: the demo's one
    -- room was not an object.
    CREATE TABLE objects (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        location INTEGER,
        -- The world revision of its last change (see `world`).
        rev INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX objects_location ON objects(location);
    CREATE INDEX objects_rev ON objects(rev);
    INSERT INTO objects (id, kind, name, location)
        SELECT id, 'character', name, NULL FROM characters;
    ALTER TABLE characters DROP COLUMN room;
    -- Typed values, as JSON text.
    CREATE TABLE attributes (
        object INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        rev INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (object, key)
    ) WITHOUT ROWID;
    CREATE INDEX attributes_rev ON attributes(rev);
    -- The world revision: one more for each transaction that changes the
    -- game's data. A standby loads the world ahead of its promotion, then
    -- catches up on what carries a later revision, and on what was deleted
    -- since (tombstones: an object, or one attribute of it). `pruned`:
    -- tombstones up to it are gone, so a load older than it starts over.
    CREATE TABLE world (rev INTEGER NOT NULL, pruned INTEGER NOT NULL);
    INSERT INTO world VALUES (0, 0);
    CREATE TABLE tombstones (
        rev INTEGER NOT NULL,
        object INTEGER NOT NULL,
        key TEXT
    );
    CREATE INDEX tombstones_rev ON tombstones(rev);
    -- Due at due_ms (Unix milliseconds); again every every_ms if set.
    CREATE TABLE timers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        every_ms INTEGER,
        catch_up INTEGER NOT NULL DEFAULT 0,
        object INTEGER,
        data TEXT NOT NULL
    );
    -- The game's own migrations that ran.
    CREATE TABLE game_migrations (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at INTEGER NOT NULL
    );
",
    "
    -- Work a game deferred off the engine's thread (Context::defer), until
    -- the transaction that applies its result deletes the row: a server
    -- that dies first leaves it to the next one to run again.
    CREATE TABLE deferred (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        session INTEGER,
        input TEXT NOT NULL
    );
",
    "
    -- The player's colour setting (`colour` in game), by name: auto, plain,
    -- ansi16, xterm256, truecolour. auto: what the client says.
    ALTER TABLE accounts ADD COLUMN colours TEXT NOT NULL DEFAULT 'auto';
",
];

impl Store {
    /// The version recorded in the database; 0 for a new, empty one.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_version(&self.conn)
    }

    /// Brings the schema up to [`SCHEMA_VERSION`], forward only, in one
    /// transaction, and turns incremental auto-vacuum on. Does nothing when
    /// both are done. From here on this server may change the database.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        self.migrate_schema()?;
        self.enable_reclaim()?;
        self.active.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// A database made before auto-vacuum was on is rebuilt once (VACUUM),
    /// the only way to switch it; a new one has it from its first table.
    fn enable_reclaim(&mut self) -> Result<(), StoreError> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
        // 2: INCREMENTAL.
        if mode == 2 {
            return Ok(());
        }
        let began = std::time::Instant::now();
        self.conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
        tracing::info!(
            ms = began.elapsed().as_millis() as u64,
            "database {} rebuilt with incremental auto-vacuum, so its free space can be given back",
            self.path.display()
        );
        Ok(())
    }

    fn migrate_schema(&mut self) -> Result<(), StoreError> {
        if read_version(&self.conn)? == 0 {
            // Takes effect with the first table; too late after it.
            self.conn
                .pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = read_version(&tx)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path,
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        for sql in &MIGRATIONS[found as usize..] {
            tx.execute_batch(sql)?;
        }
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (schema_version INTEGER NOT NULL); DELETE FROM meta;",
        )?;
        tx.execute(
            "INSERT INTO meta (schema_version) VALUES (?1)",
            [SCHEMA_VERSION],
        )?;
        tx.commit()?;
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "migrated database {}",
            self.path.display()
        );
        Ok(())
    }

    pub(super) fn check_version(&self, found: u32) -> Result<(), StoreError> {
        if found > SCHEMA_VERSION {
            Err(StoreError::SchemaTooNew {
                path: self.path.clone(),
                found,
                known: SCHEMA_VERSION,
            })
        } else {
            Ok(())
        }
    }
}

pub(super) fn read_version(conn: &Connection) -> Result<u32, StoreError> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(0);
    }
    let version: Option<i64> =
        conn.query_row("SELECT MAX(schema_version) FROM meta", [], |row| row.get(0))?;
    Ok(version.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ev::config::Synchronous;

    use super::*;
    use crate::event::SessionId;
    use crate::store::tests::{open, put};

    #[test]
    fn new_database_is_migrated_to_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data/game.db"), Synchronous::Full).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            0,
            "open alone changes nothing"
        );
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        // Migrating again is a no-op.
        let store = open(dir.path());
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .conn
            .execute("UPDATE meta SET schema_version = 99", [])
            .unwrap();
        drop(store);
        let path = dir.path().join("data/game.db");
        let err = Store::open(&path, Synchronous::Normal)
            .err()
            .expect("a newer schema must be refused");
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{msg}"
        );
        assert!(msg.contains("schema version 99"), "{msg}");
        assert!(msg.contains(&format!("version {SCHEMA_VERSION}")), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    /// A database as schema version 1 left it, session 4 at seq 12.
    fn version_1_database(path: &Path) -> Connection {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (schema_version INTEGER NOT NULL);
             INSERT INTO meta VALUES (1);
             INSERT INTO session_seq VALUES (4, 12);",
        )
        .unwrap();
        conn
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/game.db");
        {
            let conn = version_1_database(&path);
            conn.execute_batch(
                "INSERT INTO accounts (name, password_hash, is_admin, created_at)
                     VALUES ('Root', 'h', 1, 0), ('Pat', 'h', 0, 0);
                 INSERT INTO characters (id, account_id, name, room) VALUES (7, 2, 'Pat', 1);",
            )
            .unwrap();
        }
        let mut store = open(dir.path());
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let tx = store.begin().unwrap();
        assert_eq!(tx.last_seq(SessionId(4)).unwrap(), 12);
        assert_eq!(put(&tx, 4, "x"), 1);
        // The admin flag became a level.
        assert_eq!(tx.account_by_name("root").unwrap().unwrap().level, 2);
        assert_eq!(tx.account_by_name("pat").unwrap().unwrap().level, 0);
        // Accounts from before last_login count as having logged in.
        let pat = tx.account_by_name("pat").unwrap().unwrap();
        assert!(tx.record_login(pat.id).unwrap());
        // A character became an object of its id, nowhere until it logs in
        // (the game then puts it at its start).
        assert_eq!(tx.character_of(pat.id).unwrap().unwrap().id, 7);
        let objects = tx.load_objects().unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!((objects[0].id, objects[0].kind.as_str()), (7, "character"));
        assert_eq!(objects[0].location, None);
        // New objects take ids after it.
        assert_eq!(tx.create_object("room", "Hall", None).unwrap(), 8);
    }

    #[test]
    fn new_and_old_databases_get_incremental_auto_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mode = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(mode(&store.conn), 2);
        drop(store);

        let path = dir.path().join("old/game.db");
        assert_eq!(mode(&version_1_database(&path)), 0);
        let mut store = Store::open(&path, Synchronous::Normal).unwrap();
        assert_eq!(mode(&store.conn), 0, "open alone changes nothing");
        store.migrate().unwrap();
        assert_eq!(mode(&store.conn), 2);
        let tx = store.begin().unwrap();
        assert_eq!(tx.last_seq(SessionId(4)).unwrap(), 12);
    }
}
