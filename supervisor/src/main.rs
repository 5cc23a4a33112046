//! `ev-supervisor [--game-dir DIR] [--foreground]`: see the library docs.
//! Normally started by `evctl start`, which detaches it and points its
//! stderr at logs/supervisor.log.

use std::path::PathBuf;

use clap::Parser;
use ev::gamedir::GameDir;

#[derive(Parser)]
#[command(version, about = "Runs an ev game's portal and server")]
struct Args {
    /// The game directory (default: $EV_GAME_DIR, else the current directory).
    #[arg(short = 'g', long)]
    game_dir: Option<PathBuf>,
    /// Run attached to the terminal or a service manager (evctl detaches
    /// otherwise; the supervisor itself behaves the same).
    #[arg(long)]
    foreground: bool,
    /// Reload by itself when the server binary is rebuilt, for this run
    /// (as `server.auto_reload = true` in ev.toml would).
    #[arg(long)]
    watch: bool,
}

fn main() {
    let args = Args::parse();
    ev::logging::init("supervisor", 0);
    let options = ev_supervisor::Options {
        game: GameDir::resolve(args.game_dir),
        foreground: args.foreground,
        watch: args.watch,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(ev_supervisor::run(options)));
    if let Err(e) = result {
        eprintln!("ev-supervisor: {e:#}");
        std::process::exit(1);
    }
}
