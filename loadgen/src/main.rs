use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ev_loadgen::Cli::parse();
    let json = cli.common.json;
    match ev_loadgen::run(cli) {
        Ok(outcome) => {
            if json {
                eprintln!("{}", outcome.human);
                println!("{}", outcome.json);
            } else {
                println!("{}", outcome.human);
            }
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ev-loadgen: {e:#}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": format!("{e:#}") })
                );
            }
            ExitCode::from(1)
        }
    }
}
