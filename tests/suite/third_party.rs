use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Game, run, text};

#[test]
fn telnetlib3_logs_in_says_and_pings() {
    let probe = Command::new("python3")
        .args(["-c", "import telnetlib3"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 is needed for this test and could not run ({e}): install python3 and `python3 -m pip install telnetlib3`"
        ),
        Ok(out) if !out.status.success() => panic!(
            "the Python package telnetlib3 is missing: run `python3 -m pip install telnetlib3` (.ci/run does)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
    let game = Game::started();
    let addr = game.telnet_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/telnetlib3_login.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        text(&out)
    );
}
