//! The game's own data: objects (rooms, things, characters: whatever the
//! game makes), their attributes (typed values kept as JSON), its timers
//! and which of its migrations ran.
//!
//! Only the runtime's object cache and timer queue (`game::objects`,
//! `game::timers`) call these: a game reads and writes through its command's
//! [`Context`](crate::Context), which keeps the cache and these tables in
//! step inside the command's transaction. Every write is recorded for
//! [`Store::retry`](super::Store::retry) like the runtime's own.

use rusqlite::{Connection, params};

use super::{Store, StoreError, Tx};

/// An object as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub location: Option<i64>,
}

/// A timer as stored: due at `due_ms` (Unix milliseconds), again every
/// `every_ms` if set.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerRow {
    pub id: i64,
    pub name: String,
    pub due_ms: i64,
    pub every_ms: Option<i64>,
    pub catch_up: bool,
    pub object: Option<i64>,
    pub data: String,
}

/// Work a game deferred, as stored: `input` is JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct DeferredRow {
    pub id: i64,
    pub name: String,
    pub session: Option<i64>,
    pub input: String,
}

/// What changed after a snapshot's revision (see [`Tx::world_since`]).
#[derive(Debug, Default)]
pub struct WorldChanges {
    /// In revision order: an object (key None) or one attribute of it.
    pub deleted: Vec<(i64, Option<String>)>,
    pub objects: Vec<ObjectRow>,
    pub attributes: Vec<(i64, String, String)>,
}

impl Store {
    /// Records game migration `version` as run, without running anything:
    /// how the test build plays a newer build that migrated the database.
    pub fn record_game_migration(&self, version: i64, name: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO game_migrations (version, name, applied_at) VALUES (?1, ?2, 0)",
            rusqlite::params![version, name],
        )?;
        Ok(())
    }

    /// Refuses a database that game migrations unknown to this build have
    /// changed (`known`: the versions this build has): a newer build ran
    /// them, and this one would misread what they made.
    pub fn check_game_migrations(&self, known: &[i64]) -> Result<(), StoreError> {
        let has_table: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'game_migrations')",
            [],
            |row| row.get(0),
        )?;
        if !has_table {
            return Ok(());
        }
        let mut stmt = self.conn.prepare("SELECT version FROM game_migrations")?;
        let ran: Vec<i64> = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        match ran.into_iter().filter(|v| !known.contains(v)).max() {
            Some(found) => Err(StoreError::GameTooNew {
                path: self.path.clone(),
                found,
                known: known.iter().copied().max().unwrap_or(0),
            }),
            None => Ok(()),
        }
    }

    /// The world as it is, read in one read transaction that writes
    /// nothing: what a standby may do while the active server still serves.
    /// Gives its revision.
    pub fn read_world(&self, reader: &mut impl WorldReader) -> Result<i64, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let rev = read_world(&tx, reader)?;
        tx.rollback()?;
        Ok(rev)
    }
}

/// What takes the world from [`Store::read_world`] or [`Tx::read_world`]
/// row by row, borrowed: loading a world of 100,000 objects then
/// allocates only what the cache keeps, not every row twice.
pub trait WorldReader {
    /// How many objects follow, before the first.
    fn reserve(&mut self, objects: usize);
    /// The objects come in id order...
    fn object(&mut self, id: i64, kind: &str, name: &str, location: Option<i64>);
    /// ...each followed by its attributes; `value` is JSON text.
    fn attribute(&mut self, key: &str, value: &str);
}

fn read_world(conn: &Connection, reader: &mut impl WorldReader) -> Result<i64, StoreError> {
    let rev = conn.query_row("SELECT rev FROM world", [], |row| row.get(0))?;
    let count: i64 = conn.query_row("SELECT count(*) FROM objects", [], |row| row.get(0))?;
    reader.reserve(usize::try_from(count).unwrap_or(0));
    // Both in object order, read side by side: each object is whole
    // before the next, so the cache never looks one up again.
    let mut objects = conn.prepare("SELECT id, kind, name, location FROM objects ORDER BY id")?;
    let mut attributes =
        conn.prepare("SELECT object, key, value FROM attributes ORDER BY object, key")?;
    let mut objects = objects.query([])?;
    let mut attributes = attributes.query([])?;
    let mut attribute = attributes.next()?;
    while let Some(object) = objects.next()? {
        let id: i64 = object.get(0)?;
        reader.object(id, text(object, 1)?, text(object, 2)?, object.get(3)?);
        while let Some(row) = attribute {
            let of: i64 = row.get(0)?;
            if of > id {
                break;
            }
            // (One of no object, which the foreign key forbids, is skipped.)
            if of == id {
                reader.attribute(text(row, 1)?, text(row, 2)?);
            }
            attribute = attributes.next()?;
        }
    }
    Ok(rev)
}

/// Column `i` of `row` as text, borrowed.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn object_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    Ok(ObjectRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        location: row.get(3)?,
    })
}

#[cfg(test)]
fn load_objects(conn: &Connection) -> Result<Vec<ObjectRow>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, kind, name, location FROM objects ORDER BY id")?;
    let rows = stmt.query_map([], object_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
fn load_attributes(conn: &Connection) -> Result<Vec<(i64, String, String)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT object, key, value FROM attributes ORDER BY object, key")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A write to the game's data, as a [`Tx`] records it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Write {
    /// Takes the next world revision; gives it.
    Revision,
    Create {
        kind: String,
        name: String,
        location: Option<i64>,
        rev: i64,
    },
    Rename {
        id: i64,
        name: String,
        rev: i64,
    },
    Move {
        id: i64,
        location: Option<i64>,
        rev: i64,
    },
    Destroy {
        id: i64,
        rev: i64,
    },
    Set {
        id: i64,
        key: String,
        value: String,
        rev: i64,
    },
    Unset {
        id: i64,
        key: String,
        rev: i64,
    },
    /// Tombstones up to `upto` go: no standby loaded before it any more.
    Prune {
        upto: i64,
    },
    Schedule {
        name: String,
        due_ms: i64,
        every_ms: Option<i64>,
        catch_up: bool,
        object: Option<i64>,
        data: String,
    },
    Reschedule {
        id: i64,
        due_ms: i64,
    },
    Cancel {
        id: i64,
    },
    Migrated {
        version: i64,
        name: String,
        at: i64,
    },
    Defer {
        name: String,
        session: Option<i64>,
        input: String,
    },
    Undefer {
        id: i64,
    },
    /// A game migration's own SQL (recorded so that a commit retried after
    /// a storage fault runs it again).
    Sql {
        sql: String,
    },
}

impl Write {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Write::Revision => "taking a world revision",
            Write::Prune { .. } => "pruning tombstones",
            Write::Create { .. } => "creating an object",
            Write::Rename { .. } => "renaming an object",
            Write::Move { .. } => "moving an object",
            Write::Destroy { .. } => "destroying an object",
            Write::Set { .. } => "setting an attribute",
            Write::Unset { .. } => "removing an attribute",
            Write::Schedule { .. } => "scheduling a timer",
            Write::Reschedule { .. } => "rescheduling a timer",
            Write::Cancel { .. } => "cancelling a timer",
            Write::Migrated { .. } => "recording a game migration",
            Write::Defer { .. } => "deferring work",
            Write::Undefer { .. } => "finishing deferred work",
            Write::Sql { .. } => "running a game migration",
        }
    }

    /// Makes the write; gives the new row's id, or else the rows changed.
    pub(super) fn execute(&self, conn: &Connection) -> rusqlite::Result<i64> {
        let changed = |n: usize| n as i64;
        Ok(match self {
            Write::Revision => conn
                .prepare_cached("UPDATE world SET rev = rev + 1 RETURNING rev")?
                .query_row([], |row| row.get(0))?,
            Write::Prune { upto } => {
                let n = conn
                    .prepare_cached("DELETE FROM tombstones WHERE rev <= ?1")?
                    .execute([upto])?;
                conn.prepare_cached("UPDATE world SET pruned = MAX(pruned, ?1)")?
                    .execute([upto])?;
                changed(n)
            }
            Write::Create {
                kind,
                name,
                location,
                rev,
            } => {
                conn.prepare_cached(
                    "INSERT INTO objects (kind, name, location, rev) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![kind, name, location, rev])?;
                conn.last_insert_rowid()
            }
            Write::Rename { id, name, rev } => changed(
                conn.prepare_cached("UPDATE objects SET name = ?1, rev = ?3 WHERE id = ?2")?
                    .execute(params![name, id, rev])?,
            ),
            Write::Move { id, location, rev } => changed(
                conn.prepare_cached("UPDATE objects SET location = ?1, rev = ?3 WHERE id = ?2")?
                    .execute(params![location, id, rev])?,
            ),
            Write::Destroy { id, rev } => {
                let mut n = 0;
                for sql in [
                    "DELETE FROM attributes WHERE object = ?1",
                    "DELETE FROM timers WHERE object = ?1",
                    "DELETE FROM objects WHERE id = ?1",
                ] {
                    n += conn.prepare_cached(sql)?.execute([id])?;
                }
                // What it held is left nowhere, as of this revision.
                n += conn
                    .prepare_cached("UPDATE objects SET location = NULL, rev = ?2 WHERE location = ?1")?
                    .execute([id, rev])?;
                n += conn
                    .prepare_cached("INSERT INTO tombstones (rev, object, key) VALUES (?2, ?1, NULL)")?
                    .execute([id, rev])?;
                changed(n)
            }
            Write::Set {
                id,
                key,
                value,
                rev,
            } => changed(
                conn.prepare_cached(
                    "INSERT INTO attributes (object, key, value, rev) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (object, key) DO UPDATE SET value = excluded.value, rev = excluded.rev",
                )?
                .execute(params![id, key, value, rev])?,
            ),
            Write::Unset { id, key, rev } => {
                let n = conn
                    .prepare_cached("DELETE FROM attributes WHERE object = ?1 AND key = ?2")?
                    .execute(params![id, key])?;
                conn.prepare_cached(
                    "INSERT INTO tombstones (rev, object, key) VALUES (?3, ?1, ?2)",
                )?
                .execute(params![id, key, rev])?;
                changed(n)
            }
            Write::Schedule {
                name,
                due_ms,
                every_ms,
                catch_up,
                object,
                data,
            } => {
                conn.prepare_cached(
                    "INSERT INTO timers (name, due_ms, every_ms, catch_up, object, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![name, due_ms, every_ms, catch_up, object, data])?;
                conn.last_insert_rowid()
            }
            Write::Reschedule { id, due_ms } => changed(
                conn.prepare_cached("UPDATE timers SET due_ms = ?1 WHERE id = ?2")?
                    .execute(params![due_ms, id])?,
            ),
            Write::Cancel { id } => changed(
                conn.prepare_cached("DELETE FROM timers WHERE id = ?1")?
                    .execute([id])?,
            ),
            Write::Migrated { version, name, at } => changed(
                conn.prepare_cached(
                    "INSERT INTO game_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![version, name, at])?,
            ),
            Write::Sql { sql } => {
                conn.execute_batch(sql)?;
                0
            }
            Write::Defer {
                name,
                session,
                input,
            } => {
                conn.prepare_cached("INSERT INTO deferred (name, session, input) VALUES (?1, ?2, ?3)")?
                    .execute(params![name, session, input])?;
                conn.last_insert_rowid()
            }
            Write::Undefer { id } => changed(
                conn.prepare_cached("DELETE FROM deferred WHERE id = ?1")?
                    .execute([id])?,
            ),
        })
    }
}

impl Tx<'_> {
    /// The world, for the cache; gives its revision.
    pub fn read_world(&self, reader: &mut impl WorldReader) -> Result<i64, StoreError> {
        read_world(&self.tx, reader)
    }

    /// Every object.
    #[cfg(test)]
    pub fn load_objects(&self) -> Result<Vec<ObjectRow>, StoreError> {
        load_objects(&self.tx)
    }

    /// Every attribute: object, key, value (JSON text).
    #[cfg(test)]
    pub fn load_attributes(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        load_attributes(&self.tx)
    }

    /// The world revision now.
    pub fn world_rev(&self) -> Result<i64, StoreError> {
        Ok(self
            .tx
            .query_row("SELECT rev FROM world", [], |row| row.get(0))?)
    }

    /// Every timer.
    pub fn load_timers(&self) -> Result<Vec<TimerRow>, StoreError> {
        let mut stmt = self.tx.prepare(
            "SELECT id, name, due_ms, every_ms, catch_up, object, data FROM timers ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(TimerRow {
                id: row.get(0)?,
                name: row.get(1)?,
                due_ms: row.get(2)?,
                every_ms: row.get(3)?,
                catch_up: row.get(4)?,
                object: row.get(5)?,
                data: row.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The world revision of this transaction's changes, taken at the
    /// first of them.
    fn rev(&self) -> Result<i64, StoreError> {
        if let Some(rev) = self.world_rev.get() {
            return Ok(rev);
        }
        let rev = self.write(Write::Revision)?;
        self.world_rev.set(Some(rev));
        Ok(rev)
    }

    pub fn create_object(
        &self,
        kind: &str,
        name: &str,
        location: Option<i64>,
    ) -> Result<i64, StoreError> {
        let rev = self.rev()?;
        Ok(self.write(Write::Create {
            kind: kind.to_owned(),
            name: name.to_owned(),
            location,
            rev,
        })?)
    }

    pub fn rename_object(&self, id: i64, name: &str) -> Result<(), StoreError> {
        let rev = self.rev()?;
        self.write(Write::Rename {
            id,
            name: name.to_owned(),
            rev,
        })?;
        Ok(())
    }

    pub fn move_object(&self, id: i64, location: Option<i64>) -> Result<(), StoreError> {
        let rev = self.rev()?;
        self.write(Write::Move { id, location, rev })?;
        Ok(())
    }

    /// Deletes an object, its attributes and timers; what it held is left
    /// nowhere (no location).
    pub fn destroy_object(&self, id: i64) -> Result<(), StoreError> {
        let rev = self.rev()?;
        self.write(Write::Destroy { id, rev })?;
        Ok(())
    }

    pub fn set_attribute(&self, id: i64, key: &str, value: &str) -> Result<(), StoreError> {
        let rev = self.rev()?;
        self.write(Write::Set {
            id,
            key: key.to_owned(),
            value: value.to_owned(),
            rev,
        })?;
        Ok(())
    }

    pub fn unset_attribute(&self, id: i64, key: &str) -> Result<(), StoreError> {
        let rev = self.rev()?;
        self.write(Write::Unset {
            id,
            key: key.to_owned(),
            rev,
        })?;
        Ok(())
    }

    /// What changed in the world after revision `since`: the objects and
    /// attributes written since (as they are now) and the tombstones of
    /// what was deleted, in revision order. None if tombstones after
    /// `since` were pruned: the world must be loaded afresh.
    pub fn world_since(&self, since: i64) -> Result<Option<WorldChanges>, StoreError> {
        let pruned: i64 = self
            .tx
            .query_row("SELECT pruned FROM world", [], |row| row.get(0))?;
        if pruned > since {
            return Ok(None);
        }
        let mut stmt = self
            .tx
            .prepare("SELECT object, key FROM tombstones WHERE rev > ?1 ORDER BY rev")?;
        let deleted = stmt
            .query_map([since], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = self
            .tx
            // No ORDER BY: sorting by id would make SQLite scan the whole
            // table rather than search the rev index.
            .prepare("SELECT id, kind, name, location FROM objects WHERE rev > ?1")?;
        let objects = stmt
            .query_map([since], object_row)?
            .collect::<Result<_, _>>()?;
        let mut stmt = self
            .tx
            .prepare("SELECT object, key, value FROM attributes WHERE rev > ?1")?;
        let attributes = stmt
            .query_map([since], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Some(WorldChanges {
            deleted,
            objects,
            attributes,
        }))
    }

    /// Tombstones up to `upto` go (the server that serves has caught up).
    pub fn prune_tombstones(&self, upto: i64) -> Result<(), StoreError> {
        self.write(Write::Prune { upto })?;
        Ok(())
    }

    /// Every piece of deferred work not yet finished, oldest first.
    pub fn load_deferred(&self) -> Result<Vec<DeferredRow>, StoreError> {
        let mut stmt = self
            .tx
            .prepare("SELECT id, name, session, input FROM deferred ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok(DeferredRow {
                id: row.get(0)?,
                name: row.get(1)?,
                session: row.get(2)?,
                input: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores work to run off the engine's thread; gives its id.
    pub fn defer(&self, name: &str, session: Option<i64>, input: &str) -> Result<i64, StoreError> {
        Ok(self.write(Write::Defer {
            name: name.to_owned(),
            session,
            input: input.to_owned(),
        })?)
    }

    /// The deferred work `id` is done: its result is applied in this
    /// transaction.
    pub fn undefer(&self, id: i64) -> Result<(), StoreError> {
        self.write(Write::Undefer { id })?;
        Ok(())
    }

    /// Stores a new timer; gives its id.
    pub fn schedule(&self, timer: &TimerRow) -> Result<i64, StoreError> {
        Ok(self.write(Write::Schedule {
            name: timer.name.clone(),
            due_ms: timer.due_ms,
            every_ms: timer.every_ms,
            catch_up: timer.catch_up,
            object: timer.object,
            data: timer.data.clone(),
        })?)
    }

    pub fn reschedule(&self, id: i64, due_ms: i64) -> Result<(), StoreError> {
        self.write(Write::Reschedule { id, due_ms })?;
        Ok(())
    }

    pub fn cancel_timer(&self, id: i64) -> Result<(), StoreError> {
        self.write(Write::Cancel { id })?;
        Ok(())
    }

    /// The game migrations that ran, by version.
    pub fn game_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .tx
            .prepare("SELECT version FROM game_migrations ORDER BY version")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs one game migration and records it, in this transaction.
    pub fn run_game_migration(
        &self,
        version: i64,
        name: &str,
        sql: &str,
    ) -> Result<(), StoreError> {
        self.write(Write::Sql {
            sql: sql.to_owned(),
        })?;
        self.write(Write::Migrated {
            version,
            name: name.to_owned(),
            at: super::accounts::unix_now(),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::open;
    use crate::store::{StoreError, WorldReader};

    /// What a reader was told, in order.
    #[derive(Default)]
    struct Told(Vec<String>);

    impl WorldReader for Told {
        fn reserve(&mut self, objects: usize) {
            self.0.push(format!("{objects} objects"));
        }
        fn object(&mut self, id: i64, kind: &str, name: &str, location: Option<i64>) {
            self.0.push(format!("#{id} {kind} {name} at {location:?}"));
        }
        fn attribute(&mut self, key: &str, value: &str) {
            self.0.push(format!("  {key} = {value}"));
        }
    }

    #[test]
    fn the_world_is_read_object_by_object_each_followed_by_its_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        let base = tx.world_rev().unwrap();
        let room = tx.create_object("room", "hall", None).unwrap();
        let bare = tx.create_object("thing", "pebble", Some(room)).unwrap();
        let cup = tx.create_object("thing", "cup", Some(room)).unwrap();
        let last = tx.create_object("thing", "coin", Some(cup)).unwrap();
        // Set out of order: the read is in object, then key, order.
        tx.set_attribute(cup, "colour", "\"red\"").unwrap();
        tx.set_attribute(room, "lit", "true").unwrap();
        tx.set_attribute(cup, "colour", "\"blue\"").unwrap();
        tx.set_attribute(cup, "weight", "2").unwrap();
        tx.set_attribute(room, "dark", "false").unwrap();
        tx.commit().unwrap();
        let mut told = Told::default();
        let rev = store.read_world(&mut told).unwrap();
        assert!(rev > base);
        assert_eq!(
            told.0,
            [
                "4 objects".to_owned(),
                format!("#{room} room hall at None"),
                "  dark = false".into(),
                "  lit = true".into(),
                format!("#{bare} thing pebble at Some({room})"),
                format!("#{cup} thing cup at Some({room})"),
                "  colour = \"blue\"".into(),
                "  weight = 2".into(),
                format!("#{last} thing coin at Some({cup})"),
            ]
        );
    }

    #[test]
    fn objects_attributes_and_timers_are_kept_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        let room = tx.create_object("room", "Hall", None).unwrap();
        let cup = tx.create_object("thing", "cup", Some(room)).unwrap();
        tx.set_attribute(cup, "colour", "\"red\"").unwrap();
        tx.set_attribute(cup, "colour", "\"blue\"").unwrap();
        let timer = super::TimerRow {
            id: 0,
            name: "bell".into(),
            due_ms: 5,
            every_ms: Some(10),
            catch_up: false,
            object: Some(room),
            data: "null".into(),
        };
        let t = tx.schedule(&timer).unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        tx.create_object("thing", "lost", None).unwrap();
        drop(tx);

        let tx = store.begin().unwrap();
        let objects = tx.load_objects().unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].location, Some(room));
        assert_eq!(
            tx.load_attributes().unwrap(),
            [(cup, "colour".to_owned(), "\"blue\"".to_owned())]
        );
        assert_eq!(tx.load_timers().unwrap()[0].id, t);
        tx.destroy_object(room).unwrap();
        assert_eq!(tx.load_objects().unwrap()[0].location, None);
        assert!(tx.load_timers().unwrap().is_empty());
    }

    #[test]
    fn a_database_migrated_by_a_newer_build_of_the_game_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.check_game_migrations(&[]).unwrap();
        let tx = store.begin().unwrap();
        tx.run_game_migration(1, "one", "SELECT 1;").unwrap();
        tx.run_game_migration(3, "three", "SELECT 1;").unwrap();
        tx.commit().unwrap();
        store.check_game_migrations(&[1, 2, 3]).unwrap();
        let err = store.check_game_migrations(&[1, 2]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::GameTooNew {
                    found: 3,
                    known: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("a newer build of the game migrated it")
        );
    }

    #[test]
    fn a_game_migration_runs_in_the_transaction_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        tx.run_game_migration(1, "scores", "CREATE TABLE scores (who TEXT, n INTEGER);")
            .unwrap();
        drop(tx);
        let tx = store.begin().unwrap();
        assert!(tx.game_migrations().unwrap().is_empty());
        tx.run_game_migration(1, "scores", "CREATE TABLE scores (who TEXT, n INTEGER);")
            .unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(tx.game_migrations().unwrap(), [1]);
    }
}
