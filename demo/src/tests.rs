//! The demo through the test kit: sessions typing, timers moved by hand,
//! reloads through the server's own Sync.

use std::time::Duration;

use ev_server::testkit::TestGame;

use super::*;

fn game() -> TestGame<Demo> {
    TestGame::new(Demo::default)
}

fn oob_drain(g: &mut TestGame<Demo>, id: ev_server::SessionId) {
    g.oob_seen(id);
}

/// The Room.Info messages `id` was sent since last asked.
fn room_info(g: &mut TestGame<Demo>, id: ev_server::SessionId) -> Vec<RoomInfo> {
    g.oob_seen(id)
        .into_iter()
        .filter(|(name, _)| name == "Room.Info")
        .filter_map(|(_, data)| serde_json::from_value(data).ok())
        .collect()
}

#[test]
fn a_new_player_starts_in_the_square_and_its_room_info_goes_out_of_band() {
    let mut g = game();
    let id = g.connect();
    g.seen(id);
    let text = g.input(id, "create Alice secret");
    assert_eq!(text[0], "Welcome, Alice!");
    assert!(text[1].starts_with("Limbo\nA quiet grey space"), "{text:?}");
    assert!(
        text[1].ends_with("Exits: down\nYou are alone here."),
        "{text:?}"
    );
    let info = room_info(&mut g, id);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "Limbo");
    assert_eq!(info[0].area, "Ev Town");
    assert_eq!(info[0].exits.keys().collect::<Vec<_>>(), ["down"]);
}

#[test]
fn walking_is_seen_by_both_rooms_and_sends_room_info() {
    let mut g = game();
    let alice = g.player("Alice");
    let bob = g.player("Bob");
    assert_eq!(g.seen(alice), ["Bob has arrived."]);
    g.input(alice, "down");
    g.input(bob, "d");
    g.seen(alice);
    oob_drain(&mut g, alice);
    let seen = g.input(alice, "n");
    assert!(seen[0].starts_with("Bell Tower\n"), "{seen:?}");
    let info = room_info(&mut g, alice);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "Bell Tower");
    assert_eq!(info[0].exits.keys().collect::<Vec<_>>(), ["south", "up"]);
    assert_eq!(g.seen(bob), ["Alice leaves north."]);
    g.input(bob, "north");
    assert_eq!(g.seen(alice), ["Bob arrives."]);
    let seen = g.input(bob, "go up");
    assert!(seen[0].starts_with("Belfry"), "{seen:?}");
    g.input(bob, "d");
    room_info(&mut g, bob);
    assert_eq!(g.input(bob, "east"), ["You can't go that way."]);
    assert!(
        room_info(&mut g, bob).is_empty(),
        "no room change, no Room.Info"
    );
}

#[test]
fn things_are_picked_up_carried_and_dropped_and_stay_where_they_are_across_a_reload() {
    let mut g = game();
    let alice = g.player("Alice");
    let bob = g.player("Bob");
    for who in [alice, bob] {
        g.input(who, "down");
        g.input(who, "west");
    }
    g.seen(alice);
    assert!(
        g.input(alice, "look")
            .iter()
            .any(|l| l.contains("You see a brass lantern, a grey cat."))
    );
    assert_eq!(
        g.input(alice, "get lan"),
        ["You pick up the brass lantern."]
    );
    assert_eq!(g.seen(bob), ["Alice picks up the brass lantern."]);
    assert_eq!(
        g.input(alice, "get cat"),
        ["The grey cat slips out of reach."]
    );
    assert_eq!(g.input(alice, "get moon"), ["You see no 'moon' here."]);
    assert_eq!(g.input(alice, "i"), ["You carry:\n  a brass lantern"]);
    g.reload();
    assert_eq!(
        g.input(alice, "inventory"),
        ["You carry:\n  a brass lantern"]
    );
    assert_eq!(
        g.input(alice, "look lantern"),
        ["brass lantern\nA dented brass lantern, still warm."]
    );
    g.input(alice, "east");
    assert_eq!(
        g.input(alice, "drop lantern"),
        ["You drop the brass lantern."]
    );
    assert_eq!(g.input(alice, "i"), ["You carry nothing."]);
    assert!(
        g.input(alice, "look")
            .iter()
            .any(|l| l.contains("You see a brass lantern."))
    );
}

#[test]
fn say_and_pose_reach_the_room_only_with_markup_escaped() {
    let mut g = game();
    let alice = g.player("Alice");
    let bob = g.player("Bob");
    let carol = g.player("Carol");
    g.input(carol, "down");
    g.seen(alice);
    g.seen(bob);
    assert_eq!(
        g.input(alice, "'hello {red}there"),
        ["You say, \"hello {red}there\""]
    );
    assert_eq!(g.seen(bob), ["Alice says, \"hello {red}there\""]);
    assert!(g.seen(carol).is_empty());
    assert_eq!(g.input(bob, ":waves."), ["Bob waves."]);
    assert_eq!(g.seen(alice), ["Bob waves."]);
    assert_eq!(g.input(bob, "say"), ["Say what?"]);
}

#[test]
fn brief_is_kept_with_the_session_across_a_reload() {
    let mut g = game();
    let alice = g.player("Alice");
    assert_eq!(
        g.input(alice, "brief"),
        ["Brief mode on: room descriptions are left out."]
    );
    g.reload();
    let look = g.input(alice, "look");
    assert!(
        look[0].starts_with("Limbo\nExits: down\nYou are alone here."),
        "{look:?}"
    );
    g.input(alice, "brief");
    assert!(g.input(alice, "look")[0].contains("grey space"));
}

#[test]
fn the_bell_tolls_on_each_hour_once_across_reloads_and_once_for_hours_missed() {
    let mut g = game();
    let alice = g.player("Alice");
    let bells = |g: &mut TestGame<Demo>| -> Vec<String> {
        g.seen(alice)
            .into_iter()
            .filter(|l| l.contains("bell"))
            .collect()
    };
    // The kit's clock starts at 1_800_000_000 s: 08:00 UTC.
    g.advance(Duration::from_secs(3599));
    assert!(bells(&mut g).is_empty());
    g.reload();
    g.advance(Duration::from_secs(1));
    assert_eq!(bells(&mut g), ["The bell in the tower tolls 9 times."]);
    g.reload();
    g.advance(Duration::from_secs(10));
    assert!(bells(&mut g).is_empty(), "not again after a reload");
    // Three hours pass with no server running: it tolls once, for 12:00.
    g.skip(Duration::from_secs(3 * 3600));
    g.reload();
    assert_eq!(bells(&mut g), ["The bell in the tower tolls 12 times."]);
    g.advance(Duration::from_secs(3600));
    assert_eq!(bells(&mut g), ["The bell in the tower tolls once."]);
}

#[test]
fn the_cat_wanders_from_the_inn_on_its_timer() {
    let mut g = game();
    let alice = g.player("Alice");
    g.input(alice, "down");
    g.input(alice, "west");
    g.seen(alice);
    g.advance(CAT_WANDERS);
    let seen = g.seen(alice);
    assert!(
        seen.iter().any(|l| l.starts_with("The grey cat pads away")),
        "{seen:?}"
    );
}

#[test]
fn route_finds_the_way_as_deferred_work_and_says_when_there_is_none() {
    let mut g = game();
    let alice = g.player("Alice");
    assert_eq!(
        g.input(alice, "route belfry"),
        ["The way to Belfry: down, north, up."]
    );
    assert_eq!(g.input(alice, "route limbo"), ["You are at Limbo."]);
    assert_eq!(
        g.input(alice, "route moon"),
        ["You know of no place called 'moon'."]
    );
    // A place with no way in: the search says so.
    g.with(|_, cx| cx.create("room", "Sealed Vault", None).map(|_| ()))
        .unwrap();
    assert_eq!(
        g.input(alice, "route vault"),
        ["You know of no way to Sealed Vault from here."]
    );
    // A route asked just before a reload is answered once, by the next server.
    g.hold_work(true);
    assert!(g.input(alice, "route market").is_empty());
    g.reload();
    g.run_work();
    assert_eq!(g.seen(alice), ["The way to Market Street: down, east."]);
}

/// The Char.Vitals moves `id` was sent since last asked.
fn moves_seen(g: &mut TestGame<Demo>, id: ev_server::SessionId) -> Vec<(i64, i64)> {
    g.oob_seen(id)
        .into_iter()
        .filter(|(name, _)| name == "Char.Vitals")
        .filter_map(|(_, data)| Some((data["mv"].as_i64()?, data["maxmv"].as_i64()?)))
        .collect()
}

#[test]
fn walking_tires_resting_restores_and_each_change_goes_out_as_char_vitals() {
    let mut g = game();
    let alice = g.connect();
    g.input(alice, "create Alice secret");
    assert_eq!(
        moves_seen(&mut g, alice),
        [(MAX_MOVES, MAX_MOVES)],
        "at login"
    );
    g.input(alice, "down");
    assert_eq!(moves_seen(&mut g, alice), [(MAX_MOVES - 1, MAX_MOVES)]);
    // Back and forth until tired, ending in the market: the next step is
    // refused.
    for i in 1..MAX_MOVES {
        g.input(alice, if i % 2 == 1 { "east" } else { "west" });
    }
    assert_eq!(moves_seen(&mut g, alice).last(), Some(&(0, MAX_MOVES)));
    assert_eq!(
        g.input(alice, "west"),
        ["You are too tired to walk on. Rest a while first."]
    );
    assert!(moves_seen(&mut g, alice).is_empty(), "nothing changed");
    g.reload();
    assert_eq!(
        g.input(alice, "west"),
        ["You are too tired to walk on. Rest a while first."],
        "still tired after a reload"
    );
    assert_eq!(
        g.input(alice, "rest"),
        ["You sit a while and rest your feet. You could walk for miles."]
    );
    assert_eq!(moves_seen(&mut g, alice), [(MAX_MOVES, MAX_MOVES)]);
    assert!(g.input(alice, "west")[0].starts_with("Town Square"));
}

#[test]
fn a_player_who_leaves_is_out_of_the_room_until_they_come_back_to_it() {
    let mut g = game();
    let alice = g.player("Alice");
    let bob = g.player("Bob");
    g.input(alice, "down");
    g.input(alice, "east");
    g.close(alice);
    // Away: not in the market's company, nor anywhere.
    g.input(bob, "down");
    g.input(bob, "east");
    let (market, away) = g.with(|_, cx| {
        let alice = cx.all_of_kind("character")[0];
        (
            cx.all_of_kind("room")
                .into_iter()
                .find(|&r| cx.name(r) == "Market Street"),
            cx.location(alice),
        )
    });
    assert_eq!(away, None);
    let market = market.unwrap();
    assert_eq!(
        g.with(|_, cx| cx
            .contents(market)
            .into_iter()
            .filter(|&o| cx.kind(o) == "character")
            .count()),
        1
    );
    // Back: where she left, and the room hears it.
    let again = g.connect();
    let seen = g.input(
        again,
        &format!("connect Alice {}", ev_server::testkit::PASSWORD),
    );
    assert!(
        seen.iter().any(|l| l.starts_with("Market Street")),
        "{seen:?}"
    );
    assert_eq!(
        g.seen(bob).last().map(String::as_str),
        Some("Alice has arrived.")
    );
}
