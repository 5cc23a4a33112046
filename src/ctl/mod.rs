//! evctl: the operator's command line. `src/bin/evctl.rs` only calls [`main`].
//!
//! # Layout
//! - this module: the arguments (clap), dispatch, exit codes and how
//!   failures are printed.
//! - `init`: a new game directory (and its admin account).
//! - `new`: a game crate of your own on ev's runtime, built, with a game
//!   directory that reloads on each `cargo build` (through `init`).
//! - `start`, `stop`, `reload`, `status`: the supervisor's life, through its
//!   Control service (`client`).
//! - `probe`: is a supervisor running for this game, and which pids live.
//! - `logs`: the last lines of the logs.
//! - `systemd`: the unit `evctl systemd-unit` prints (and systemd/ev.service).
//! - `backup`: `backup` and `restore`, through the server binary's own
//!   subcommands.
//! - `passwd`: an account's new password, through `ev-server set-password`.
//! - `password`: reading a password from the terminal without echo.
//!
//! # Exit codes
//! - `0`: success (also `evctl stop` when nothing was running).
//! - `1`: failure; the reason is printed on one line as `evctl: <what>: <why>`.
//! - `2`: usage error (from clap).
//! - `3`: not running (`status`, `reload`), as `systemctl status` does.
//! - `4`: `status` only: running, but the server is down and not being
//!   restarted (a crash loop): players are connected to a game that answers
//!   nothing. A monitoring check must not read that as healthy.

mod backup;
mod client;
mod init;
mod logs;
mod new;
mod passwd;
mod password;
pub use password::{ADMIN_PASSWORD_VAR, NEW_PASSWORD_VAR, PASSWORD_VARS};
mod probe;
mod reload;
mod start;
mod status;
mod stop;
mod systemd;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::gamedir::GameDir;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NOT_RUNNING: i32 = 3;
pub const EXIT_SERVER_DOWN: i32 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "evctl",
    version,
    about = "Controls an ev game: new, init, start, stop, reload, status, logs, passwd"
)]
struct Cli {
    /// The game directory (default: $EV_GAME_DIR, else the current directory).
    #[arg(short = 'g', long, global = true, value_name = "DIR")]
    game_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a game directory: ev.toml with every default, data/, logs/, run/.
    Init {
        dir: PathBuf,
        #[command(flatten)]
        listeners: init::Listeners,
        /// Turn on telnet over TLS with a self-signed certificate made now
        /// (GAME/tls/cert.pem, key.pem): on the telnet host, port 4003
        /// (0 if telnet's is 0), or on `--tls=HOST:PORT`.
        #[arg(long, value_name = "ADDR", value_parser = listen_addr, num_args = 0..=1, require_equals = true)]
        tls: Option<Option<SocketAddr>>,
        /// Create an admin account NAME; the password comes from
        /// EV_ADMIN_PASSWORD or is asked for on the terminal.
        #[arg(long, value_name = "NAME")]
        admin: Option<String>,
    },
    /// Make a game of your own: a Rust crate on ev's runtime, built, and its game directory.
    ///
    /// The crate goes in DIR (default ./NAME) and depends on ev-server by
    /// path to the ev checkout this evctl was built from. evctl builds it
    /// with `cargo build` (the first build takes minutes), then makes the
    /// game directory DIR/game as `evctl init` does, with server.binary at
    /// that build and server.auto_reload on: each later `cargo build`
    /// reloads the running game.
    ///
    /// Without --telnet and --web the game listens on 127.0.0.1:4000 and
    /// 4001, as the demo does; if either is in use when evctl new runs,
    /// on the first pair of 4010/4011, 4020/4021, ... that is free. It says
    /// which at the end.
    New {
        /// The game's name, which is its crate's (e.g. my-game).
        #[arg(value_parser = new::crate_name)]
        name: String,
        /// Where to make the crate (default: ./NAME); must not exist or be empty.
        dir: Option<PathBuf>,
        #[command(flatten)]
        listeners: init::Listeners,
        /// Create an admin account NAME; the password comes from
        /// EV_ADMIN_PASSWORD or is asked for on the terminal (before the build).
        #[arg(long, value_name = "NAME")]
        admin: Option<String>,
    },
    /// Start the game; returns once players can connect.
    Start {
        /// Run the supervisor in this process (for systemd) instead of detached.
        #[arg(long)]
        foreground: bool,
        /// Reload whenever the server binary is rebuilt, for this run only
        /// (`server.auto_reload` without editing ev.toml).
        #[arg(long)]
        watch: bool,
    },
    /// Stop the game; returns once every process is gone.
    Stop,
    /// Start a new server from the binary on disk and hand every session over.
    Reload,
    /// Copy the game database while the game runs (default: backups/game-DATE.db).
    Backup { file: Option<PathBuf> },
    /// Put a backup in place of the database of a stopped game (the old one is kept).
    Restore { file: PathBuf },
    /// Print a systemd unit for this game, with this machine's paths and user.
    SystemdUnit {
        /// A unit for your own systemd (`systemctl --user`), not the system's.
        #[arg(long)]
        user: bool,
    },
    /// Show the processes and their figures.
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set the password of an account, e.g. a lost admin's; the game may be
    /// running. The password comes from EV_NEW_PASSWORD or is asked for
    /// twice on the terminal.
    Passwd {
        /// The account's name.
        name: String,
    },
    /// Print the last lines of the logs.
    Logs {
        /// Only this process's log.
        #[arg(value_enum)]
        process: Option<logs::Process>,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Then print lines as they are written, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

/// `HOST:PORT` as an address to listen on: an IP address as it is, a host
/// name resolved (IPv4 first), and a message saying which part is wrong.
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} is not HOST:PORT (e.g. 127.0.0.1:4000)"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("the port {port:?} is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve {host:?}: {e}; use an IP address"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{host:?} has no address; use an IP address"))
}

/// Why a command failed, and with which exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    /// One line, no trailing period; printed as `evctl: <message>`.
    /// Empty: exit quietly (stdout was closed under us).
    pub message: String,
    /// Printed after the message, one per line (log lines, already indented).
    pub details: Vec<String>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn not_running(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_NOT_RUNNING,
            ..Failure::new(message)
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Failure {
        self.details = details;
        self
    }

    /// A reader that went away (`evctl status | head -1`) is not an error.
    fn broken_pipe() -> Failure {
        Failure {
            code: EXIT_OK,
            message: String::new(),
            details: Vec::new(),
        }
    }
}

pub type Outcome = Result<i32, Failure>;

/// Prints to stdout; a closed stdout ends the command quietly.
pub fn say(text: impl AsRef<str>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{}", text.as_ref()).and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::broken_pipe()),
        Err(e) => Err(Failure::new(format!("writing to stdout: {e}"))),
    }
}

/// The game's settings, or the defaults if ev.toml cannot be read: commands
/// that stop or inspect a game must work even with a broken ev.toml.
fn config_or_default(game: &GameDir) -> Config {
    Config::load(&game.config_path()).unwrap_or_default()
}

/// A directory without ev.toml, as a usage error that says how to make one.
fn not_a_game(game: &GameDir) -> Failure {
    let message = match game.check_exists() {
        Err(e) => e.to_string(),
        Ok(()) => format!("{} is a game directory", game.root().display()),
    };
    Failure {
        code: EXIT_USAGE,
        ..Failure::new(message)
    }
}

/// Parses the arguments, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    let game = GameDir::resolve(cli.game_dir);
    let outcome = match cli.command {
        // A typo'd -g must not read as "ev is not running". A game whose
        // ev.toml went away while it runs can still be seen and stopped.
        Command::Stop | Command::Reload | Command::Status { .. } | Command::Passwd { .. }
            if probe::supervisor(&game).is_none() && game.check_exists().is_err() =>
        {
            Err(not_a_game(&game))
        }
        Command::Init {
            dir,
            listeners,
            tls,
            admin,
        } => init::run(&dir, listeners, tls, admin.as_deref()),
        Command::New {
            name,
            dir,
            listeners,
            admin,
        } => new::run(&name, dir.as_deref(), listeners, admin.as_deref()),
        Command::Start { foreground, watch } => start::run(&game, foreground, watch),
        Command::Logs {
            process,
            lines,
            follow,
        } => logs::run(&game, process, lines, follow),
        Command::Backup { .. } | Command::Restore { .. } if game.check_exists().is_err() => {
            Err(not_a_game(&game))
        }
        Command::Backup { file } => backup::backup(&game, file),
        Command::SystemdUnit { user } => systemd::run(
            &game,
            if user {
                systemd::Manager::User
            } else {
                systemd::Manager::System
            },
        ),
        Command::Restore { file } => backup::restore(&game, &file),
        Command::Passwd { name } => passwd::run(&game, &name),
        command => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(async {
                match command {
                    Command::Stop => stop::run(&game).await,
                    Command::Reload => reload::run(&game).await,
                    Command::Status { json } => status::run(&game, json).await,
                    _ => Err(Failure::new("internal error: command not dispatched")),
                }
            }),
            Err(e) => Err(Failure::new(format!("starting the async runtime: {e}"))),
        },
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            if !failure.message.is_empty() {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "evctl: {}", failure.message);
                for line in &failure.details {
                    let _ = writeln!(err, "{line}");
                }
            }
            failure.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn game_dir_is_global_and_logs_defaults_to_50_lines() {
        let cli = Cli::try_parse_from(["evctl", "logs", "-g", "/tmp/x"]).unwrap();
        assert_eq!(cli.game_dir, Some(PathBuf::from("/tmp/x")));
        match cli.command {
            Command::Logs { process, lines, .. } => {
                assert!(process.is_none());
                assert_eq!(lines, 50);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listen_addresses_resolve_names_and_say_what_is_wrong() {
        assert_eq!(
            listen_addr("127.0.0.1:4000").unwrap(),
            "127.0.0.1:4000".parse().unwrap()
        );
        assert_eq!(
            listen_addr("[::1]:4000").unwrap(),
            "[::1]:4000".parse().unwrap()
        );
        assert_eq!(
            listen_addr("localhost:4000").unwrap().port(),
            4000,
            "localhost resolves"
        );
        assert!(listen_addr("localhost:4000").unwrap().ip().is_loopback());
        let err = listen_addr("127.0.0.1:99999").unwrap_err();
        assert!(err.contains("0 to 65535"), "{err}");
        let err = listen_addr("4000").unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn tls_takes_an_address_only_after_an_equals_sign() {
        let tls = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Init { dir, tls, .. } => (dir, tls),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            tls(&["evctl", "init", "--tls", "/tmp/x"]),
            ("/tmp/x".into(), Some(None))
        );
        assert_eq!(
            tls(&["evctl", "init", "/tmp/x", "--tls=127.0.0.1:4443"]),
            (
                "/tmp/x".into(),
                Some(Some("127.0.0.1:4443".parse().unwrap()))
            )
        );
        assert_eq!(tls(&["evctl", "init", "/tmp/x"]).1, None);
    }

    #[test]
    fn new_takes_a_name_and_refuses_a_bad_one_as_a_usage_error() {
        let cli = Cli::try_parse_from(["evctl", "new", "my-game"]).unwrap();
        match cli.command {
            Command::New {
                name,
                dir,
                listeners,
                ..
            } => {
                assert_eq!(name, "my-game");
                assert_eq!(dir, None);
                assert_eq!(listeners, init::Listeners::default());
            }
            other => panic!("{other:?}"),
        }
        let err = Cli::try_parse_from(["evctl", "new", "My Game"]).unwrap_err();
        assert!(err.use_stderr());
        assert!(err.to_string().contains("lower-case"), "{err}");
    }

    /// `new` takes init's address flags, the same way.
    #[test]
    fn new_and_init_take_the_same_listener_flags() {
        let flags = ["--telnet", "127.0.0.1:5000", "--web", "localhost:5001"];
        let expected = init::Listeners {
            telnet: Some("127.0.0.1:5000".parse().unwrap()),
            web: Some("127.0.0.1:5001".parse().unwrap()),
        };
        let new = Cli::try_parse_from(["evctl", "new", "my-game", "/tmp/g"].iter().chain(&flags));
        match new.unwrap().command {
            Command::New { listeners, dir, .. } => {
                assert_eq!(listeners, expected);
                assert_eq!(dir, Some("/tmp/g".into()));
            }
            other => panic!("{other:?}"),
        }
        let init = Cli::try_parse_from(["evctl", "init", "/tmp/g"].iter().chain(&flags));
        match init.unwrap().command {
            Command::Init { listeners, .. } => assert_eq!(listeners, expected),
            other => panic!("{other:?}"),
        }
        let err = Cli::try_parse_from(["evctl", "new", "g", "--web", "nope"]).unwrap_err();
        assert!(err.use_stderr());
        assert!(err.to_string().contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn a_bad_address_is_a_usage_error() {
        let err = Cli::try_parse_from(["evctl", "init", "/tmp/x", "--telnet", "nope"]).unwrap_err();
        assert!(err.use_stderr());
    }
}
