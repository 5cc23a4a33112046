//! The runtime's delivery tables, the exactly-once machinery: each
//! session's last applied input seq (`session_seq`), its last output seq
//! (`output_seq`) and its output not yet delivered (`outbox`).
//!
//! The game records each session's last applied input seq in the
//! transaction of the command's effects, so an input replayed after a
//! crash or a hand-over is only acked again. What a batch sends to players
//! is part of it too: every Output, SessionUpdate and Disconnect is written
//! to `outbox` under its session's next output seq (`output_seq` holds the
//! counter) in the same transaction. Rows go when the portal reports them
//! delivered, when the session closes or opens afresh, or when a Sync says
//! the portal already delivered them; a server that crashed before sending
//! re-sends the rest after the next Sync.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, Tx};
use crate::event::{OutboxRow, SessionId};

/// One session's rows as a Sync finds them (see [`Tx::sync_state`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncState {
    pub last_seq: u64,
    /// The output counter; 0 when there is none.
    pub output_seq: u64,
    /// Its outbox rows, in seq order.
    pub outbox: Vec<OutboxRow>,
}

/// SQLite integers are signed; ids and seqs are stored bit for bit.
fn sql_u64(value: u64) -> i64 {
    value as i64
}

/// A write to the delivery tables, as a [`Tx`] records it for
/// [`Store::retry`](super::Store::retry).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Write {
    LastSeq { session: i64, seq: i64 },
    Forget { session: i64 },
    OutputSeq { session: i64, seq: i64 },
    RaiseOutputSeq { session: i64, to: i64 },
    Outbox(OutboxRow),
    Prune { session: i64, upto: i64 },
}

impl Write {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Write::LastSeq { .. } => "recording an applied input",
            Write::Forget { .. } => "forgetting a session",
            Write::OutputSeq { .. } => "taking an output seq",
            Write::RaiseOutputSeq { .. } => "raising an output seq",
            Write::Outbox(_) => "writing an outbox row",
            Write::Prune { .. } => "pruning the outbox",
        }
    }

    /// Makes the write; gives the seq it took, or else the number of rows
    /// changed.
    pub(super) fn execute(&self, conn: &Connection) -> rusqlite::Result<i64> {
        let changed = |n: usize| n as i64;
        Ok(match self {
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
            Write::OutputSeq { session, seq } => changed(
                conn.prepare_cached(
                    "INSERT INTO output_seq (session_id, last_seq) VALUES (?1, ?2)
                     ON CONFLICT (session_id) DO UPDATE SET last_seq = excluded.last_seq",
                )?
                .execute([session, seq])?,
            ),
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
        })
    }
}

/// Each session's output counter, kept in memory so that taking the next
/// seq is one plain write. Reading the counter back from SQLite in the
/// same statement (`RETURNING`) costs a temporary table each time: 4 µs,
/// a fifth of the server's work for a command. The database stays the
/// truth: a session not known here is read from it once, and this server
/// is its only writer.
#[derive(Debug, Default)]
pub(super) struct OutputSeqs {
    /// As committed.
    committed: HashMap<i64, i64>,
    /// As changed by the transaction in progress, or by the one whose
    /// commit failed until its retry commits. None: read it again from
    /// the database (a write set it without telling its value).
    staged: HashMap<i64, Option<i64>>,
}

impl OutputSeqs {
    /// A transaction begins: nothing it changes is known yet.
    pub(super) fn begin(&mut self) {
        self.staged.clear();
    }

    /// Its transaction committed.
    pub(super) fn committed(&mut self) {
        for (session, seq) in self.staged.drain() {
            match seq {
                // A session with no counter is not kept: it reads as 0.
                Some(seq) if seq > 0 => {
                    self.committed.insert(session, seq);
                }
                _ => {
                    self.committed.remove(&session);
                }
            }
        }
    }

    /// What the transaction in progress set `session`'s counter to; None:
    /// read it from the database when next needed.
    fn stage(&mut self, session: i64, seq: Option<i64>) {
        self.staged.insert(session, seq);
    }

    fn known(&self, session: i64) -> Option<i64> {
        match self.staged.get(&session) {
            Some(staged) => *staged,
            None => self.committed.get(&session).copied(),
        }
    }
}

impl Tx<'_> {
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
        let session = sql_u64(session.0);
        self.write(Write::Forget { session })?;
        self.seqs.borrow_mut().stage(session, Some(0));
        Ok(())
    }

    /// The last output seq given to `session`, as the database has it; 0
    /// if none.
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
        let id = sql_u64(session.0);
        let known = self.seqs.borrow().known(id);
        let last = match known {
            Some(seq) => seq,
            None => sql_u64(self.output_seq(session)?),
        };
        let seq = last + 1;
        self.write(Write::OutputSeq { session: id, seq })?;
        self.seqs.borrow_mut().stage(id, Some(seq));
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
            let session = sql_u64(session.0);
            self.write(Write::RaiseOutputSeq {
                session,
                to: sql_u64(delivered),
            })?;
            self.seqs.borrow_mut().stage(session, None);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{open, put, row};

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

    /// The counters kept in memory go on exactly as the database's would,
    /// whatever happened to the transactions that changed them.
    #[test]
    fn output_seqs_go_on_from_what_was_committed_through_rollbacks_forgets_and_raises() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        put(&tx, 1, "a");
        put(&tx, 2, "b");
        tx.commit().unwrap();
        // Rolled back: the same seq again.
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "lost"), 2);
        drop(tx);
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "kept"), 2, "a rolled-back seq is given again");
        // Forgotten, in a transaction rolled back and then in one committed.
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        tx.forget_session(SessionId(1)).unwrap();
        assert_eq!(put(&tx, 1, "fresh"), 1);
        drop(tx);
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "c"), 3);
        tx.forget_session(SessionId(2)).unwrap();
        tx.commit().unwrap();
        // Raised by a Sync's mark, then rolled back, then committed.
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 2, "again"), 1);
        assert!(tx.resync_output(SessionId(2), 10).unwrap().is_empty());
        drop(tx);
        let tx = store.begin().unwrap();
        assert!(tx.resync_output(SessionId(1), 10).unwrap().is_empty());
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        assert_eq!(put(&tx, 1, "d"), 11);
        assert_eq!(put(&tx, 2, "e"), 1);
        tx.commit().unwrap();
        // What the database holds agrees: a new server reads it.
        drop(store);
        let mut store = open(dir.path());
        let tx = store.begin().unwrap();
        assert_eq!(tx.output_seq(SessionId(1)).unwrap(), 11);
        assert_eq!(tx.output_seq(SessionId(2)).unwrap(), 1);
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
}
