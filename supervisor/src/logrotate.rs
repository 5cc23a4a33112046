//! Logs that do not fill the disk.
//!
//! Every process writes its log to stderr, pointed by whoever spawned it at
//! logs/<process>.log opened for appending (so a panic message lands there
//! too, and logging outlives the supervisor). The writers cannot be asked to
//! reopen a file, so a log past `logs.max_file_kib` is rotated by copy and
//! truncate: its content goes to `<process>.log.1` (older copies shift up
//! to `logs.keep`, the oldest is dropped) and the file is cut to nothing.
//! Appending writers carry on at the new end. The price: lines written
//! between the copy and the cut are lost, a window of microseconds.
//!
//! The bound: each of the three logs holds at most `max_file_kib` plus
//! what its process writes within one check (`CHECK_EVERY`), and `keep`
//! copies of at most that; README.md gives the total.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::supervisor::Shared;

/// How often the logs are measured.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The logs the supervisor keeps bounded.
const LOGS: [&str; 3] = ["supervisor", "portal", "server"];

/// Runs until stop.
pub(crate) async fn keep_bounded(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = shared.stop.cancelled() => return,
        }
        let config = shared.config();
        let (max, keep) = (config.logs.max_file_kib * 1024, config.logs.keep);
        let paths: Vec<PathBuf> = LOGS.iter().map(|p| shared.game.log_path(p)).collect();
        let rotated = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|path| rotate_if_over(path, max, keep).map_err(|e| (path.clone(), e)))
                .collect::<Vec<_>>()
        })
        .await;
        for result in rotated.into_iter().flatten() {
            if let Err((path, e)) = result {
                tracing::warn!("cannot rotate {}: {e}", path.display());
            }
        }
    }
}

/// Rotates `path` if it holds more than `max` bytes; says whether it did.
pub(crate) fn rotate_if_over(path: &Path, max: u64, keep: usize) -> std::io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max {
        return Ok(false);
    }
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    if keep == 0 {
        let _ = std::fs::remove_file(numbered(1));
    } else {
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::copy(path, numbered(1))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_log_past_its_size_is_kept_in_numbered_copies_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for round in 0..5 {
            writeln!(writer, "round {round} {}", "x".repeat(100)).unwrap();
            assert!(rotate_if_over(&path, 50, 2).unwrap(), "round {round}");
        }
        assert!(
            !rotate_if_over(&path, 50, 2).unwrap(),
            "nothing new to rotate"
        );
        // The appending writer goes on at the new end, with no hole.
        writeln!(writer, "after").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        let copy = |n| std::fs::read_to_string(dir.path().join(format!("server.log.{n}")));
        assert!(copy(1).unwrap().starts_with("round 4 "));
        assert!(copy(2).unwrap().starts_with("round 3 "));
        assert!(copy(3).is_err(), "only two copies are kept");
        assert!(!rotate_if_over(&dir.path().join("none.log"), 1, 2).unwrap());
    }
}
