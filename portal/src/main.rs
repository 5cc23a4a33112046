use std::path::PathBuf;

use clap::Parser;

/// The ev portal: holds player connections while servers come and go.
/// Normally started by the supervisor (`evctl start`).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Game directory (default: $EV_GAME_DIR, else the current directory).
    #[arg(short = 'g', long)]
    game_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // A released MCCP2 compressor's buffers (33 KiB and up) must leave RSS.
    ev::sys::unmap_large_frees(32 * 1024);
    ev::logging::init("portal", 0);
    let game = ev::gamedir::GameDir::resolve(args.game_dir);
    let result = ev::config::Config::load(&game.config_path())
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            ev_portal::runtime(config.portal.threads)?.block_on(ev_portal::run(
                game,
                config,
                ev_portal::signals(),
            ))
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ev-portal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
