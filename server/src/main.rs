//! `ev-server [--game-dir DIR] [create-admin NAME | set-password NAME]`: the
//! game process.
//! Everything but argument parsing lives in the `ev_server` library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use ev_server::{Cli, ServerOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match ServerOptions::from_env(cli.game_dir) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ev-server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    ev_server::execute(cli.command, options)
}
