use std::time::Duration;

use crate::util::{Game, PASSWORD, REPLY_TIMEOUT, evctl_command, run, text, wait_until};

#[test]
fn create_look_quit_then_connect_again() {
    let game = Game::started();
    let mut c = game.guest("Alice");
    c.send_line(&format!("create Alice {PASSWORD}"));
    c.expect("Welcome, Alice!");
    c.expect("Limbo");
    c.expect("You are alone here.");

    let look = c.look().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        look.len() >= 3,
        "look is the room name, a description and who is here: {look:?}"
    );
    assert_eq!(
        look.last().unwrap().trim(),
        "You are alone here.",
        "{look:?}"
    );

    c.send_line("quit");
    c.expect("Goodbye.");
    assert!(
        c.is_closed(REPLY_TIMEOUT),
        "the portal keeps the connection open after `quit`"
    );

    let mut c = game.guest("Alice again");
    c.send_line(&format!("connect Alice {PASSWORD}"));
    c.expect("Welcome back, Alice!");
    c.expect("Limbo");
}

#[test]
fn say_reaches_the_speaker_and_the_room() {
    // On a portal of two threads: the other tests run the default, one.
    let game = Game::with_config(|c| c.portal.threads = 2);
    game.start();
    let mut alice = game.login("Alice");
    let mut bob = game.login("Bob");

    alice.send_line("say hello there");
    alice.expect("You say, \"hello there\"");
    bob.expect("Alice says, \"hello there\"");

    let look = bob.look().unwrap_or_else(|e| panic!("{e}"));
    // `Here:` lists the others: a player alone sees `You are alone here.`
    assert_eq!(look.last().unwrap().trim(), "Here: Alice", "{look:?}");
    assert_eq!(alice.who(), ["Alice", "Bob"]);
    let who = {
        bob.send_line("who");
        bob.expect("Players online (")
    };
    assert_eq!(who.trim(), "Players online (2): Alice, Bob");
}

#[test]
fn say_passes_no_terminal_controls_or_bidi_overrides_to_others() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    let mut bob = game.login("Bob");
    // An escape sequence, a C1 control and a right-to-left override.
    alice.send_raw("say clear\u{1b}[2J \u{9b}31m rev\u{202E}desrever\r\n".as_bytes());
    let heard = bob.expect("Alice says, ");
    assert_eq!(heard.trim(), "Alice says, \"clear[2J 31m revdesrever\"");
}

#[test]
fn ping_answers_the_sender_alone() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    let mut bob = game.login("Bob");
    alice.send_line("ping one");
    alice.expect("pong one");
    // Bob's own ping is answered after Alice's would have reached him.
    bob.send_line("ping two");
    let line = bob
        .expect_line("pong two", |l| l.contains("pong"), REPLY_TIMEOUT)
        .unwrap();
    assert!(line.contains("pong two"), "Bob saw Alice's pong: {line:?}");
}

#[test]
fn login_screen_answers_ping_and_refuses_game_commands() {
    let game = Game::started();
    let mut c = game.guest("guest");
    c.send_line("ping early");
    c.expect("pong early");
    for command in ["look", "say hi", "frobnicate"] {
        c.send_line(command);
        let line = c.expect("Unknown command");
        assert!(line.starts_with("Unknown command"), "{command}: {line:?}");
    }
}

#[test]
fn unknown_command_says_so() {
    let game = Game::started();
    let mut c = game.login("Alice");
    c.send_line("frobnicate the widget");
    let line = c.expect("Unknown command");
    assert!(line.starts_with("Unknown command"), "{line:?}");
    c.send_line("ping still");
    c.expect("pong still");
}

#[test]
fn wrong_password_is_a_plain_failure() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    alice.send_line("quit");
    assert!(alice.is_closed(REPLY_TIMEOUT));

    let mut c = game.guest("intruder");
    c.send_line("connect Alice wrongpassword");
    c.expect("Wrong name or password.");
    c.send_line("connect Nobody wrongpassword");
    c.expect("Wrong name or password.");
    // Still at the login screen and still usable.
    c.send_line("ping after");
    c.expect("pong after");
    c.send_line(&format!("connect Alice {PASSWORD}"));
    c.expect("Welcome back, Alice!");
}

#[test]
fn too_long_line_is_refused_and_the_connection_stays_usable() {
    let game = Game::started();
    let mut c = game.login("Alice");
    let long = format!("say {}", "x".repeat(5000));
    c.send_line(&long);
    c.expect("too long");
    c.send_line("ping after");
    let line = c
        .expect_line(
            "pong after",
            |l| l.contains("pong") || l.contains("You say"),
            REPLY_TIMEOUT,
        )
        .unwrap();
    assert!(
        line.contains("pong after"),
        "the long line was not dropped whole: {line:?}"
    );
    c.look().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn closing_a_client_removes_its_session() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    let bob = game.login("Bob");
    assert_eq!(alice.who(), ["Alice", "Bob"]);
    drop(bob);
    wait_until(
        "Bob to leave `who` after his connection closed",
        Duration::from_secs(15),
        || alice.who() == ["Alice"],
    );
}

/// Issue 11: a host name is resolved (not refused as socket syntax), and the
/// next step names the evctl that was run, which need not be on PATH.
#[test]
fn init_takes_a_host_name_and_names_the_evctl_it_ran() {
    let game = Game::uninitialised();
    let mut cmd = evctl_command();
    cmd.arg("init")
        .arg(game.root())
        .args(["--telnet", "localhost:4999"]);
    let out = run(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(game.config_path()).unwrap();
    assert!(
        config.contains("telnet = \"127.0.0.1:4999\"")
            || config.contains("telnet = \"[::1]:4999\""),
        "{config}"
    );
    let evctl = crate::util::evctl_path();
    assert!(
        text(&out).contains(&format!("{} -g ", evctl.display())),
        "the next step does not name {}: {}",
        evctl.display(),
        text(&out)
    );
    let mut cmd = evctl_command();
    cmd.arg("init")
        .arg(game.tmp().join("other"))
        .args(["--telnet", "127.0.0.1:99999"]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("0 to 65535"), "{}", text(&out));
}

#[test]
fn init_refuses_an_existing_game() {
    let game = Game::new();
    let before = std::fs::read_to_string(game.config_path()).unwrap();
    let mut cmd = evctl_command();
    cmd.arg("init").arg(game.root());
    let out = run(cmd, Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "init over an existing game succeeded: {}",
        text(&out)
    );
    assert!(
        text(&out).contains(&*game.root().to_string_lossy()),
        "the refusal does not name the directory: {}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(game.config_path()).unwrap(),
        before,
        "ev.toml was changed"
    );
}

#[test]
fn too_long_game_path_names_the_unix_socket_limit() {
    let game = Game::uninitialised();
    let long = game.tmp().join("x".repeat(100));
    let mut cmd = evctl_command();
    cmd.arg("init").arg(&long);
    let init = run(cmd, Duration::from_secs(30));
    let out = if init.status.success() {
        // Refused at start, if not at init.
        let mut cmd = evctl_command();
        cmd.arg("-g").arg(&long).arg("start");
        run(cmd, Duration::from_secs(30))
    } else {
        init
    };
    assert!(
        !out.status.success(),
        "a game at a {}-byte path started: {}",
        long.as_os_str().len(),
        text(&out)
    );
    let msg = text(&out);
    assert!(
        msg.contains("Unix socket") && msg.contains("107"),
        "no mention of the Unix socket limit: {msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let game = Game::new();
    game.write_config(
        "[portal]\ntelnet = \"127.0.0.1:0\"\nweb = \"127.0.0.1:0\"\nmax_line_bytez = 10\n",
    );
    let out = game.evctl(&["start"]);
    assert!(
        !out.status.success(),
        "started with a misspelt key: {}",
        text(&out)
    );
    let msg = text(&out);
    let path = game.config_path();
    assert!(
        msg.contains(&*path.to_string_lossy()),
        "the message does not name {}: {msg}",
        path.display()
    );
    assert!(
        msg.contains("line 4"),
        "the message does not name line 4: {msg}"
    );
    assert!(
        msg.contains("max_line_bytez"),
        "the message does not name the key: {msg}"
    );
    assert!(
        game.pid("portal").is_none_or(|p| !crate::util::alive(p)),
        "a portal runs anyway"
    );
}

/// Issue 11: the admin that `evctl init --admin` makes (through `ev-server
/// create-admin`) is welcomed at its first login, welcomed back after.
#[test]
fn a_first_login_is_welcomed_and_a_later_one_welcomed_back() {
    let game = Game::new();
    let mut cmd = std::process::Command::new(crate::util::bin("ev-server"));
    cmd.arg("--game-dir")
        .arg(game.root())
        .args(["create-admin", "Root"])
        .env("EV_ADMIN_PASSWORD", PASSWORD)
        .env("EV_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let out = run(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "create-admin: {}", text(&out));
    game.start();

    let mut c = game.guest("first");
    c.send_line(&format!("connect Root {PASSWORD}"));
    let line = c.expect("Root!");
    assert!(line.contains("Welcome, Root!"), "the first login: {line:?}");
    c.send_line("quit");
    c.expect("Goodbye.");

    let mut c = game.guest("second");
    c.send_line(&format!("connect root {PASSWORD}"));
    let line = c.expect("Root!");
    assert!(
        line.contains("Welcome back, Root!"),
        "a later login: {line:?}"
    );
}

/// Issue 11: `evctl passwd NAME` sets a lost password, on a running game
/// (the next login takes the new one, the old one is refused, players in
/// play stay) and on a stopped one. The password is never an argument and
/// is in no log.
#[test]
fn evctl_passwd_sets_a_password_on_a_running_and_a_stopped_game() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    let passwd = |name: &str, password: &str| {
        let mut cmd = evctl_command();
        cmd.env("EV_NEW_PASSWORD", password)
            .arg("-g")
            .arg(game.root())
            .args(["passwd", name]);
        run(cmd, Duration::from_secs(90))
    };

    let out = passwd("alice", "brandnew9");
    assert!(out.status.success(), "evctl passwd: {}", text(&out));
    assert!(
        text(&out).contains("set the password of Alice"),
        "{}",
        text(&out)
    );
    alice
        .look()
        .unwrap_or_else(|e| panic!("Alice was not left in play: {e}"));
    let mut c = game.guest("with the old password");
    c.send_line(&format!("connect Alice {PASSWORD}"));
    c.expect("Wrong name or password.");
    c.send_line("connect Alice brandnew9");
    c.expect("Welcome back, Alice!");

    let out = passwd("Nobody", "brandnew9");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("evctl: cannot set the password of Nobody: there is no account named Nobody"),
        "{}",
        text(&out)
    );

    let out = game.evctl(&["stop"]);
    assert!(out.status.success(), "evctl stop: {}", text(&out));
    let out = passwd("Alice", "stopped99");
    assert!(
        out.status.success(),
        "evctl passwd, stopped: {}",
        text(&out)
    );
    game.start();
    let mut c = game.guest("after the restart");
    c.send_line("connect Alice brandnew9");
    c.expect("Wrong name or password.");
    c.send_line("connect Alice stopped99");
    c.expect("Welcome back, Alice!");

    for entry in std::fs::read_dir(game.root().join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        for secret in ["brandnew9", "stopped99"] {
            assert!(!log.contains(secret), "{} holds a password", path.display());
        }
    }
}
