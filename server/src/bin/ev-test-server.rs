//! `ev-test-server`: ev-server for the test suite only. It also honours
//! `EV_TEST_LINK_MAJOR` (the Link major claimed in its hello, to test
//! refusal) and `EV_TEST_VERSION` (what `version` prints, to prove that a
//! reload picked up a rebuilt binary). Never ship it.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use ev_server::{Cli, ServerOptions};

fn main() -> ExitCode {
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
    ev_server::execute(cli.command, options)
}
