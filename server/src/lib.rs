//! ev-server: the runtime a game links against. It owns everything a
//! game should never have to think about: the Link to the long-lived portal
//! (which holds the players' connections), sessions and logins, the
//! database, exactly-once input and output across reloads and crashes,
//! password work off the game's thread, and the watchdogs. A game is a
//! [`Game`]: commands, hooks, out-of-band handlers and timers, each run with
//! a [`Context`] over the current transaction.
//!
//! # A game
//! ```no_run
//! use ev_server::{Context, Game, Result, Setup, Spec};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Game for Hello {
//!     fn setup(setup: &mut Setup<Self>) {
//!         setup.command(Spec::new("hello", "hello", "Be greeted."), Hello::hello);
//!     }
//! }
//!
//! impl Hello {
//!     fn hello(&mut self, cx: &mut Context, _: &str) -> Result<()> {
//!         cx.reply("{green}Hello!{/}");
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     ev_server::main(Hello)
//! }
//! ```
//! - Commands are declared by a [`Spec`] (name, aliases, where and by whom
//!   they run, help, which words are secret); help, prefix matching,
//!   permissions and keeping secrets out of logs follow from it. `create`,
//!   `connect`, `help`, `who`, `quit` and a few more are the runtime's; a
//!   game command of the same name replaces one.
//! - Everything a handler does through its [`Context`] (objects and their
//!   typed attributes, what it says to whom, the timers it schedules, the
//!   session's values) is committed together with the input, or not at
//!   all. A handler does no I/O and never blocks.
//! - Text is ev markup ([`markup`]): `{red}`, `{bold}`, `{/}`, and links
//!   (`{send:look cat}the cat{/}`, `{url:https://…}docs{/}`); the portal
//!   renders it for each client. Escape what players typed with
//!   [`markup::escape`]; build a link from words that are not yours with
//!   [`markup::send_link`].
//! - [`Timer`]s are stored with the transaction that made them and fire
//!   exactly once per due time, across reloads and crashes.
//! - Slow work ([`Setup::work`], [`Context::defer`]) runs on a thread of
//!   its own after the handler's commit; its result comes back to the game
//!   as an event, applied exactly once, across reloads and crashes.
//! - [`Game::migrations`] change the game's data once, in order, in the
//!   server that serves.
//! - `testkit` (feature `testkit`): the game in process with fake sessions,
//!   a hand-moved clock and reloads.
//!
//! # Layout (for the runtime's contributors)
//! ```text
//!  portal ══ Link (gRPC stream, run/portal.sock) ══ link ──Inbound──► engine ──► game (kernel ► Game)
//!                                                        ◄─Outbound──   │  ▲       │
//!                                                                       ▼  │       ▼
//!                                                        auth (blocking pool)    store (SQLite)
//! ```
//! - `link`: the only module that knows the protobuf types. Connects,
//!   exchanges hellos (refusal and major-version checks), then turns the
//!   stream into bounded channels of event batches.
//! - `event`: the domain side of the Link (`ev::link`'s types under the
//!   server's names) and the outbox rows.
//! - `engine`: the single task that owns the game and the store: group
//!   commit (a batch of events per transaction, replies released after the
//!   commit), password jobs off-thread, due timers, Drain, outbox pruning on
//!   the portal's Delivered, and the command watchdog (a thread that aborts
//!   the process when one transaction outlives `server.command_timeout_ms`).
//! - `game`: the kernel (sessions, exactly-once input, per-session ordering
//!   behind password work, logins, the runtime's commands) and the API a
//!   game sees: `api` (the trait, `Setup`), `context`, `objects` (the
//!   object cache), `timers`, `registry` (commands).
//! - `store`: SQLite (WAL): schema versions and migrations, accounts,
//!   characters, objects, attributes, timers, each session's last applied
//!   input seq, and the outbox: every sequenced event under its session's
//!   output seq, committed with the command that produced it, re-sent after
//!   a crash.
//! - `auth`: argon2id hashing and verification.
//! - `failpoint`: `EV_FAILPOINT` windows to crash in, for the test build.
//!
//! # Exactly once across a crash
//! Input: the last applied input seq per session is committed with the
//! command's effects; a replayed input at or below it is only acknowledged.
//! Output: each sequenced event is committed in the outbox in the same
//! transaction and sent after the commit; a Sync re-sends what is above the
//! portal's delivered mark (before anything new for that session), and the
//! portal drops what it already delivered. A timer's firing is deleted (or
//! moved to its next due time) in the transaction of its effects.
//!
//! # Exit codes
//! - 0: drained on the portal's request (or `create-admin` or
//!   `set-password` succeeded).
//! - 1: any error, including the portal going away without a Drain; a
//!   supervisor restarts the server.
//! - 2: the portal refused this server, or it speaks another Link major
//!   version; starting the same binary again would fail the same way.
//! - 4: the database cannot be written (read-only, no room): found before
//!   attaching, so a reload fails and the old server keeps serving; the
//!   supervisor does not count it towards the crash-loop limit.
//! - 5: a newer build migrated the database (the runtime's schema, or
//!   game migrations this build does not have): found before attaching;
//!   this build must not serve it.
#![forbid(unsafe_code)]

mod auth;
mod engine;
mod event;
pub mod failpoint;
mod game;
mod link;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ev::config::Config;
use ev::gamedir::GameDir;
use ev::version::{LINK_MAJOR, LINK_MINOR};

pub use engine::EngineError;
pub use ev::link::{PortalSession as Client, SessionId};
/// The markup a game writes its text in, rendered by the portal per client.
pub use ev::markup;
pub use failpoint::Failpoint;
pub use game::api::{CommandFn, Error, Game, Migration, OobFn, Result, Setup, ThenFn, TimerFn};
pub use game::context::{Context, MAX_SESSION_VALUES_BYTES};
pub use game::deferred::Finished;
pub use game::objects::ObjectId;
pub use game::timers::{Fired, Missed, Timer};
pub use game::{Level, Login, Place, Spec, name_list, sort_names};
pub use link::LinkError;
pub use store::{SCHEMA_VERSION, StoreError};

/// Allocations of this size and up (a password hash's memory) get mappings
/// of their own, returned to the system when freed.
const HASH_MAPPED_FROM: usize = 1024 * 1024;

/// How long a drained server waits for the portal to close the stream, so
/// its last messages are delivered before the process exits.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Everything `run` needs besides `ev.toml`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub game_dir: GameDir,
    /// Which server this is, from the supervisor (`EV_GENERATION`); 0 by hand.
    pub generation: u64,
    /// Reported in the hello and by `version` (`EV_BUILD_ID`).
    pub build_id: String,
    /// The Link major version claimed in the hello. Always [`LINK_MAJOR`]
    /// except in the test build, which lies to test the portal's refusal.
    pub link_major: u32,
    /// Replaces what `version` prints (test build only: proves which binary
    /// a reload picked up).
    pub version_text: Option<String>,
    /// Where to crash on purpose (test build only, from `EV_FAILPOINT`).
    pub failpoint: Option<Failpoint>,
    /// Enables `@crash` and `@hang` (test build only).
    pub test_commands: bool,
    /// While this file exists, database writes fail as on a disk that
    /// refuses them (test build only, from `EV_STORAGE_FAULT`).
    pub storage_fault: Option<PathBuf>,
    /// Abort this long after attaching: a build that crashes soon after it
    /// takes over (test build only, from `EV_TEST_CRASH_AFTER_MS`).
    pub crash_after: Option<Duration>,
    /// Record a game migration of this version, which no build has, before
    /// attaching: a build that migrated the database past the builds before
    /// it (test build only, from `EV_TEST_MIGRATE_PAST`).
    pub migrate_past: Option<i64>,
}

impl ServerOptions {
    /// The production options: game directory from the flag, else
    /// `EV_GAME_DIR`, else the current directory; generation and build id
    /// from the environment.
    pub fn from_env(game_dir: Option<PathBuf>) -> anyhow::Result<ServerOptions> {
        let generation = match std::env::var("EV_GENERATION") {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("EV_GENERATION must be a whole number, not {text:?}"))?,
            Err(_) => 0,
        };
        Ok(ServerOptions {
            game_dir: GameDir::resolve(game_dir),
            generation,
            build_id: std::env::var("EV_BUILD_ID").unwrap_or_else(|_| "dev".into()),
            link_major: LINK_MAJOR,
            version_text: None,
            failpoint: None,
            test_commands: false,
            storage_fault: None,
            crash_after: None,
            migrate_past: None,
        })
    }

    fn version_line(&self) -> String {
        self.version_text.clone().unwrap_or_else(|| {
            format!(
                "ev-server {} (build {}, link {}.{})",
                env!("CARGO_PKG_VERSION"),
                self.build_id,
                self.link_major,
                LINK_MINOR
            )
        })
    }
}

/// The command line shared by `ev-server` and `ev-test-server`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "ev-server",
    version,
    about = "The ev game server: attaches to the portal and runs the game"
)]
pub struct Cli {
    /// The game directory [default: $EV_GAME_DIR, else the current directory]
    #[arg(long, short = 'g', global = true, value_name = "DIR")]
    pub game_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an admin account and its character (password from $EV_ADMIN_PASSWORD)
    CreateAdmin { name: String },
    /// Copy the game database to FILE, consistently, while the game runs
    Backup { file: PathBuf },
    /// Put the backup FILE in place of the game database (the game must be stopped)
    Restore { file: PathBuf },
    /// Set the password of the account NAME (from $EV_NEW_PASSWORD). Safe
    /// while the game runs: the server reads the hash at each login.
    SetPassword { name: String },
}

/// A game binary's whole `main`: parses the command line (the runtime's
/// subcommands included, which `evctl` calls) and runs `game`.
///
/// ```no_run
/// # #[derive(Default)] struct MyGame;
/// # impl ev_server::Game for MyGame { fn setup(_: &mut ev_server::Setup<Self>) {} }
/// fn main() -> std::process::ExitCode {
///     ev_server::main(MyGame::default())
/// }
/// ```
pub fn main<G: Game>(game: G) -> ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    match ServerOptions::from_env(cli.game_dir) {
        Ok(options) => execute(cli.command, options, game),
        Err(e) => {
            eprintln!("ev-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole `main` of a game's test-suite build (`ev-test-server`), with
/// the test build's knobs from the environment: `EV_TEST_LINK_MAJOR` (the
/// Link major claimed in the hello, to test refusal), `EV_TEST_VERSION`
/// (what `version` prints, to prove a reload picked up a new binary),
/// `EV_FAILPOINT=NAME[:N]` (abort in a chosen window of the exactly-once
/// protocol), `EV_STORAGE_FAULT=PATH` (while that file exists, commits fail
/// as on a disk that refuses writes), and the `@crash` and `@hang` commands.
/// Never ship it.
#[cfg(feature = "test-build")]
pub fn test_main<G: Game>(game: G) -> ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    let mut options = match ServerOptions::from_env(cli.game_dir) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ev-test-server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(major) = std::env::var("EV_TEST_LINK_MAJOR") {
        match major.trim().parse() {
            Ok(major) => options.link_major = major,
            Err(_) => {
                eprintln!("ev-test-server: EV_TEST_LINK_MAJOR must be a number, not {major:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    options.version_text = std::env::var("EV_TEST_VERSION").ok();
    if let Ok(text) = std::env::var("EV_FAILPOINT") {
        match text.parse() {
            Ok(failpoint) => options.failpoint = Some(failpoint),
            Err(e) => {
                eprintln!("ev-test-server: EV_FAILPOINT: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    options.storage_fault = std::env::var_os("EV_STORAGE_FAULT").map(Into::into);
    for (var, slot) in [
        (
            "EV_TEST_CRASH_AFTER_MS",
            &mut options.crash_after as &mut dyn TestKnob,
        ),
        ("EV_TEST_MIGRATE_PAST", &mut options.migrate_past),
    ] {
        if let Ok(text) = std::env::var(var)
            && !slot.set(text.trim())
        {
            eprintln!("ev-test-server: {var} must be a whole number, not {text:?}");
            return ExitCode::FAILURE;
        }
    }
    options.test_commands = true;
    execute(cli.command, options, game)
}

/// A test build knob read from the environment: false if `text` is not
/// what it takes.
#[cfg(feature = "test-build")]
trait TestKnob {
    fn set(&mut self, text: &str) -> bool;
}

#[cfg(feature = "test-build")]
impl TestKnob for Option<Duration> {
    fn set(&mut self, text: &str) -> bool {
        text.parse()
            .map(|ms| *self = Some(Duration::from_millis(ms)))
            .is_ok()
    }
}

#[cfg(feature = "test-build")]
impl TestKnob for Option<i64> {
    fn set(&mut self, text: &str) -> bool {
        text.parse().map(|v| *self = Some(v)).is_ok()
    }
}

/// Runs what the command line asked for and maps the outcome to an exit code.
pub fn execute<G: Game>(command: Option<Command>, options: ServerOptions, game: G) -> ExitCode {
    ev::logging::init("server", options.generation);
    // Each password hash takes `auth.argon2_memory_kib` (19 MiB) and frees
    // it. glibc would raise its mmap threshold after the first free and keep
    // the next hashes in the heaps of whichever blocking thread ran them: a
    // login flood left the server at 466 MiB for two workers. With the
    // threshold fixed, a hash's memory leaves RSS when the hash is done.
    ev::sys::unmap_large_frees(HASH_MAPPED_FROM);
    match command {
        None => {
            // One thread: the engine applies every batch on it anyway, and
            // the Link's tasks only hand batches to it and back. Two
            // workers woke each other for each command; on two cores one
            // thread did 10% more commands a second for 23% less CPU each,
            // and cut the round trip's p99 at 1,000 sessions (BENCHMARKS.md).
            // Password hashes and deferred work still run on blocking threads.
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .and_then(|rt| {
                    let outcome = rt.block_on(run(options, game));
                    rt.shutdown_timeout(CLOSE_GRACE);
                    outcome
                });
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(exit_code(&e))
                }
            }
        }
        Some(Command::CreateAdmin { name }) => {
            let outcome = std::env::var(ev::ctl::ADMIN_PASSWORD_VAR)
                .context("set EV_ADMIN_PASSWORD to the new admin's password")
                .and_then(|password| create_admin(&options.game_dir, &name, &password));
            one_shot("create-admin", outcome)
        }
        Some(Command::SetPassword { name }) => {
            let outcome = std::env::var(ev::ctl::NEW_PASSWORD_VAR)
                .context("set EV_NEW_PASSWORD to the account's new password")
                .and_then(|password| set_password(&options.game_dir, &name, &password));
            one_shot("set-password", outcome)
        }
        Some(Command::Backup { file }) => one_shot("backup", backup(&options.game_dir, &file)),
        Some(Command::Restore { file }) => one_shot("restore", restore(&options.game_dir, &file)),
    }
}

/// A subcommand's outcome: its line on stdout, or its error on stderr.
fn one_shot(what: &str, outcome: anyhow::Result<String>) -> ExitCode {
    match outcome {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ev-server: {what} failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The game's database file, from ev.toml.
fn database_path(game_dir: &GameDir) -> anyhow::Result<PathBuf> {
    game_dir.check_exists()?;
    let config = Config::load(&game_dir.config_path())?;
    Ok(game_dir.root().join(&config.database.path))
}

/// `backup FILE`: a consistent copy while the game may run.
pub fn backup(game_dir: &GameDir, file: &std::path::Path) -> anyhow::Result<String> {
    let db = database_path(game_dir)?;
    store::backup::backup(&db, file)?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or_default();
    Ok(format!(
        "backed up {} to {} ({} KiB)",
        db.display(),
        file.display(),
        size.div_ceil(1024)
    ))
}

/// `restore FILE`: the backup in place of the database (evctl checks that
/// the game is stopped first).
pub fn restore(game_dir: &GameDir, file: &std::path::Path) -> anyhow::Result<String> {
    let db = database_path(game_dir)?;
    let version = store::backup::check(file)?;
    let kept = store::backup::restore(file, &db)?;
    let kept = match kept {
        Some(path) => format!("; the database it replaced is kept as {}", path.display()),
        None => String::new(),
    };
    Ok(format!(
        "restored {} (schema version {version}) as {}{kept}",
        file.display(),
        db.display()
    ))
}

/// The exit code for a storage that cannot be written (see the crate docs).
pub const EXIT_UNWRITABLE: u8 = 4;

/// The exit code for a database a newer build migrated (its runtime schema
/// or the game's own migrations): starting this build again fails the same
/// way, so a supervisor must not fall back to it.
pub const EXIT_TOO_OLD: u8 = 5;

/// 2 when the portal refused this server or speaks another Link major, 4
/// when the database cannot be written (found before attaching, or a
/// storage outage mid-batch), 5 when a newer build migrated it, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let store =
        error
            .downcast_ref::<StoreError>()
            .or_else(|| match error.downcast_ref::<EngineError>() {
                Some(EngineError::Store(e)) => Some(e),
                _ => None,
            });
    match store {
        Some(StoreError::Unwritable { .. }) => return EXIT_UNWRITABLE,
        Some(StoreError::SchemaTooNew { .. } | StoreError::GameTooNew { .. }) => {
            return EXIT_TOO_OLD;
        }
        // Storage failed in the middle of the game's work: the disk's
        // fault, not the build's, so no supervisor blames the build.
        Some(e) if e.is_outage() => return EXIT_UNWRITABLE,
        _ => {}
    }
    match error.downcast_ref::<LinkError>() {
        Some(e) if e.is_refusal() => 2,
        _ => 1,
    }
}

/// Loads the game, attaches to the portal and serves until drained (Ok) or
/// the portal goes away (Err).
pub async fn run<G: Game>(options: ServerOptions, game: G) -> anyhow::Result<()> {
    let game_dir = &options.game_dir;
    game_dir.check_exists()?;
    let config = Config::load(&game_dir.config_path())?;
    let store = store::Store::open(
        &game_dir.root().join(&config.database.path),
        config.database.synchronous,
    )?
    .with_fault(options.storage_fault.clone());
    // Before attaching: a server that could not write must fail its reload
    // (the old one keeps serving), not crash at its first commit.
    store.preflight(config.database.min_free_mb.saturating_mul(1 << 20))?;
    // An older build must not serve a world a newer one migrated.
    let mut known: Vec<i64> = G::migrations().iter().map(|m| m.version).collect();
    if let Some(version) = options.migrate_past {
        store.record_game_migration(version, "a newer build's (test)")?;
        known.push(version);
    }
    store.check_game_migrations(&known)?;
    let hasher = auth::Hasher::new(&config.auth)?;
    let mut game = game::Kernel::new(
        game,
        game::Rules {
            game_name: config.game.name.clone(),
            max_name_len: config.auth.max_name_len,
            min_password_len: config.auth.min_password_len,
            login: game::Limits::from_config(&config.auth),
            version: options.version_line(),
            test_commands: options.test_commands,
            crowd_size: config.game.crowd_size,
        },
    );
    // The world is read before attaching: a reload's new server reads it
    // while the old one still serves, and is promoted only once it has,
    // so the dark time only catches up on what changed since.
    game.limit_deferred(config.server.max_deferred);
    game.preload(&store);
    let hello = ev::link::ServerHello {
        major: options.link_major,
        minor: LINK_MINOR,
        build_id: options.build_id.clone(),
        generation: options.generation,
        pid: std::process::id(),
    };
    let link = link::Link::attach(
        &game_dir.link_socket(),
        hello,
        Duration::from_millis(config.server.start_timeout_ms),
    )
    .await?;
    tracing::info!(
        role = ?link.role,
        portal_version = link.portal_version,
        portal_build = link.portal_build,
        build = options.build_id,
        "attached to the portal"
    );
    if let Some(failpoint) = &options.failpoint {
        tracing::warn!(%failpoint, "failpoint armed");
    }
    if let Some(after) = options.crash_after {
        tracing::warn!(
            "crashing {} ms after attaching, as asked",
            after.as_millis()
        );
        std::thread::spawn(move || {
            std::thread::sleep(after);
            std::process::abort();
        });
    }
    let watchdog = engine::Watchdog::aborting(
        Duration::from_millis(config.server.command_timeout_ms),
        game.redactor(),
    )
    .context("starting the command watchdog")?;
    let workers = config.auth.workers();
    let mut engine = engine::Engine::new(
        game,
        store,
        auth::Pool::new(hasher, workers),
        workers + config.auth.password_queue,
        config.server.max_batch,
        Duration::from_millis(config.auth.failure_delay_ms),
    )
    .with_deferred_workers(config.server.deferred_workers)
    .with_failpoint(options.failpoint.clone())
    .with_watchdog(watchdog)
    .with_retry_max(Duration::from_millis(config.database.retry_max_ms));
    engine.serve(link.inbound, link.outbound).await?;
    // Drained: the process exits next, and the system takes the world back
    // at once. Freeing it object by object (tens of milliseconds for a big
    // world) would take a core from the new server while it restores the
    // players, inside the reload's dark time. Everything was committed.
    std::mem::forget(engine);
    link.closed.wait(CLOSE_GRACE).await;
    Ok(())
}

/// Creates an admin account and its character; returns the line to print.
pub fn create_admin(game_dir: &GameDir, name: &str, password: &str) -> anyhow::Result<String> {
    game_dir.check_exists()?;
    let config = Config::load(&game_dir.config_path())?;
    let (max, min) = (config.auth.max_name_len, config.auth.min_password_len);
    if !game::valid_name(name, max) {
        bail!("names are 2-{max} letters, A to Z only, not {name:?}");
    }
    check_password(password, min)?;
    let mut store = store::Store::open(
        &game_dir.root().join(&config.database.path),
        config.database.synchronous,
    )?;
    store.migrate()?;
    let hash = auth::Hasher::new(&config.auth)?.hash(password)?;
    let tx = store.begin()?;
    // Placed at the game's start location at its first login.
    let ch = match tx.create_account(name, &hash, game::Level::Admin.as_i64(), None) {
        Ok(ch) => ch,
        Err(store::CreateError::Taken) => bail!("the name {name} is taken"),
        Err(store::CreateError::Store(e)) => return Err(e.into()),
    };
    tx.commit()?;
    Ok(format!(
        "created admin {name} (account {}, character {})",
        ch.account_id, ch.id
    ))
}

/// What `create` asks of a password, and no whitespace: `connect` splits
/// its arguments on it, so such a password could never be typed.
fn check_password(password: &str, min: usize) -> anyhow::Result<()> {
    if password.chars().count() < min || password.chars().any(char::is_whitespace) {
        bail!("passwords need at least {min} characters and no spaces");
    }
    Ok(())
}

/// Sets the password of the account `name` (any case); returns the line to
/// print. Works on a stopped game and beside a running server: SQLite lets
/// this second writer in (each waits out the other's short transaction), the
/// running server reads the hash at each login, and the write changes no row
/// id or seq that the server's retry of a failed commit checks. It migrates
/// nothing (a standby may be waiting to), and logs in no one: sessions
/// already in play stay.
pub fn set_password(game_dir: &GameDir, name: &str, password: &str) -> anyhow::Result<String> {
    game_dir.check_exists()?;
    let config = Config::load(&game_dir.config_path())?;
    check_password(password, config.auth.min_password_len)?;
    let path = game_dir.root().join(&config.database.path);
    if !path.is_file() {
        bail!(
            "there is no database at {} yet (the game has never started), so no account named {name}",
            path.display()
        );
    }
    let mut store = store::Store::open(&path, config.database.synchronous)?;
    // Hashed before the transaction, which then holds the write lock only
    // for one UPDATE.
    let hash = auth::Hasher::new(&config.auth)?.hash(password)?;
    let tx = store.begin()?;
    let Some(stored) = tx.set_password(name, &hash)? else {
        bail!("there is no account named {name}");
    };
    tx.commit()?;
    Ok(format!("set the password of {stored}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    /// The supervisor reads these: 4 is the disk's fault (never a crash
    /// loop, never a fallback), 5 refuses a fallback to this build.
    #[test]
    fn exit_codes_tell_the_disk_from_the_build() {
        let full = anyhow::Error::from(EngineError::Store(sqlite(rusqlite::ffi::SQLITE_FULL)));
        assert_eq!(exit_code(&full), EXIT_UNWRITABLE);
        let newer = anyhow::Error::from(StoreError::GameTooNew {
            path: "game.db".into(),
            found: 9,
            known: 3,
        });
        assert_eq!(exit_code(&newer), EXIT_TOO_OLD);
        let corrupt =
            anyhow::Error::from(EngineError::Store(sqlite(rusqlite::ffi::SQLITE_CORRUPT)));
        assert_eq!(exit_code(&corrupt), 1);
    }
}
