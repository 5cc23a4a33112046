use crate::util::load::{Load, Spec};
use crate::util::{Game, heavy, text};

/// The load runs this many ping periods (20 ms) before the reload...
const BEFORE: u64 = 15;
/// ...and this many after `evctl reload` returns.
const AFTER: u64 = 25;

#[test]
fn fifty_clients_lose_nothing_across_a_reload() {
    let _heavy = heavy();
    let game = Game::started();
    let load = Load::start(&game, Spec::default());
    let mut checker = game.login("Checker");
    load.wait_progress(BEFORE);

    let out = game.reload();
    assert!(text(&out).contains("dark for"), "{}", text(&out));

    load.wait_progress(AFTER);
    // Every session came back on the new server, logged in as before.
    let mut want = load.names().to_vec();
    want.push("Checker".to_owned());
    want.sort();
    // The creator's account of the moment (`New...`) may be online too.
    let mut who = checker.who();
    who.retain(|n| !n.starts_with("New"));
    assert_eq!(who, want, "`who` after the reload");
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
    assert!(!report.created.is_empty(), "the creator made no account");
}

#[test]
fn ten_reloads_in_a_row_under_load() {
    let _heavy = heavy();
    let game = Game::started();
    let load = Load::start(&game, Spec::default());
    load.wait_progress(BEFORE);
    let mut servers = vec![game.pid("server").unwrap()];
    for i in 1..=10 {
        let out = game.evctl(&["reload"]);
        assert!(
            out.status.success(),
            "reload {i} of 10 failed: {}{}",
            text(&out),
            game.log_tails()
        );
        assert!(
            text(&out).contains("dark for"),
            "reload {i}: {}",
            text(&out)
        );
        eprint!("reload {i}: {}", String::from_utf8_lossy(&out.stdout));
        servers.push(game.pid("server").unwrap());
        // Every client is answered by the new server before the next reload.
        load.wait_progress(3);
    }
    load.wait_progress(AFTER);
    let report = load.finish();
    report.assert_clean();
    report.assert_accounts_connect(&game);
    servers.dedup();
    assert_eq!(
        servers.len(),
        11,
        "each reload starts a new server: {servers:?}"
    );
}
