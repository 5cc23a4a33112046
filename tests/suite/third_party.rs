use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Game, PASSWORD, evctl_path, run, text};

#[test]
fn telnetlib3_logs_in_says_and_pings() {
    crate::util::require_python("telnetlib3", "telnetlib3==5.0.1");
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
    crate::util::require_python("telnetlib3", "telnetlib3==5.0.1");
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
    crate::util::require_python("telnetlib3", "telnetlib3==5.0.1");
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

/// Runs tintin++ on the script `tin` (its lines, written to the game's
/// temp dir) in a pseudo-terminal (`script`), with HOME in the temp dir (a
/// TLS session keeps the server's certificate there); returns what it
/// showed, without carriage returns, and its output for messages.
fn tintin(game: &Game, tin: &str) -> (String, std::process::Output) {
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
    let path = game.tmp().join("login.tin");
    std::fs::write(&path, tin).expect("writing the tintin++ script");
    // tintin++ wants a terminal with a size, and an open stdin (at its end
    // it would leave); it ends once the game closes the session.
    let mut cmd = Command::new("script");
    cmd.args(["-qfec"])
        .arg(format!(
            "stty rows 24 cols 80; {tintin} -G {}",
            path.display()
        ))
        .arg("/dev/null")
        .env("TERM", "xterm")
        .env("HOME", game.tmp())
        .stdin(Stdio::piped());
    let out = run(cmd, Duration::from_secs(60));
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    (shown, out)
}

/// tintin++, driven by a script of triggers, in a pseudo-terminal (`script`):
/// it takes MCCP2, logs in, pings, quits, shows every line the game sent,
/// the goodbye included, and reads the zlib stream's end as an orderly one.
#[test]
fn tintin_takes_mccp2_and_sees_every_line_to_the_goodbye() {
    let game = Game::started();
    let addr = game.telnet_addr();
    let (shown, out) = tintin(
        &game,
        &format!(
            "#config {{DEBUG TELNET}} {{ON}}\n\
             #action {{Welcome to}} {{#send {{create Tintin {PASSWORD}}}}}\n\
             #action {{Welcome, Tintin!}} {{#send {{ping tt1}}}}\n\
             #action {{pong tt1}} {{#send {{quit}}}}\n\
             #event {{SESSION DISCONNECTED}} {{#end}}\n\
             #session ev {} {}\n",
            addr.ip(),
            addr.port()
        ),
    );
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

/// A tintin++ script that logs in to the account Tintin (made before)
/// through the prompt-driven login (`connect`, then `Name: ` and
/// `Password: ` as prompts), takes GMCP (tintin++ refuses it unless told:
/// its `IAC WILL GMCP` event answers DO), shows each GMCP message as
/// `GMCP <module> :: <data>`, pings and quits. `connect` is `#session`
/// or `#ssl`.
fn prompted_login_script(connect: &str, addr: std::net::SocketAddr) -> String {
    format!(
        "#config {{DEBUG TELNET}} {{ON}}\n\
         #event {{IAC WILL GMCP}} {{#send {{\\xFF\\xFD\\xC9\\}}}}\n\
         #event {{IAC SB GMCP}} {{#showme GMCP %0 :: %1}}\n\
         #action {{Welcome to}} {{#send {{connect}}}}\n\
         #action {{Name:}} {{#send {{Tintin}}}}\n\
         #action {{Password:}} {{#send {{{PASSWORD}}}}}\n\
         #action {{Welcome back, Tintin!}} {{#send {{ping tt2}}}}\n\
         #action {{pong tt2}} {{#send {{quit}}}}\n\
         #event {{SESSION DISCONNECTED}} {{#end}}\n\
         #{connect} ev {} {}\n",
        addr.ip(),
        addr.port()
    )
}

/// What tintin++ must have shown of a prompt-driven login: the prompts,
/// the game's ECHO offered and taken for the password and taken back after
/// it, the demo's `Room.Info` over GMCP at the login, then play.
fn assert_prompted_login(shown: &str, out: &std::process::Output) {
    let at = |needle: &str| {
        shown
            .find(needle)
            .unwrap_or_else(|| panic!("tintin++ did not show {needle:?}:\n{}", text(out)))
    };
    let name = at("Name: ");
    let will_echo = at("RCVD IAC WILL ECHO");
    let do_echo = at("SENT IAC DO ECHO");
    let password = at("Password: ");
    let wont_echo = at("RCVD IAC WONT ECHO");
    let welcome = at("Welcome back, Tintin!");
    assert!(
        name < will_echo && will_echo < do_echo && do_echo < wont_echo && wont_echo < welcome,
        "echo is off for the password alone:\n{}",
        text(out)
    );
    assert!(password < welcome, "{}", text(out));
    let room = at("GMCP Room.Info :: ");
    let data = &shown[room..shown[room..].find('\n').map_or(shown.len(), |n| room + n)];
    assert!(
        data.contains("{name}{Limbo}"),
        "Room.Info names the room: {data}"
    );
    for line in ["pong tt2", "Goodbye."] {
        at(line);
    }
}

/// Makes the account Tintin and leaves.
fn account(game: &Game) {
    let mut c = game.login("Tintin");
    c.send_line("quit");
    c.expect("Goodbye.");
}

/// tintin++ logs in through the prompt-driven login, with the game's echo
/// off for the password alone, plays, and receives GMCP.
#[test]
fn tintin_logs_in_at_the_prompts_with_echo_off_for_the_password_and_gets_gmcp() {
    let game = Game::started();
    account(&game);
    let (shown, out) = tintin(&game, &prompted_login_script("session", game.telnet_addr()));
    assert_prompted_login(&shown, &out);
}

/// The same over TLS: tintin++'s `#ssl` (GnuTLS), taking the self-signed
/// certificate `evctl init --tls` made as a player would, the first time.
#[test]
fn tintin_plays_over_tls_with_ssl() {
    let game = Game::with_tls(|_| {});
    game.start();
    account(&game);
    let (shown, out) = tintin(&game, &prompted_login_script("ssl", game.tls_addr()));
    assert!(
        shown.contains("THIS IS THE FIRST TIME YOU CONNECT TO THIS SERVER"),
        "tintin++ took the certificate as new: {}",
        text(&out)
    );
    assert_prompted_login(&shown, &out);
}
