//! The WAL checkpoint thread, and giving free pages back to the filesystem.
//!
//! The game's connection never checkpoints (`wal_autocheckpoint` is 0): a
//! thread of its own, with its own connection, copies the WAL back into the
//! database every [`CHECKPOINT_EVERY`] and restarts the log when it grows, so
//! no command's reply waits on a checkpoint and the WAL stays bounded. Once
//! this server may write (it migrated), the same thread gives free pages back
//! with incremental auto-vacuum, so the file shrinks after a burst of outbox
//! rows is gone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::{BUSY_TIMEOUT, configure};

/// How often the WAL is copied back into the database, off the game's thread.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL frames (pages) past which the checkpointer also restarts the log.
pub(super) const WAL_RESTART_FRAMES: i64 = 8192;
/// The WAL file is cut back to this when the log restarts after a peak.
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Free pages are given back once there are this many (4 MiB of 4 KiB
/// pages)...
const RECLAIM_MIN_PAGES: i64 = 1024;
/// ...and they are at least a quarter of the file: outbox churn reuses its
/// free pages at once, so moving them for a small gain would only be undone.
const RECLAIM_FRACTION: i64 = 4;
/// Most pages given back per pass: incremental vacuum holds the write lock,
/// so a game commit waits for it; a pass this size takes a few ms.
const RECLAIM_STEP: i64 = 1024;

/// Checkpoints the WAL from a thread of its own with its own connection.
/// SQLite's automatic checkpoint runs inside whichever commit crosses the
/// threshold, which made that command's reply milliseconds late; a passive
/// checkpoint here never blocks the game's writes.
///
/// A passive checkpoint alone never lets the log start over while the game
/// commits without pause (new frames always land behind it): under
/// sustained load the WAL grew to 3.4 GB and every commit got slower. So
/// once the log is over `restart_frames`, a RESTART checkpoint follows the
/// passive one. It holds the game's next commit back only while it copies
/// what was committed since the passive pass, a few milliseconds, and then
/// the log is written from its start again. Stops when dropped.
///
/// A RESTART holds the write lock while it waits for every reader to leave
/// the log, so it is tried only when the passive pass copied the whole log
/// (no reader is pinned to an old snapshot), and it waits at most
/// [`RESTART_WAIT`]. A long read, such as a standby server reading the world
/// ahead or `evctl backup`, once held every command's reply back until it
/// ended: 180 ms at each reload of a 100,000-object world.
pub(super) struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
    #[cfg(test)]
    passes: Arc<std::sync::atomic::AtomicU64>,
}

/// Longest a RESTART checkpoint waits for readers, and so holds the game's
/// commits back, before it gives up until the next pass.
const RESTART_WAIT: Duration = Duration::from_millis(10);

impl Checkpointer {
    /// Once `reclaim` is set, each pass also gives free pages back.
    pub(super) fn start(
        path: &Path,
        every: Duration,
        restart_frames: i64,
        reclaim: Arc<AtomicBool>,
    ) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let path = path.to_owned();
        #[cfg(test)]
        let passes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        #[cfg(test)]
        let passes_seen = passes.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                let conn = match Connection::open(&path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::error!("checkpoint connection to {}: {e}", path.display());
                        return;
                    }
                };
                if let Err(e) = configure(&conn) {
                    tracing::warn!("checkpoint connection to {}: {e}", path.display());
                }
                let _ = conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT);
                // (frames in the log, frames copied into the database)
                let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64)> {
                    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
                        Ok((row.get(1)?, row.get(2)?))
                    })
                };
                // Until the Store (and so the sender) is dropped.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    if reclaim.load(Ordering::Relaxed)
                        && let Err(e) = give_back_free_pages(&conn)
                    {
                        tracing::warn!("giving free database pages back: {e}");
                    }
                    let result = checkpoint("PASSIVE").and_then(|(frames, copied)| {
                        if frames > restart_frames && copied == frames {
                            conn.busy_timeout(RESTART_WAIT)?;
                            let restarted = checkpoint("RESTART");
                            conn.busy_timeout(BUSY_TIMEOUT)?;
                            restarted?;
                        }
                        Ok(())
                    });
                    if let Err(e) = result {
                        tracing::warn!("WAL checkpoint: {e}");
                    }
                    #[cfg(test)]
                    passes_seen.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the WAL checkpoint thread: {e}");
        }
        Checkpointer {
            _stop: stop,
            #[cfg(test)]
            passes,
        }
    }

    /// Passes made so far.
    #[cfg(test)]
    fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

/// Incremental vacuum of up to [`RECLAIM_STEP`] pages when enough are free;
/// the next checkpoint that copies the whole log back cuts the file.
fn give_back_free_pages(conn: &Connection) -> rusqlite::Result<()> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    if free < RECLAIM_MIN_PAGES || free * RECLAIM_FRACTION < pages {
        return Ok(());
    }
    // Each step of the statement frees a page; it must run to the end.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({RECLAIM_STEP})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    tracing::debug!(free, pages, "gave free database pages back");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{OutboxRow, SessionId};
    use crate::store::tests::open;

    #[test]
    fn the_wal_is_checkpointed_off_the_game_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let db = dir.path().join("data/game.db");
        let before = std::fs::metadata(&db).unwrap().len();
        let tx = store.begin().unwrap();
        for i in 0..2_000u64 {
            tx.put_outbox(&OutboxRow {
                session: SessionId(i),
                seq: 1,
                kind: 1,
                payload: vec![b'x'; 200],
            })
            .unwrap();
        }
        tx.commit().unwrap();
        // No commit of ours checkpoints (autocheckpoint is off), yet the
        // pages reach the database file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&db).unwrap().len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was never checkpointed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A database in WAL mode with one table `t`, as the game's connection
    /// would have it: no checkpoint of its own, no sync (the tests write a
    /// lot).
    fn wal_database(db: &Path) -> Connection {
        let conn = Connection::open(db).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .unwrap();
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.busy_timeout(BUSY_TIMEOUT).unwrap();
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)", [])
            .unwrap();
        conn
    }

    #[test]
    fn the_wal_starts_over_under_writes_without_pause() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("game.db");
        let conn = wal_database(&db);
        let _checkpoints = Checkpointer::start(
            &db,
            Duration::from_millis(10),
            64,
            Arc::new(AtomicBool::new(false)),
        );
        // Each commit rewrites at least one 4 KiB page: 20,000 of them are
        // 80 MiB of log if it never starts over. With restarts the file stays
        // near what is written between two checkpoints; the bound leaves room
        // for a checkpointer slowed down by a busy machine.
        let payload = vec![7u8; 3000];
        for k in 0..20_000i64 {
            conn.execute(
                "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![k % 50, payload],
            )
            .unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("game.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 32 << 20, "the WAL grew to {wal} bytes");
    }

    #[test]
    fn a_long_read_never_holds_the_games_commits_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("game.db");
        let game = wal_database(&db);
        // A standby reading the world ahead, or a backup: a read
        // transaction that stays open while the game goes on.
        let reader = Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        let checkpoints = Checkpointer::start(
            &db,
            Duration::from_millis(5),
            64,
            Arc::new(AtomicBool::new(false)),
        );
        // The game never waits: a commit that finds the write lock taken
        // fails at once, so one held by the checkpointer shows.
        game.busy_timeout(Duration::ZERO).unwrap();
        let payload = vec![7u8; 3000];
        let mut k = 0i64;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let log_passed_the_mark = loop {
            game.execute(
                "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![k % 50, payload],
            )
            .unwrap_or_else(|e| panic!("commit {k} was held back: {e}"));
            k += 1;
            if k == 200 {
                break checkpoints.passes();
            }
        };
        // Go on until the checkpointer has looked at the long log a few times.
        while checkpoints.passes() < log_passed_the_mark + 5 {
            assert!(std::time::Instant::now() < deadline, "no checkpoints");
            game.execute(
                "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![k % 50, payload],
            )
            .unwrap_or_else(|e| panic!("commit {k} was held back: {e}"));
            k += 1;
        }
        // Once the reader is gone, the log starts over again: with a write
        // between passes, the frames in it fall back to a few.
        drop(reader);
        game.busy_timeout(BUSY_TIMEOUT).unwrap();
        loop {
            game.execute(
                "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![k % 50, payload],
            )
            .unwrap();
            k += 1;
            let frames: i64 = game
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
                .unwrap();
            if frames < 64 {
                break;
            }
            let pass = checkpoints.passes();
            while checkpoints.passes() < pass + 2 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the log never started over ({frames} frames)"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn the_file_shrinks_after_a_burst_of_outbox_rows_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let db = dir.path().join("data/game.db");
        let tx = store.begin().unwrap();
        for i in 0..5_000u64 {
            tx.put_outbox(&OutboxRow {
                session: SessionId(i % 50),
                seq: i,
                kind: 1,
                payload: vec![b'x'; 4000],
            })
            .unwrap();
        }
        tx.commit().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&db).unwrap().len() < 16 << 20 {
            assert!(std::time::Instant::now() < deadline, "never checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let tx = store.begin().unwrap();
        for session in 0..50 {
            tx.prune_outbox(SessionId(session), u64::MAX >> 1).unwrap();
        }
        tx.commit().unwrap();
        while std::fs::metadata(&db).unwrap().len() > 6 << 20 {
            let len = std::fs::metadata(&db).unwrap().len();
            assert!(
                std::time::Instant::now() < deadline,
                "the file stayed at {len} bytes"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
