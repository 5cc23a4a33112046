//! `evctl systemd-unit [--user]`: a unit for this game, with this machine's
//! paths and user filled in. systemd/ev.service is the same template for
//! /srv/game and /usr/local/bin (a test keeps the two equal).

use std::path::Path;

use super::start::beside_me;
use super::{EXIT_OK, Failure, Outcome, say};
use crate::gamedir::GameDir;

/// Which systemd instance runs the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// /etc/systemd/system, run as `user`.
    System,
    /// ~/.config/systemd/user, the user's own manager.
    User,
}

pub fn run(game: &GameDir, manager: Manager) -> Outcome {
    let fail = |e: &dyn std::fmt::Display| Failure::new(format!("cannot write a unit: {e}"));
    game.check_exists().map_err(|e| fail(&e))?;
    let evctl = beside_me("evctl").map_err(|e| fail(&e))?;
    let root = std::path::absolute(game.root()).map_err(|e| fail(&e))?;
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "ev".to_owned(), |u| u.name);
    say(unit(manager, &evctl, &root, &user).trim_end())?;
    Ok(EXIT_OK)
}

/// The unit text.
pub fn unit(manager: Manager, evctl: &Path, game: &Path, user: &str) -> String {
    let (evctl, game) = (evctl.display(), game.display());
    let (install, who, where_) = match manager {
        Manager::System => (
            "# Copy to /etc/systemd/system/ev.service (evctl systemd-unit > …),\n\
             # then `systemctl enable --now ev`."
                .to_owned(),
            format!("User={user}\nGroup={user}\n"),
            "WantedBy=multi-user.target",
        ),
        Manager::User => (
            "# Copy to ~/.config/systemd/user/ev.service (evctl systemd-unit --user > …),\n\
             # then `systemctl --user enable --now ev`; `loginctl enable-linger` keeps it\n\
             # running while you are logged out."
                .to_owned(),
            String::new(),
            "WantedBy=default.target",
        ),
    };
    let sandbox = match manager {
        Manager::System => format!(
            "ProtectSystem=strict\n\
             ReadWritePaths={game}\n\
             ProtectHome=yes\n\
             PrivateTmp=yes\n\
             PrivateDevices=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectKernelModules=yes\n\
             ProtectKernelLogs=yes\n\
             ProtectControlGroups=yes\n\
             ProtectClock=yes\n\
             ProtectHostname=yes\n\
             ProtectProc=invisible\n\
             RestrictNamespaces=yes\n\
             RestrictRealtime=yes\n\
             RestrictSUIDSGID=yes\n\
             RemoveIPC=yes\n\
             CapabilityBoundingSet=\n\
             AmbientCapabilities=\n\
             DevicePolicy=closed\n\
             KeyringMode=private\n"
        ),
        // A user manager cannot make mount namespaces without user
        // namespaces, and a game kept in $HOME cannot hide $HOME
        // (ProtectHome): the user unit keeps to what needs neither.
        Manager::User => String::new(),
    };
    format!(
        "# ev: one game directory run by systemd.\n\
         {install}\n\
         [Unit]\n\
         Description=ev MUD (supervisor, portal and server) for {game}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         # Only the supervisor (the main pid) may notify; portal and server are not told.\n\
         NotifyAccess=main\n\
         {who}\
         Environment=EV_GAME_DIR={game}\n\
         # evctl execs the supervisor, so the main pid is the supervisor itself.\n\
         ExecStart={evctl} -g {game} start --foreground\n\
         # evctl waits for the reload and fails if it fails, so `systemctl reload`\n\
         # says so (the supervisor still sends RELOADING=1 and READY=1 itself).\n\
         ExecReload={evctl} -g {game} reload\n\
         # The supervisor pings only while it and the portal answer: a hung portal\n\
         # or supervisor is restarted. A hung server is the supervisor's to replace.\n\
         WatchdogSec=30\n\
         # Tells players, applies every input already received, then exits.\n\
         ExecStop={evctl} -g {game} stop\n\
         # SIGTERM only to the supervisor (it stops the rest in order); SIGKILL to all\n\
         # that is left after TimeoutStopSec.\n\
         KillMode=mixed\n\
         TimeoutStartSec=60\n\
         # Above ev.toml's supervisor.stop_timeout_ms (15 s by default) plus slack.\n\
         TimeoutStopSec=30\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         # Hardening: the game needs its directory, loopback and the network, and\n\
         # nothing else of the system (systemd/README.md records the score of\n\
         # `systemd-analyze security --offline=yes`).\n\
         NoNewPrivileges=yes\n\
         {sandbox}\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged\n\
         SystemCallErrorNumber=EPERM\n\
         UMask=0077\n\
         \n\
         [Install]\n\
         {where_}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_unit_is_the_template_for_srv_game() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/ev.service"),
        )
        .unwrap();
        let made = unit(
            Manager::System,
            Path::new("/usr/local/bin/evctl"),
            Path::new("/srv/game"),
            "ev",
        );
        assert_eq!(
            shipped, made,
            "systemd/ev.service differs from `evctl systemd-unit`'s template: write it anew"
        );
    }

    #[test]
    fn the_user_unit_runs_as_its_user_without_what_a_user_manager_cannot_do() {
        let text = unit(
            Manager::User,
            Path::new("/h/evctl"),
            Path::new("/h/game"),
            "pat",
        );
        assert!(
            !text.contains("User=") && !text.contains("ProtectHome"),
            "{text}"
        );
        assert!(text.contains("ExecStart=/h/evctl -g /h/game start --foreground"));
        assert!(text.contains("WantedBy=default.target"));
    }
}
