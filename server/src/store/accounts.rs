//! The game's tables: accounts and characters.
//!
//! This is the seam the game-API issue cuts along: it will move these tables
//! behind the game's own API. So this module depends on the store's
//! transaction ([`Tx`], and its recording of writes for
//! [`Store::retry`](super::Store::retry)) and [`StoreError`], and on nothing
//! of the delivery tables; nothing outside the game, `create-admin` and
//! `set-password` uses it. (Its tables are made by the first migration, in
//! `schema`.)

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    /// The permission level (the game's: 0 player, 1 builder, 2 admin).
    pub level: i64,
}

/// A character: an object (of the same id) that an account plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Character {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
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

/// A write to the game's tables, as a [`Tx`] records it for
/// [`Store::retry`](super::Store::retry).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Write {
    Account {
        name: String,
        hash: String,
        level: i64,
        created_at: i64,
    },
    Level {
        account_id: i64,
        level: i64,
    },
    /// The player's colour setting, by its name.
    Colours {
        account_id: i64,
        colours: String,
    },
    /// `ev-server set-password`: by name, so it needs no column later than
    /// the first migration's.
    Password {
        name: String,
        hash: String,
    },
    /// A login: the account's `last_login`, in Unix seconds.
    Login {
        account_id: i64,
        at: i64,
    },
    /// The character row of object `id`.
    Character {
        id: i64,
        account_id: i64,
        name: String,
    },
}

impl Write {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Write::Account { .. } => "creating an account",
            Write::Level { .. } => "setting an account's level",
            Write::Colours { .. } => "setting an account's colours",
            Write::Password { .. } => "setting an account's password",
            Write::Login { .. } => "recording a login",
            Write::Character { .. } => "creating a character",
        }
    }

    /// Makes the write; gives the new row's id.
    pub(super) fn execute(&self, conn: &Connection) -> rusqlite::Result<i64> {
        Ok(match self {
            Write::Account {
                name,
                hash,
                level,
                created_at,
            } => {
                conn.prepare_cached(
                    "INSERT INTO accounts (name, password_hash, level, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![name, hash, level, created_at])?;
                conn.last_insert_rowid()
            }
            // The result is the rows changed, so a retry checks it too.
            Write::Level { account_id, level } => {
                conn.prepare_cached("UPDATE accounts SET level = ?1 WHERE id = ?2")?
                    .execute(params![level, account_id])? as i64
            }
            Write::Colours {
                account_id,
                colours,
            } => conn
                .prepare_cached("UPDATE accounts SET colours = ?1 WHERE id = ?2")?
                .execute(params![colours, account_id])? as i64,
            Write::Password { name, hash } => conn
                .prepare_cached("UPDATE accounts SET password_hash = ?1 WHERE name = ?2")?
                .execute(params![hash, name])? as i64,
            Write::Login { account_id, at } => {
                conn.prepare_cached("UPDATE accounts SET last_login = ?1 WHERE id = ?2")?
                    .execute(params![at, account_id])? as i64
            }
            Write::Character {
                id,
                account_id,
                name,
            } => {
                conn.prepare_cached(
                    "INSERT INTO characters (id, account_id, name) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, account_id, name])?;
                conn.last_insert_rowid()
            }
        })
    }
}

impl Tx<'_> {
    /// The account of this name, compared case-insensitively.
    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT id, name, password_hash, level FROM accounts WHERE name = ?1")?
            .query_row([name], account_row)
            .optional()?)
    }

    /// Sets an account's permission level; false if there is no such account.
    pub fn set_level(&self, account_id: i64, level: i64) -> Result<bool, StoreError> {
        Ok(self.write(Write::Level { account_id, level })? > 0)
    }

    /// Replaces the password hash of the account of this name (any case);
    /// gives the account's name as stored, or None if there is none. Touches
    /// only what the first schema version had, so it works on a database
    /// that a running server has not migrated yet, and migrates nothing.
    pub fn set_password(
        &self,
        name: &str,
        password_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let changed = self.write(Write::Password {
            name: name.to_owned(),
            hash: password_hash.to_owned(),
        })?;
        if changed == 0 {
            return Ok(None);
        }
        Ok(self
            .tx
            .prepare_cached("SELECT name FROM accounts WHERE name = ?1")?
            .query_row([name], |row| row.get(0))
            .optional()?)
    }

    /// Records a login to the account now; gives whether it had logged in
    /// before (false for an account `create-admin` made, until its first).
    pub fn record_login(&self, account_id: i64) -> Result<bool, StoreError> {
        let before: Option<Option<i64>> = self
            .tx
            .prepare_cached("SELECT last_login FROM accounts WHERE id = ?1")?
            .query_row([account_id], |row| row.get(0))
            .optional()?;
        self.write(Write::Login {
            account_id,
            at: unix_now(),
        })?;
        Ok(matches!(before, Some(Some(_))))
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

    /// Creates an account and its character of the same name, an object
    /// of kind "character" at `location`.
    pub fn create_account(
        &self,
        name: &str,
        password_hash: &str,
        level: i64,
        location: Option<i64>,
    ) -> Result<Character, CreateError> {
        if self.name_taken(name)? {
            return Err(CreateError::Taken);
        }
        let now = unix_now();
        let account_id = self
            .write(Write::Account {
                name: name.to_owned(),
                hash: password_hash.to_owned(),
                level,
                created_at: now,
            })
            .map_err(taken_or)?;
        let id = self.create_object("character", name, location)?;
        self.write(Write::Character {
            id,
            account_id,
            name: name.to_owned(),
        })
        .map_err(taken_or)?;
        Ok(Character {
            id,
            account_id,
            name: name.to_owned(),
        })
    }

    /// A character with its account's permission level, in one read: a
    /// Sync restores a thousand sessions this way, inside a reload's dark time.
    pub fn character_and_level(&self, id: i64) -> Result<Option<(Character, i64)>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT c.id, c.account_id, c.name, a.level
                 FROM characters c JOIN accounts a ON a.id = c.account_id
                 WHERE c.id = ?1",
            )?
            .query_row([id], |row| Ok((character_row(row)?, row.get(3)?)))
            .optional()?)
    }

    /// [`character_and_level`](Self::character_and_level) for many ids in
    /// one statement: a Sync restores a chunk of sessions with one read
    /// rather than one per player. Ids with no character are left out.
    pub fn characters_and_levels(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, (Character, i64)>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        // Integers only, as a JSON array: one bound parameter whatever the count.
        let list = format!(
            "[{}]",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        );
        let mut stmt = self.tx.prepare_cached(
            "SELECT c.id, c.account_id, c.name, a.level
             FROM characters c JOIN accounts a ON a.id = c.account_id
             WHERE c.id IN (SELECT value FROM json_each(?1))",
        )?;
        let rows = stmt.query_map([list], |row| Ok((character_row(row)?, row.get(3)?)))?;
        let mut found = HashMap::with_capacity(ids.len());
        for row in rows {
            let (ch, level): (Character, i64) = row?;
            found.insert(ch.id, (ch, level));
        }
        Ok(found)
    }

    /// Keeps the player's colour setting (its name) on the account; false
    /// if there is no such account.
    pub fn set_colours(&self, account_id: i64, colours: &str) -> Result<bool, StoreError> {
        Ok(self.write(Write::Colours {
            account_id,
            colours: colours.to_owned(),
        })? > 0)
    }

    /// The account's colour setting, by name ("auto" unless the player chose).
    pub fn colours_of(&self, account_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT colours FROM accounts WHERE id = ?1")?
            .query_row([account_id], |row| row.get(0))
            .optional()?)
    }

    /// The account's first character.
    pub fn character_of(&self, account_id: i64) -> Result<Option<Character>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id, account_id, name FROM characters
                 WHERE account_id = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([account_id], character_row)
            .optional()?)
    }
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        level: row.get(3)?,
    })
}

fn character_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Character> {
    Ok(Character {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
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
    use crate::store::tests::open;

    #[test]
    fn many_characters_and_levels_in_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        let alice = tx.create_account("Alice", "h", 0, None).unwrap();
        let bob = tx.create_account("Bob", "h", 0, None).unwrap();
        assert!(tx.set_level(bob.account_id, 2).unwrap());
        let found = tx.characters_and_levels(&[alice.id, 9999, bob.id]).unwrap();
        assert_eq!(found.len(), 2, "no character 9999");
        assert_eq!(found[&alice.id], (alice.clone(), 0));
        assert_eq!(found[&bob.id], (bob.clone(), 2));
        for id in [alice.id, bob.id] {
            assert_eq!(
                tx.character_and_level(id).unwrap().as_ref(),
                Some(&found[&id]),
                "the same as one at a time"
            );
        }
        assert!(tx.characters_and_levels(&[]).unwrap().is_empty());
    }

    #[test]
    fn names_are_unique_in_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        let c = tx.create_account("Alice", "h", 0, None).unwrap();
        assert!(matches!(
            tx.create_account("aLICE", "h", 0, None),
            Err(CreateError::Taken)
        ));
        let a = tx.account_by_name("ALICE").unwrap().unwrap();
        assert_eq!(a.name, "Alice");
        assert_eq!(tx.character_of(a.id).unwrap().unwrap(), c);
        assert!(tx.set_level(a.id, 1).unwrap());
        let (ch, level) = tx.character_and_level(c.id).unwrap().unwrap();
        assert_eq!((ch, level), (c.clone(), 1));
        assert!(!tx.set_level(9999, 1).unwrap(), "no such account");
        assert_eq!(tx.colours_of(a.id).unwrap().as_deref(), Some("auto"));
        assert!(tx.set_colours(a.id, "xterm256").unwrap());
        assert_eq!(tx.colours_of(a.id).unwrap().as_deref(), Some("xterm256"));
        assert!(!tx.set_colours(9999, "plain").unwrap(), "no such account");
        tx.commit().unwrap();
    }

    #[test]
    fn a_password_is_set_by_name_in_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        tx.create_account("Alice", "old", 0, None).unwrap();
        tx.create_account("Bob", "bobs", 0, None).unwrap();
        assert_eq!(
            tx.set_password("aLiCe", "new").unwrap().as_deref(),
            Some("Alice")
        );
        assert_eq!(
            tx.account_by_name("alice").unwrap().unwrap().password_hash,
            "new"
        );
        assert_eq!(
            tx.account_by_name("bob").unwrap().unwrap().password_hash,
            "bobs"
        );
        assert_eq!(tx.set_password("Nobody", "x").unwrap(), None);
        tx.commit().unwrap();
    }

    /// Issue 11: a first login is told apart from the later ones.
    #[test]
    fn record_login_says_whether_the_account_logged_in_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        let ch = tx.create_account("Root", "h", 2, None).unwrap();
        assert!(!tx.record_login(ch.account_id).unwrap(), "never logged in");
        assert!(tx.record_login(ch.account_id).unwrap());
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert!(
            tx.record_login(ch.account_id).unwrap(),
            "kept by the commit"
        );
    }
}
