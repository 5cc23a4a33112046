//! `ev-test-server`: ev-server for the test suite only. It also honours
//! `EV_TEST_LINK_MAJOR` (the Link major claimed in its hello, to test
//! refusal), `EV_TEST_VERSION` (what `version` prints, to prove that a
//! reload picked up a rebuilt binary) and `EV_FAILPOINT=NAME[:N]` (abort in
//! a chosen window of the exactly-once protocol: `after_commit`,
//! `after_output`, `mid_batch`), `EV_STORAGE_FAULT=PATH` (while that file
//! exists, database commits fail with an I/O error, or the start of each
//! transaction if the file says `begin`, and a new server refuses to attach
//! as if the disk could not be written), and it knows two commands players must
//! never have: `@crash` (abort at once) and `@hang` (block the engine until
//! the command watchdog aborts the server). Never ship it.
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
    options.test_commands = true;
    ev_server::execute(cli.command, options)
}
