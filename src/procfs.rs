//! What /proc says of a process: whether it lives, and its command line.
//! evctl, the supervisor and the tests all ask, of pids read from pidfiles.

/// Whether `pid` is a live process; a zombie counts as gone.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the command name, which may hold spaces and
            // parentheses: read it after the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            !matches!(state, "Z" | "X" | "x")
        }
        Err(_) => false,
    }
}

/// The process's arguments (empty if it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
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

/// How long `pid` has been running (None if it is gone). /proc counts in
/// USER_HZ, which is 100 on every architecture Linux has.
pub fn age(pid: u32) -> Option<std::time::Duration> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `starttime` is field 22; the fields after the command name start at 3.
    let start_ticks: u64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()?;
    let since_boot: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age = (since_boot - start_ticks as f64 / USER_HZ).max(0.0);
    Some(std::time::Duration::from_secs_f64(age))
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
        assert!(
            me + std::time::Duration::from_millis(20) >= young,
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
