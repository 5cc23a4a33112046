//! `evctl init DIR [--telnet ADDR] [--web ADDR] [--admin NAME]`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use super::start::beside_me;
use super::{EXIT_OK, Failure, Outcome, password, say};
use crate::config::Config;
use crate::gamedir::GameDir;

/// The first line of a new ev.toml.
const HEADER: &str =
    "# ev game settings: every key with its default. Unknown keys are refused.\n\n";

pub fn run(
    dir: &Path,
    telnet: Option<SocketAddr>,
    web: Option<SocketAddr>,
    admin: Option<&str>,
) -> Outcome {
    let game = GameDir::new(dir);
    check(&game)?;
    let mut config = Config::default();
    if let Some(addr) = telnet {
        config.portal.telnet = addr;
    }
    if let Some(addr) = web {
        config.portal.web = addr;
    }
    // Everything that can be refused is asked before anything is written.
    let admin = match admin {
        Some(name) => {
            let server = beside_me("ev-server").map_err(|e| refused(&game, &e))?;
            Some(Admin::asked(name, server)?)
        }
        None => None,
    };
    create(&game, &config)?;
    say(format!(
        "created the game directory {}",
        game.root().display()
    ))?;
    if let Some(admin) = admin {
        create_admin(&game, admin)?;
    }
    say(next_steps(
        &config,
        &[format!("{} -g {} start", myself(), game.root().display())],
    ))?;
    Ok(EXIT_OK)
}

/// The account `create` makes, with the server binary whose
/// `create-admin` makes it.
pub(super) struct Admin {
    pub name: String,
    pub password: String,
    pub server: std::path::PathBuf,
}

impl Admin {
    /// The password from `EV_ADMIN_PASSWORD` or the terminal.
    pub fn asked(name: &str, server: std::path::PathBuf) -> Result<Admin, Failure> {
        Ok(Admin {
            name: name.to_owned(),
            password: password::admin_password(name)?,
            server,
        })
    }
}

/// `cannot init DIR: WHY`.
fn refused(game: &GameDir, why: &dyn std::fmt::Display) -> Failure {
    Failure::new(format!("cannot init {}: {why}", game.root().display()))
}

/// Whether `game` may be made: not a game already, socket paths short
/// enough. Writes nothing.
pub(super) fn check(game: &GameDir) -> Result<(), Failure> {
    if game.config_path().exists() {
        return Err(refused(game, &"already a game directory (ev.toml exists)"));
    }
    game.check_socket_paths().map_err(|e| refused(game, &e))
}

/// Writes `config` as the game's ev.toml and makes its directories.
pub(super) fn create(game: &GameDir, config: &Config) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| refused(game, e);
    std::fs::create_dir_all(game.root()).map_err(|e| fail(&e))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(game.config_path())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => fail(&"already a game directory (ev.toml exists)"),
            _ => fail(&format!("writing {}: {e}", game.config_path().display())),
        })?;
    file.write_all(format!("{HEADER}{}", config.to_toml()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(&format!("writing {}: {e}", game.config_path().display())))?;
    game.create_dirs().map_err(|e| fail(&e))
}

/// The admin account, made by the server binary's `create-admin`.
pub(super) fn create_admin(game: &GameDir, admin: Admin) -> Result<(), Failure> {
    let Admin {
        name,
        password,
        server,
    } = admin;
    let fail = |e: &dyn std::fmt::Display| refused(game, e);
    let status = std::process::Command::new(&server)
        .arg("--game-dir")
        .arg(game.root())
        .args(["create-admin", &name])
        .env("EV_ADMIN_PASSWORD", password)
        .env("EV_GAME_DIR", game.root())
        // The server's own line says what it created; its log lines
        // (migrations) are noise on an operator's terminal.
        .env("EV_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| fail(&format!("running {}: {e}", server.display())))?;
    if !status.success() {
        return Err(Failure::new(format!(
            "creating the admin account {name} failed: {} {status}",
            server.display()
        )));
    }
    Ok(())
}

/// What to type next: `start` (the commands given) and how to connect.
pub(super) fn next_steps(config: &Config, start: &[String]) -> String {
    let connect = match config.portal.telnet.port() {
        0 => "then connect to the telnet address `evctl start` prints".to_owned(),
        port => format!("telnet {} {port}", config.portal.telnet.ip()),
    };
    let mut text = "next:".to_owned();
    for line in start.iter().chain([&connect]) {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

/// How to run this evctl again: `evctl` if that is what PATH finds, else
/// the path it was run as (`target/debug/evctl` in a fresh clone).
pub(super) fn myself() -> String {
    let run_as = std::env::args().next().unwrap_or_else(|| "evctl".into());
    if run_as.contains('/') {
        run_as
    } else {
        "evctl".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_readable_config_and_refuses_to_overwrite_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("g");
        let telnet: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(run(&dir, Some(telnet), None, None).unwrap(), EXIT_OK);
        let text = std::fs::read_to_string(dir.join("ev.toml")).unwrap();
        assert!(text.starts_with("# ev game settings"), "{text}");
        let config = Config::parse(&text, &dir.join("ev.toml")).unwrap();
        assert_eq!(config.portal.telnet, telnet);
        for sub in ["data", "logs", "run"] {
            assert!(dir.join(sub).is_dir(), "{sub}");
        }
        let err = run(&dir, None, None, None).unwrap_err();
        assert!(
            err.message.contains("already a game directory"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(&*dir.to_string_lossy()),
            "{}",
            err.message
        );
    }

    #[test]
    fn too_long_a_path_names_the_socket_limit() {
        let long = format!("/tmp/{}", "x".repeat(120));
        let err = run(Path::new(&long), None, None, None).unwrap_err();
        assert!(
            err.message.contains("107-byte Unix socket limit"),
            "{}",
            err.message
        );
        assert!(!Path::new(&long).exists());
    }
}
