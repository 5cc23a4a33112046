//! The game API through the test kit, with small games of its own: timers,
//! objects and typed attributes, game migrations, session values, OOB,
//! replacing a runtime command, and errors in a game's code.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ev_server::testkit::{PASSWORD, TestGame};
use ev_server::{Context, Fired, Game, Migration, Missed, Result, Setup, Spec, Timer};

/// Schedules and counts timers; keeps typed values on an object.
#[derive(Default)]
struct Clockwork;

impl Game for Clockwork {
    fn setup(setup: &mut Setup<Self>) {
        setup
            .command(Spec::new("once", "once SECS", "A timer."), |_, cx, secs| {
                let secs: u64 = secs.parse().unwrap_or(10);
                cx.schedule(
                    Timer::after(Duration::from_secs(secs), "tick")
                        .with(&"once")
                        .unwrap(),
                )?;
                cx.reply("scheduled");
                Ok(())
            })
            .command(
                Spec::new("every", "every SECS catch|once", "A timer."),
                |_, cx, args| {
                    let (secs, policy) = args.split_once(' ').unwrap_or((args, "once"));
                    let missed = if policy == "catch" {
                        Missed::CatchUp
                    } else {
                        Missed::Once
                    };
                    let every = Duration::from_secs(secs.parse().unwrap_or(10));
                    cx.schedule(Timer::every(every, "tick", missed).with(&policy).unwrap())?;
                    cx.reply("scheduled");
                    Ok(())
                },
            )
            .command(Spec::new("stop", "stop", "Cancel."), |_, cx, _| {
                let n = cx.cancel("tick", None)?;
                cx.reply(&format!("cancelled {n}"));
                Ok(())
            })
            .command(
                Spec::new("count", "count", "Show the count."),
                |_, cx, _| {
                    let n: u32 = counter(cx)
                        .map_or(Ok(None), |c| cx.get(c, "ticks"))?
                        .unwrap_or(0);
                    cx.reply(&format!("ticks: {n}"));
                    Ok(())
                },
            )
            .command(
                Spec::new("misread", "misread", "Read a number as text."),
                |_, cx, _| {
                    let c = counter(cx).expect("the counter exists");
                    let _: Option<String> = cx.get(c, "ticks")?;
                    cx.reply("read it");
                    Ok(())
                },
            )
            .command(
                Spec::new("who", "who", "The game's own who."),
                |_, cx, _| {
                    cx.reply(&format!("{} here, says the game", cx.online_count()));
                    Ok(())
                },
            )
            .command(
                Spec::new("hoard", "hoard", "Fill the session values."),
                |_, cx, _| {
                    let big = "x".repeat(ev_server::MAX_SESSION_VALUES_BYTES);
                    match cx.set_session_value("big", &big) {
                        Ok(()) => cx.reply("kept"),
                        Err(e) => cx.reply(&format!("refused: {e}")),
                    }
                    Ok(())
                },
            )
            .command(
                Spec::new("remember", "remember TEXT", "A session value."),
                |_, cx, text| {
                    cx.set_session_value("note", text)?;
                    Ok(())
                },
            )
            .command(
                Spec::new("recall", "recall", "The session value."),
                |_, cx, _| {
                    let note: String = cx.session_value("note")?.unwrap_or_default();
                    cx.reply(&format!("note: {note}"));
                    Ok(())
                },
            )
            .oob("Char.Count", |_, cx, data| {
                let by = data.get("by").and_then(|v| v.as_u64()).unwrap_or(1);
                let c = counter(cx).expect("the counter exists");
                let n: u64 = cx.get(c, "ticks")?.unwrap_or(0);
                cx.set(c, "ticks", &(n + by))?;
                let session = cx.session().expect("a client sent it");
                cx.oob(
                    session,
                    "Char.Count",
                    &serde_json::json!({ "ticks": n + by }),
                )?;
                Ok(())
            })
            .timer("tick", Clockwork::tick);
    }

    fn on_start(&mut self, cx: &mut Context) -> Result<()> {
        if counter(cx).is_none() {
            cx.create("counter", "counter", None)?;
        }
        Ok(())
    }
}

impl Clockwork {
    fn tick(&mut self, cx: &mut Context, fired: &Fired) -> Result<()> {
        let c = counter(cx).expect("the counter exists");
        let n: u32 = cx.get(c, "ticks")?.unwrap_or(0);
        cx.set(c, "ticks", &(n + 1))?;
        let label: String = serde_json::from_value(fired.data.clone()).unwrap_or_default();
        cx.tell_all(&format!("tick {label}"));
        Ok(())
    }
}

fn counter(cx: &Context) -> Option<ev_server::ObjectId> {
    cx.all_of_kind("counter").first().copied()
}

fn ticks(g: &mut TestGame<Clockwork>, id: ev_server::SessionId) -> String {
    g.input(id, "count").remove(0)
}

#[test]
fn a_timer_fires_once_when_due_and_survives_reloads_without_firing_twice() {
    let mut g = TestGame::new(Clockwork::default);
    let a = g.player("Alice");
    assert_eq!(g.input(a, "once 30"), ["scheduled"]);
    g.advance(Duration::from_secs(29));
    assert!(g.seen(a).is_empty());
    g.reload();
    g.advance(Duration::from_secs(1));
    assert_eq!(g.seen(a), ["tick once"]);
    g.reload();
    g.advance(Duration::from_secs(3600));
    assert!(g.seen(a).is_empty(), "a one-shot timer is gone once fired");
    assert_eq!(ticks(&mut g, a), "ticks: 1");
}

#[test]
fn an_interval_timer_that_missed_due_times_follows_its_policy() {
    let mut g = TestGame::new(Clockwork::default);
    let a = g.player("Alice");
    g.input(a, "every 10 once");
    g.input(a, "every 10 catch");
    g.advance(Duration::from_secs(10));
    let mut seen = g.seen(a);
    seen.sort();
    assert_eq!(seen, ["tick catch", "tick once"]);
    // 35 s with no server: three due times missed.
    g.skip(Duration::from_secs(35));
    g.reload();
    let seen = g.seen(a);
    let once = seen.iter().filter(|l| *l == "tick once").count();
    let catch = seen.iter().filter(|l| *l == "tick catch").count();
    assert_eq!((once, catch), (1, 3), "{seen:?}");
    // Both are back on their cadence: the next due time is 50 s.
    g.advance(Duration::from_secs(4));
    assert!(g.seen(a).is_empty());
    g.advance(Duration::from_secs(1));
    assert_eq!(g.seen(a).len(), 2);
    assert_eq!(g.input(a, "stop"), ["cancelled 2"]);
    g.advance(Duration::from_secs(100));
    assert!(g.seen(a).is_empty());
}

#[test]
fn a_value_of_the_wrong_type_is_an_error_the_player_is_told_of_not_a_crash() {
    let mut g = TestGame::new(Clockwork::default);
    let a = g.player("Alice");
    g.input(a, "once 1");
    g.advance(Duration::from_secs(1));
    g.seen(a);
    assert_eq!(
        g.input(a, "misread"),
        ["Something went wrong; that did not work."]
    );
    assert_eq!(ticks(&mut g, a), "ticks: 1", "the game goes on");
}

#[test]
fn oob_from_a_client_reaches_its_handler_once_and_bad_oob_is_ignored() {
    let mut g = TestGame::new(Clockwork::default);
    let a = g.player("Alice");
    g.client_oob(a, "Char.Count", r#"{"by": 5}"#);
    assert_eq!(
        g.oob_seen(a),
        [("Char.Count".to_owned(), serde_json::json!({ "ticks": 5 }))]
    );
    g.client_oob(a, "Char.Count", "{not json");
    g.client_oob(a, "No.Such.Thing", "{}");
    g.reload();
    g.client_oob(a, "Char.Count", "");
    assert_eq!(
        g.oob_seen(a),
        [("Char.Count".to_owned(), serde_json::json!({ "ticks": 6 }))]
    );
    assert_eq!(ticks(&mut g, a), "ticks: 6");
}

#[test]
fn a_game_command_replaces_the_runtimes_of_the_same_name() {
    let mut g = TestGame::new(Clockwork::default);
    let a = g.player("Alice");
    assert_eq!(g.input(a, "who"), ["1 here, says the game"]);
    assert_eq!(g.input(a, "ping"), ["pong"], "the rest are still there");
}

#[test]
fn session_values_are_kept_across_a_reload_and_bounded() {
    let mut g = TestGame::new(Clockwork::default);
    let a = g.player("Alice");
    g.input(a, "remember {red}blue");
    g.reload();
    assert_eq!(g.input(a, "recall"), ["note: blue"]);
    let refused = g.input(a, "hoard");
    assert!(
        refused[0].starts_with("refused: session values would take"),
        "{refused:?}"
    );
    g.reload();
    assert_eq!(g.input(a, "recall"), ["note: blue"]);
}

#[test]
fn login_can_ask_for_the_name_then_the_password() {
    let mut g = TestGame::new(Clockwork::default);
    g.player("Alice");
    let s = g.connect();
    g.seen(s);
    assert_eq!(g.input(s, "connect"), ["Name: "]);
    assert_eq!(g.input(s, "Alice"), ["Password: "]);
    // Alice's first session plays her: this one takes over.
    assert_eq!(g.input(s, PASSWORD)[0], "Welcome back, Alice!");
    let s2 = g.connect();
    g.seen(s2);
    assert_eq!(g.input(s2, "connect alice"), ["Password: "]);
    assert_eq!(g.input(s2, "wrong"), ["Wrong name or password."]);
    assert_eq!(g.input(s2, "create"), ["Name: "]);
    assert_eq!(g.input(s2, ""), ["Never mind."]);
    assert_eq!(g.input(s2, "create Bob"), ["Password: "]);
    assert_eq!(g.input(s2, PASSWORD)[0], "Welcome, Bob!");
}

/// A game whose migrations make marker objects, so a test can count runs.
struct Migrating;

impl Game for Migrating {
    fn setup(_: &mut Setup<Self>) {}

    fn migrations() -> Vec<Migration> {
        MIGRATIONS.with(|m| m.borrow().clone())
    }
}

thread_local! {
    /// What `Migrating::migrations` gives: a "new build" adds one.
    static MIGRATIONS: std::cell::RefCell<Vec<Migration>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn marker(version: i64) -> Migration {
    let sql: &'static str = Box::leak(
        format!("INSERT INTO objects (kind, name) VALUES ('marker', 'v{version}');")
            .into_boxed_str(),
    );
    Migration {
        version,
        name: "a marker",
        sql,
    }
}

#[test]
fn game_migrations_run_once_each_in_the_server_that_serves() {
    MIGRATIONS.with(|m| *m.borrow_mut() = vec![marker(2), marker(1)]);
    let mut g = TestGame::new(|| Migrating);
    let names = |g: &mut TestGame<Migrating>| {
        g.with(|_, cx| {
            cx.all_of_kind("marker")
                .into_iter()
                .map(|m| cx.name(m).to_owned())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(names(&mut g), ["v1", "v2"], "in order of version");
    g.reload();
    assert_eq!(names(&mut g), ["v1", "v2"], "not again");
    // A new build with one more.
    MIGRATIONS.with(|m| m.borrow_mut().push(marker(3)));
    g.reload();
    assert_eq!(names(&mut g), ["v1", "v2", "v3"]);
}

/// Slow work done off the engine's thread: `sum N` adds 1..=N there (and
/// panics at 13, as buggy work would), and keeps a count of results.
#[derive(Default)]
struct Oracle;

impl Game for Oracle {
    fn setup(setup: &mut Setup<Self>) {
        setup
            .command(Spec::new("sum", "sum N", "Add up to N."), |_, cx, n| {
                let n: u64 = n.trim().parse().unwrap_or(0);
                cx.defer("sum", &n)?;
                cx.reply("thinking");
                Ok(())
            })
            .command(Spec::new("nosuch", "nosuch", "Bad work."), |_, cx, _| {
                cx.defer("nosuch", &0)?;
                cx.reply("deferred nothing?");
                Ok(())
            })
            .command(Spec::new("results", "results", "Count."), |_, cx, _| {
                let n: u32 = cx.session_value("results")?.unwrap_or(0);
                cx.reply(&format!("results: {n}"));
                Ok(())
            })
            .work(
                "sum",
                |n: u64| {
                    assert_ne!(n, 13, "unlucky");
                    (1..=n).sum::<u64>()
                },
                |_, cx, finished| {
                    let n: u32 = cx.session_value("results")?.unwrap_or(0);
                    cx.set_session_value("results", &(n + 1))?;
                    match finished.output::<u64>() {
                        Ok(sum) => cx.reply(&format!("the sum is {sum}")),
                        Err(e) => cx.reply(&format!("no sum: {e}")),
                    }
                    Ok(())
                },
            );
    }
}

#[test]
fn deferred_work_answers_later_in_a_transaction_of_its_own() {
    let mut g = TestGame::new(Oracle::default);
    let alice = g.player("Alice");
    // At once, as the engine does: the reply first, then the result.
    assert_eq!(g.input(alice, "sum 4"), ["thinking", "the sum is 10"]);

    // Held: the player goes on meanwhile, and the result comes after.
    g.hold_work(true);
    assert_eq!(g.input(alice, "sum 100"), ["thinking"]);
    assert_eq!(g.input(alice, "results"), ["results: 1"]);
    assert_eq!(g.work_waiting(), 1);
    g.run_work();
    assert_eq!(g.seen(alice), ["the sum is 5050"]);
    assert_eq!(g.input(alice, "results"), ["results: 2"]);
}

#[test]
fn deferred_work_lost_in_a_reload_runs_again_and_its_result_applies_once() {
    let mut g = TestGame::new(Oracle::default);
    let alice = g.player("Alice");
    g.hold_work(true);
    assert_eq!(g.input(alice, "sum 3"), ["thinking"]);
    // The server goes before the work is done: the next one finds its row.
    g.reload();
    assert_eq!(g.work_waiting(), 1, "the new server did not find the work");
    g.run_work();
    assert_eq!(g.seen(alice), ["the sum is 6"]);
    // Applied: a later reload finds nothing to run again.
    g.reload();
    assert_eq!(g.work_waiting(), 0);
    assert_eq!(g.input(alice, "results"), ["results: 1"]);
}

#[test]
fn panicking_or_unknown_work_is_an_error_the_game_hears_of_not_a_crash() {
    let mut g = TestGame::new(Oracle::default);
    let alice = g.player("Alice");
    let lines = g.input(alice, "sum 13");
    assert_eq!(lines[0], "thinking");
    assert!(
        lines[1].starts_with("no sum: work sum failed") && lines[1].contains("panicked"),
        "{lines:?}"
    );
    // The panic is not run again at the next start.
    g.reload();
    assert_eq!(g.input(alice, "results"), ["results: 1"]);
    // Work nobody registered: the handler fails, the player is told.
    assert_eq!(
        g.input(alice, "nosuch"),
        ["Something went wrong; that did not work."]
    );
}
