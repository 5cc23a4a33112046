//! Backups (issue 14): `evctl backup` copies the database while players
//! play, with nothing they notice; `evctl restore` puts it back into a
//! stopped game, which then has the same accounts.

use std::time::Duration;

use crate::util::load::{Load, Spec};
use crate::util::{Game, evctl_command, heavy, run, text};

#[test]
fn a_backup_under_load_restores_into_a_fresh_game() {
    let _heavy = heavy();
    let game = Game::started();
    let load = Load::start(
        &game,
        Spec {
            clients: 10,
            sayers: 2,
            name: "Saved",
            ..Spec::default()
        },
    );
    load.wait_progress(10);
    let file = game.tmp().join("game.backup");
    let out = game.evctl(&["backup", &file.display().to_string()]);
    assert!(out.status.success(), "evctl backup: {}", text(&out));
    assert!(text(&out).contains("backed up"), "{}", text(&out));
    let again = game.evctl(&["backup", &file.display().to_string()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("exists"), "{}", text(&again));
    load.wait_progress(10);
    let names = load.names().to_vec();
    // Every ping and say answered exactly once, in order, across the backup.
    load.finish().assert_clean();

    let fresh = Game::new();
    let out = fresh.evctl(&["restore", &file.display().to_string()]);
    assert!(out.status.success(), "evctl restore: {}", text(&out));
    fresh.start();
    for name in &names[..3] {
        fresh
            .connect_account(name)
            .unwrap_or_else(|e| panic!("after the restore: {e}"));
    }
    // A running game is never restored over.
    let out = fresh.evctl(&["restore", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("stop it first"), "{}", text(&out));
}

#[test]
fn a_file_that_is_no_backup_is_refused_and_changes_nothing() {
    let game = Game::new();
    let junk = game.tmp().join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let mut cmd = evctl_command();
    cmd.arg("-g").arg(game.root()).arg("restore").arg(&junk);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("junk.db"), "{}", text(&out));
    assert!(
        !game.root().join("data/game.db").exists(),
        "a refused restore wrote a database"
    );
}
