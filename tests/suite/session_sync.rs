use std::time::Duration;

use crate::util::{Game, REPLY_TIMEOUT, wait_until};

#[test]
fn quitting_in_the_game_closes_the_connection_and_the_session() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    let mut bob = game.login("Bob");
    bob.send_line("quit");
    bob.expect("Goodbye.");
    assert!(
        bob.is_closed(REPLY_TIMEOUT),
        "the portal kept Bob's connection open after `quit`"
    );
    wait_until(
        "Bob to leave `who` after quitting",
        Duration::from_secs(15),
        || alice.who() == ["Alice"],
    );
}

#[test]
fn closing_the_client_ends_the_session_on_the_server() {
    let game = Game::started();
    let mut alice = game.login("Alice");
    let bob = game.login("Bob");
    let carol = game.login("Carol");
    assert_eq!(alice.who(), ["Alice", "Bob", "Carol"]);
    drop(bob);
    wait_until("Bob to leave `who`", Duration::from_secs(15), || {
        alice.who() == ["Alice", "Carol"]
    });
    drop(carol);
    wait_until("Carol to leave `who`", Duration::from_secs(15), || {
        alice.who() == ["Alice"]
    });
    // The account survives its session.
    let mut c = game
        .connect_account("Bob")
        .unwrap_or_else(|e| panic!("{e}"));
    c.send_line("ping back");
    c.expect("pong back");
}

#[test]
fn sessions_come_back_as_they_were_after_a_reload() {
    let game = Game::started();
    let names = ["Alice", "Bob", "Carol"];
    let mut clients: Vec<_> = names.iter().map(|n| game.login(n)).collect();
    // A guest at the login screen stays a guest.
    let mut guest = game.guest("guest");

    game.reload();

    for c in clients.iter_mut() {
        let look = c.look().unwrap_or_else(|e| panic!("after the reload: {e}"));
        let here = look.last().unwrap();
        for other in names.iter().filter(|&&n| n != c.label()) {
            assert!(
                here.contains(other),
                "{}: `look` after the reload lacks {other}: {look:?}",
                c.label()
            );
        }
        assert_eq!(c.who(), names, "{}: `who` after the reload", c.label());
    }
    clients[0].send_line("say still here");
    clients[0].expect("You say, \"still here\"");
    clients[1].expect("Alice says, \"still here\"");
    clients[2].expect("Alice says, \"still here\"");

    guest.send_line("look");
    guest.expect("Unknown command");
    guest.send_line("create Dave secretpw");
    guest.expect("Welcome, Dave!");

    // A session closed after the reload leaves the new server's `who` too.
    let carol = clients.pop().unwrap();
    drop(carol);
    wait_until(
        "Carol to leave `who` after the reload",
        Duration::from_secs(15),
        || clients[0].who() == ["Alice", "Bob", "Dave"],
    );
}
