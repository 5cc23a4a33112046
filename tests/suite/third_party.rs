use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Game, PASSWORD, run, text};

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

/// tintin++, driven by a script of triggers, in a pseudo-terminal (`script`):
/// it takes MCCP2, logs in, pings, quits, shows every line the game sent,
/// the goodbye included, and reads the zlib stream's end as an orderly one.
#[test]
fn tintin_takes_mccp2_and_sees_every_line_to_the_goodbye() {
    let tintin = ["/usr/games/tt++", "/usr/bin/tt++"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("tintin++ is needed for this test: `apt-get install tintin++` (.ci/run does)")
        });
    assert!(
        Path::new("/usr/bin/script").exists(),
        "`script` (util-linux) is needed to give tintin++ a terminal"
    );
    let game = Game::started();
    let addr = game.telnet_addr();
    let tin = game.tmp().join("login.tin");
    std::fs::write(
        &tin,
        format!(
            "#config {{DEBUG TELNET}} {{ON}}\n\
             #action {{Welcome to}} {{#send {{create Tintin {PASSWORD}}}}}\n\
             #action {{Welcome, Tintin!}} {{#send {{ping tt1}}}}\n\
             #action {{pong tt1}} {{#send {{quit}}}}\n\
             #event {{SESSION DISCONNECTED}} {{#end}}\n\
             #session ev {} {}\n",
            addr.ip(),
            addr.port()
        ),
    )
    .expect("writing the tintin++ script");
    // tintin++ wants a terminal with a size, and an open stdin (at its end
    // it would leave); it ends once the game closes the session.
    let mut cmd = Command::new("script");
    cmd.args(["-qfec"])
        .arg(format!(
            "stty rows 24 cols 80; {tintin} -G {}",
            tin.display()
        ))
        .arg("/dev/null")
        .env("TERM", "xterm")
        .stdin(Stdio::piped());
    let out = run(cmd, Duration::from_secs(60));
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    for line in [
        "INFO MCCP2 INITIALIZED",
        "Welcome, Tintin!",
        "pong tt1",
        "Goodbye.",
        // The stream's end at the close, read as an orderly one.
        "COMPRESSION END",
    ] {
        assert!(
            shown.contains(line),
            "tintin++ did not show {line:?}:\n{}",
            text(&out)
        );
    }
}
