use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Game, PASSWORD, evctl_path, run, text};

/// Fails the test with how to install telnetlib3 if it is missing.
fn require_telnetlib3() {
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
}

#[test]
fn telnetlib3_logs_in_says_and_pings() {
    require_telnetlib3();
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

/// telnetlib3 tells its window (NAWS) and terminal (TTYPE) and agrees on
/// UTF-8 (CHARSET); the game's `client` command shows them, and again after
/// a reload (the new server has them from the Sync).
#[test]
fn telnetlib3_window_and_terminal_reach_the_game_across_a_reload() {
    require_telnetlib3();
    let game = Game::started();
    let addr = game.telnet_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/telnetlib3_terminal.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(evctl_path())
        .arg(game.root())
        .env_remove("EV_GAME_DIR");
    let out = run(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        script.display(),
        text(&out),
        game.log_tails()
    );
}

/// `telnetlib3-fingerprint` probes every option, re-sends DO and WILL for
/// what was agreed (a looping server answers again), asks in the wrong
/// direction and reads the MSSP table. Its report is kept in the target
/// directory's tmp (`telnetlib3-fingerprint.json`).
#[test]
fn telnetlib3_fingerprint_sees_no_negotiation_loop() {
    require_telnetlib3();
    let game = Game::started();
    let addr = game.telnet_addr();
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("telnetlib3-fingerprint.json");
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new("telnetlib3-fingerprint");
    cmd.arg("--save-json")
        .arg(&report)
        .arg("--data-dir")
        .arg(game.tmp().join("fingerprints"))
        .args([
            "--silent",
            "--banner-max-wait",
            "3",
            "--banner-quiet-time",
            "0.5",
            "--mssp-wait",
            "3",
        ])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    let out = run(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "telnetlib3-fingerprint failed (it ships with telnetlib3): {}",
        text(&out)
    );
    let json = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("reading {}: {e}; {}", report.display(), text(&out)));
    let report: serde_json::Value = serde_json::from_str(&json).expect("the report is JSON");
    let probe = &report["server-probe"];
    let fp = &probe["fingerprint-data"];
    let list = |key: &str| -> Vec<String> {
        fp[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in the report: {json}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        list("looped-negotiation").is_empty(),
        "a negotiation loop: {json}"
    );
    assert!(
        list("wrong-direction-offered").is_empty(),
        "offered in the wrong direction: {json}"
    );
    assert_eq!(
        list("offered-options"),
        ["CHARSET", "EOR", "GMCP", "MCCP2", "MSDP", "MSSP", "SGA"],
        "{json}"
    );
    assert_eq!(list("requested-options"), ["NAWS", "TTYPE"], "{json}");
    let mssp = &probe["session_data"]["mssp"];
    assert_eq!(mssp["NAME"], "ev test", "the MSSP table was read: {json}");
    for spoken in ["GMCP", "MSDP", "ANSI", "XTERM 256 COLORS"] {
        assert_eq!(mssp[spoken], "1", "MSSP's {spoken}: {json}");
    }
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
