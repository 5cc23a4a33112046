//! Which of a game's processes are alive, from the pidfiles in run/.
//!
//! A pid counts only if that process is alive (not a zombie) and its command
//! line names this game directory, so a stale pidfile whose pid was reused by
//! an unrelated process is never mistaken for the game.

use crate::gamedir::GameDir;
pub use crate::process::alive;
use crate::process::cmdline;

/// The processes with pidfiles, in the order they are reported.
pub const PROCESSES: [&str; 3] = ["supervisor", "portal", "server"];

/// Whether `pid` is a live `process` of this game.
pub fn is_ours(game: &GameDir, process: &str, pid: u32) -> bool {
    if !alive(pid) {
        return false;
    }
    let args = cmdline(pid);
    let root = game.root().to_string_lossy();
    args.iter().any(|a| *a == *root)
        || (process == "supervisor" && args.first().is_some_and(|a| a.ends_with("ev-supervisor")))
}

/// The supervisor's pid, if one runs for this game.
pub fn supervisor(game: &GameDir) -> Option<u32> {
    game.read_pid("supervisor")
        .filter(|&pid| is_ours(game, "supervisor", pid))
}

/// Every process of this game that is alive, by its pidfile.
pub fn live(game: &GameDir) -> Vec<(&'static str, u32)> {
    PROCESSES
        .into_iter()
        .filter_map(|name| {
            let pid = game.read_pid(name)?;
            is_ours(game, name, pid).then_some((name, pid))
        })
        .collect()
}

/// "portal (pid 12) and server (pid 13)".
pub fn describe(pids: &[(&str, u32)]) -> String {
    let parts: Vec<String> = pids
        .iter()
        .map(|(name, pid)| format!("{name} (pid {pid})"))
        .collect();
    match parts.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Lines saying which processes run without a supervisor, if any.
pub fn orphan_note(game: &GameDir) -> Option<String> {
    let orphans: Vec<_> = live(game)
        .into_iter()
        .filter(|(name, _)| *name != "supervisor")
        .collect();
    if orphans.is_empty() {
        return None;
    }
    let verb = if orphans.len() == 1 { "is" } else { "are" };
    Some(format!(
        "{} {verb} still running without a supervisor",
        describe(&orphans)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped: a zombie until `wait`. Poll /proc for the state change.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::yield_now();
        }
        drop(child);
    }

    #[test]
    fn a_stale_pidfile_is_not_a_running_game() {
        let dir = tempfile::tempdir().unwrap();
        let game = GameDir::new(dir.path());
        game.create_dirs().unwrap();
        // Our own pid: alive, but its command line does not name the game.
        game.write_pid("supervisor", std::process::id()).unwrap();
        game.write_pid("portal", std::process::id()).unwrap();
        assert_eq!(supervisor(&game), None);
        assert!(live(&game).is_empty());
        assert_eq!(orphan_note(&game), None);
    }

    #[test]
    fn describe_joins_names() {
        assert_eq!(describe(&[("portal", 1)]), "portal (pid 1)");
        assert_eq!(
            describe(&[("supervisor", 1), ("portal", 2), ("server", 3)]),
            "supervisor (pid 1), portal (pid 2) and server (pid 3)"
        );
    }
}
