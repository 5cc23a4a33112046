//! What the system says of a process, through `sysinfo` (the one way ev
//! inspects processes; the supervisor's status figures come from it too):
//! whether it lives, its command line, its age. evctl, the supervisor and
//! the tests all ask, of pids read from pidfiles.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sysinfo::{
    Pid, Process, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind,
};

/// Reads `pid` alone (never the whole process table) and asks `f` of it.
fn with<T>(pid: u32, kind: ProcessRefreshKind, f: impl FnOnce(&Process) -> T) -> Option<T> {
    let pid = Pid::from_u32(pid);
    let mut system = System::new();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
    system.process(pid).map(f)
}

/// Whether `pid` is a live process; a zombie counts as gone.
pub fn alive(pid: u32) -> bool {
    with(pid, ProcessRefreshKind::nothing(), |p| {
        !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
    })
    .unwrap_or(false)
}

/// The process's arguments (empty if it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    let kind = ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always);
    with(pid, kind, |p| {
        p.cmd()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    })
    .unwrap_or_default()
}

/// Whether `pid` is alive and was started with `root` as an argument
/// (`--game-dir ROOT`): a pidfile's pid reused by another program is not ours.
pub fn runs_in(pid: u32, root: &std::path::Path) -> bool {
    let root = root.to_string_lossy();
    alive(pid) && cmdline(pid).iter().any(|a| *a == *root)
}

/// How long `pid` has been running, to the second (None if it is gone).
pub fn age(pid: u32) -> Option<Duration> {
    let started = with(pid, ProcessRefreshKind::nothing(), Process::start_time)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(now.saturating_sub(Duration::from_secs(started)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_alive_and_run_our_own_command_line() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(!cmdline(me).is_empty());
        assert!(!runs_in(me, std::path::Path::new("/no/such/game")));
    }

    #[test]
    fn a_process_started_later_is_younger() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let (me, young) = (age(std::process::id()), age(child.id()));
        let _ = child.kill();
        let _ = child.wait();
        let (me, young) = (me.unwrap(), young.unwrap());
        assert!(young < std::time::Duration::from_secs(5), "{young:?}");
        // Ages are whole seconds.
        assert!(
            me + std::time::Duration::from_secs(1) >= young,
            "{me:?} < {young:?}"
        );
        assert_eq!(age(child.id()), None);
    }

    #[test]
    fn a_reaped_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(cmdline(pid).is_empty());
    }
}
