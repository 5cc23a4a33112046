//! `ev-server`: the demo game. Its subcommands (`create-admin`,
//! `set-password`, `backup`, `restore`) are the runtime's, which evctl calls.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ev_server::main(ev_demo::Demo::default())
}
