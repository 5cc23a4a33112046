//! The game driven in-process: events in, outbound events out, password work
//! run synchronously in between (or held back, to test what waits for it).

use std::collections::HashMap;
use std::path::PathBuf;

use ev::config::Synchronous;

use super::*;
use crate::auth::Hasher;
use crate::store::Store;
use ev::link::PortalSession;

/// A small game on the public API, as the old built-in demo was: one room,
/// `look`, `say`, and comings and goings told to the room.
#[derive(Default)]
pub(crate) struct Fixture {
    room: Option<ObjectId>,
}

impl api::Game for Fixture {
    fn setup(setup: &mut Setup<Self>) {
        setup
            .command(
                Spec::new("look", "look", "See where you are."),
                |_, cx, _| {
                    let text = look(cx);
                    cx.reply(&text);
                    Ok(())
                },
            )
            .command(
                Spec::new("say", "say TEXT", "Talk to everyone here (or \"TEXT).")
                    .aliases(&["\"", "'"]),
                |_, cx, text| {
                    let text = ev::markup::escape(ev::text::printable(text).trim());
                    let (Some(me), true) = (cx.character(), !text.is_empty()) else {
                        cx.reply("Say what?");
                        return Ok(());
                    };
                    cx.reply(&format!("You say, \"{text}\""));
                    if let Some(room) = cx.location(me) {
                        let heard = format!("{} says, \"{text}\"", cx.name(me));
                        cx.tell_room(room, &[me], &heard);
                    }
                    Ok(())
                },
            );
    }

    fn on_start(&mut self, cx: &mut Context) -> api::Result<()> {
        self.room = match cx.all_of_kind("room").first() {
            Some(room) => Some(*room),
            None => Some(cx.create("room", "Limbo", None)?),
        };
        Ok(())
    }

    fn start_location(&self, _: &Context) -> Option<ObjectId> {
        self.room
    }

    fn on_login(&mut self, cx: &mut Context) -> api::Result<()> {
        let text = look(cx);
        cx.reply(&text);
        if cx.login() != Some(Login::Takeover) {
            announce(cx, "has arrived.");
        }
        Ok(())
    }

    fn on_logout(&mut self, cx: &mut Context) -> api::Result<()> {
        announce(cx, "has left.");
        Ok(())
    }
}

fn look(cx: &Context) -> String {
    let (Some(me), Some(room)) = (cx.character(), cx.character().and_then(|c| cx.location(c)))
    else {
        return String::new();
    };
    let others: Vec<ObjectId> = cx
        .players_in(room)
        .into_iter()
        .filter(|c| *c != me)
        .collect();
    let mut names: Vec<&str> = others.iter().map(|c| cx.name(*c)).collect();
    sort_names(&mut names, cx.crowd_size());
    let here = if names.is_empty() {
        "You are alone here.".to_owned()
    } else {
        format!("Here: {}", name_list(&names, cx.crowd_size()))
    };
    format!(
        "{}\nA quiet grey space where new arrivals gather.\n{here}",
        cx.name(room)
    )
}

/// "NAME has arrived." to the rest of the room, unless it is a crowd.
fn announce(cx: &mut Context, what: &str) {
    let (Some(me), Some(room)) = (cx.character(), cx.character().and_then(|c| cx.location(c)))
    else {
        return;
    };
    let others = cx.player_count_in(room) - 1;
    if others < cx.crowd_size() {
        let text = format!("{} {what}", cx.name(me));
        cx.tell_room(room, &[me], &text);
    }
}

type Game = Kernel<Fixture>;

const S1: SessionId = SessionId(1);
const S2: SessionId = SessionId(2);
const S3: SessionId = SessionId(3);

fn rules() -> Rules {
    Rules {
        game_name: "Testgame".into(),
        max_name_len: 20,
        min_password_len: 4,
        login: Limits {
            failures_before_delay: 2,
            ..test_limits()
        },
        version: "ev-server test".into(),
        test_commands: false,
        crowd_size: 100,
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
    game: Game,
    hasher: Hasher,
    seqs: HashMap<SessionId, u64>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/game.db");
        let mut store = Store::open(&path, Synchronous::Normal).unwrap();
        store.migrate().unwrap();
        Harness {
            _dir: dir,
            path,
            store,
            game: Game::new(Fixture::default(), rules()),
            hasher: Hasher::cheap().expect("cheap argon2 parameters are valid"),
            seqs: HashMap::new(),
        }
    }

    /// A new server on the same database: a fresh game, the store reopened.
    fn restart(&mut self) {
        self.store = Store::open(&self.path, Synchronous::Normal).unwrap();
        self.store.migrate().unwrap();
        self.game = Game::new(Fixture::default(), rules());
    }

    /// One transaction over `events`, committed; jobs are returned, not run.
    fn step(&mut self, events: Vec<Inbound>) -> (Vec<Outbound>, Vec<Job>) {
        let mut out = Outbox::default();
        let tx = self.store.begin().unwrap();
        for event in events {
            self.game.handle(&tx, event, &mut out).unwrap();
        }
        tx.commit().unwrap();
        out.finish()
    }

    /// Completes one job in its own transaction, as the pool would: an
    /// abandoned job is not run.
    fn resume(&mut self, job: Job) -> (Vec<Outbound>, Vec<Job>) {
        let outcome = if job.abandon.is_set() {
            Outcome::Abandoned
        } else {
            self.hasher.run_blocking(job.work)
        };
        self.resume_with(job.id, job.session, outcome)
    }

    /// Hands the game `outcome` for job `id` in its own transaction.
    fn resume_with(
        &mut self,
        id: JobId,
        session: SessionId,
        outcome: Outcome,
    ) -> (Vec<Outbound>, Vec<Job>) {
        let mut out = Outbox::default();
        let tx = self.store.begin().unwrap();
        self.game
            .resume(&tx, id, session, outcome, &mut out)
            .unwrap();
        tx.commit().unwrap();
        out.finish()
    }

    /// `events` then every job they start, as the engine would: all output in order.
    fn batch(&mut self, events: Vec<Inbound>) -> Vec<Outbound> {
        let (mut sent, mut jobs) = self.step(events);
        while !jobs.is_empty() {
            let job = jobs.remove(0);
            let (more, new_jobs) = self.resume(job);
            sent.extend(more);
            jobs.extend(new_jobs);
        }
        sent
    }

    fn next_seq(&mut self, id: SessionId) -> u64 {
        let seq = self.seqs.entry(id).or_insert(0);
        *seq += 1;
        *seq
    }

    fn open(&mut self, id: SessionId) -> Vec<Outbound> {
        self.batch(vec![Inbound::Opened(PortalSession {
            id,
            peer: peer(id),
            ..Default::default()
        })])
    }

    fn input(&mut self, id: SessionId, text: &str) -> Vec<Outbound> {
        let seq = self.next_seq(id);
        self.batch(vec![input(id, seq, text)])
    }

    /// Opens a session and creates a character on it.
    fn player(&mut self, id: SessionId, name: &str) -> Vec<Outbound> {
        self.open(id);
        self.input(id, &format!("create {name} secret"))
    }

    fn last_seq(&mut self, id: SessionId) -> u64 {
        self.store.begin().unwrap().last_seq(id).unwrap()
    }

    /// The last output seq given to `id`.
    fn output_seq(&mut self, id: SessionId) -> u64 {
        self.store.begin().unwrap().output_seq(id).unwrap()
    }

    /// The snapshot of a portal that delivered everything sent so far.
    fn delivered(&mut self, snapshot: Snapshot) -> Snapshot {
        Snapshot {
            output_seq: self.output_seq(snapshot.portal.id),
            ..snapshot
        }
    }

    /// Runs `f` with a context over a transaction of its own, committed.
    fn with<R>(&mut self, f: impl FnOnce(&mut Context) -> R) -> R {
        let mut out = Outbox::default();
        let tx = self.store.begin().unwrap();
        let result = self.game.with_game(&tx, &mut out, None, |_, cx| f(cx));
        out.seal(&tx).unwrap();
        tx.commit().unwrap();
        result
    }

    /// The outbox rows of `id` above `seq`, as events.
    fn outbox(&mut self, id: SessionId, seq: u64) -> Vec<Outbound> {
        let tx = self.store.begin().unwrap();
        tx.outbox_after(id, seq)
            .unwrap()
            .into_iter()
            .map(|row| row.event().unwrap())
            .collect()
    }
}

/// Every test session connects from an address of its own.
fn peer(id: SessionId) -> String {
    format!("10.0.{}.{}:4000", id.0 / 256 % 256, id.0 % 256)
}

fn input(session: SessionId, seq: u64, text: &str) -> Inbound {
    Inbound::Input {
        session,
        seq,
        text: text.into(),
    }
}

/// The texts `id` was sent.
fn texts(out: &[Outbound], id: SessionId) -> Vec<&str> {
    out.iter()
        .filter_map(|e| match e {
            Outbound::Output { session, text, .. } if *session == id => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The events with their output seqs zeroed, to compare content alone.
fn unseq(out: &[Outbound]) -> Vec<Outbound> {
    out.iter()
        .cloned()
        .map(|mut e| {
            if let Some((_, seq)) = e.sequence_mut() {
                *seq = 0;
            }
            e
        })
        .collect()
}

/// The output seqs of the sequenced events for `id`, in order.
fn seqs(out: &[Outbound], id: SessionId) -> Vec<u64> {
    out.iter()
        .cloned()
        .filter_map(|mut e| match e.sequence_mut() {
            Some((session, seq)) if session == id => Some(*seq),
            _ => None,
        })
        .collect()
}

/// The output seq of a sequenced event; 0 for the others.
fn seq_of(e: &Outbound) -> u64 {
    e.clone().sequence_mut().map_or(0, |(_, seq)| *seq)
}

fn acks(out: &[Outbound]) -> Vec<(SessionId, u64)> {
    out.iter()
        .filter_map(|e| match e {
            Outbound::Ack { session, seq } => Some((*session, *seq)),
            _ => None,
        })
        .collect()
}

/// Playing the character of account `account_id`, which is object
/// `account_id + 1` (the fixture's room is object 1).
fn playing(session: SessionId, account_id: i64) -> Snapshot {
    playing_as(session, account_id, account_id + 1)
}

fn playing_as(session: SessionId, account_id: i64, character_id: i64) -> Snapshot {
    Snapshot {
        portal: PortalSession {
            id: session,
            peer: peer(session),
            ..Default::default()
        },
        acked_seq: 0,
        server: SessionState {
            stage: Stage::Playing,
            account_id,
            character_id,
            extra: vec![7],
            colours: ev::link::ColourChoice::Auto,
        },
        output_seq: 0,
    }
}

#[test]
fn new_session_gets_the_welcome_screen_and_login_stage() {
    let mut h = Harness::new();
    let out = h.open(S1);
    assert_eq!(
        out,
        vec![
            Outbound::Output {
                session: S1,
                seq: 1,
                text: command::welcome("Testgame"),
                form: ev::link::Form::LINE,
            },
            Outbound::Update {
                session: S1,
                seq: 2,
                server: SessionState::login()
            },
        ]
    );
}

#[test]
fn create_look_say_who_quit_between_two_sessions() {
    let mut h = Harness::new();
    let out = h.player(S1, "Alice");
    assert_eq!(
        texts(&out, S1),
        [
            "Welcome, Alice!",
            "Limbo\nA quiet grey space where new arrivals gather.\nYou are alone here."
        ]
    );
    assert!(unseq(&out).contains(&Outbound::Update {
        seq: 0,
        session: S1,
        server: SessionState {
            stage: Stage::Playing,
            account_id: 1,
            character_id: 2,
            extra: vec![],
            colours: ev::link::ColourChoice::Auto,
        }
    }));
    assert_eq!(acks(&out), [(S1, 1)]);

    let out = h.player(S2, "bob");
    assert_eq!(
        texts(&out, S2),
        [
            "Welcome, bob!",
            "Limbo\nA quiet grey space where new arrivals gather.\nHere: Alice"
        ]
    );
    assert_eq!(texts(&out, S1), ["bob has arrived."]);

    let out = h.input(S1, "  LOOK ");
    assert_eq!(
        texts(&out, S1),
        ["Limbo\nA quiet grey space where new arrivals gather.\nHere: bob"]
    );

    let out = h.input(S1, "say Hello  there ");
    assert_eq!(texts(&out, S1), ["You say, \"Hello  there\""]);
    assert_eq!(texts(&out, S2), ["Alice says, \"Hello  there\""]);
    let out = h.input(S2, "\"hi");
    assert_eq!(texts(&out, S1), ["bob says, \"hi\""]);
    assert_eq!(texts(&h.input(S2, "say"), S2), ["Say what?"]);

    h.player(S3, "Carol");
    assert_eq!(
        texts(&h.input(S3, "who"), S3),
        ["Players online (3): Alice, bob, Carol"]
    );

    let out = h.input(S2, "quit");
    assert_eq!(texts(&out, S2), ["Goodbye."]);
    assert!(unseq(&out).contains(&Outbound::Disconnect {
        seq: 0,
        session: S2,
        reason: "quit".into()
    }));
    assert_eq!(texts(&out, S1), ["bob has left."]);
    assert_eq!(texts(&out, S3), ["bob has left."]);
    assert_eq!(
        texts(&h.input(S1, "who"), S1),
        ["Players online (2): Alice, Carol"]
    );
    // Inputs of a session that quit are acknowledged and ignored.
    let out = h.batch(vec![input(S2, 9, "look")]);
    assert_eq!(
        out,
        vec![Outbound::Ack {
            session: S2,
            seq: 9
        }]
    );
}

#[test]
fn playing_commands_and_unknown_verbs() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    assert_eq!(texts(&h.input(S1, "ping"), S1), ["pong"]);
    assert_eq!(texts(&h.input(S1, "PING  a  b "), S1), ["pong a  b"]);
    assert_eq!(texts(&h.input(S1, "version"), S1), ["ev-server test"]);
    assert_eq!(
        texts(&h.input(S1, "Dance wildly"), S1),
        ["Unknown command 'Dance'. Type help for a list."]
    );
    assert!(texts(&h.input(S1, "help"), S1)[0].contains("say TEXT"));
    // An empty line is applied (and acknowledged) but says nothing.
    let out = h.input(S1, "   ");
    assert_eq!(
        out,
        vec![Outbound::Ack {
            session: S1,
            seq: 7
        }]
    );
}

#[test]
fn commands_answer_to_unique_prefixes_and_say_which_when_several_match() {
    let mut h = Harness::new();
    h.open(S1);
    assert_eq!(
        texts(&h.input(S1, "c Alice secret"), S1),
        ["Which did you mean: client, connect, create?"]
    );
    assert_eq!(
        texts(&h.input(S1, "cr Alice secret"), S1)[0],
        "Welcome, Alice!"
    );
    assert!(texts(&h.input(S1, "l"), S1)[0].starts_with("Limbo"));
    assert_eq!(texts(&h.input(S1, "'hi"), S1), ["You say, \"hi\""]);
    assert_eq!(
        texts(&h.input(S1, "connect Alice secret"), S1),
        ["You are already playing."]
    );
}

#[test]
fn help_lists_what_a_session_may_run_and_admins_grant_levels() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    let help = texts(&h.input(S1, "help"), S1)[0].to_owned();
    assert!(
        help.contains("say TEXT") && !help.contains("@grant"),
        "{help}"
    );
    assert!(!help.contains("connect NAME"), "{help}");
    assert_eq!(
        texts(&h.input(S1, "help say"), S1)[0],
        "say TEXT\n  Talk to everyone here (or \"TEXT).\n  Also: \", '"
    );
    // A player does not see the admin command at all.
    assert_eq!(
        texts(&h.input(S1, "@grant Alice admin"), S1),
        ["Unknown command '@grant'. Type help for a list."]
    );
    // An admin (as evctl init makes one) does, and grants in place.
    let tx = h.store.begin().unwrap();
    tx.create_account(
        "Root",
        &h.hasher.hash("rootpw").unwrap(),
        Level::Admin.as_i64(),
        None,
    )
    .unwrap();
    tx.commit().unwrap();
    h.open(S2);
    h.input(S2, "connect Root rootpw");
    assert!(texts(&h.input(S2, "help"), S2)[0].contains("Admin:\n  @grant NAME LEVEL"));
    assert_eq!(
        texts(&h.input(S2, "@grant alice admin"), S2),
        ["Alice is now admin."]
    );
    assert_eq!(
        texts(&h.input(S2, "@grant alice god"), S2),
        ["Usage: @grant NAME player|builder|admin"]
    );
    assert!(
        texts(&h.input(S1, "help"), S1)[0].contains("@grant"),
        "Alice's session has it at once"
    );
    // And after a reload, from the account.
    let snapshot = h.delivered(playing(S1, 1));
    h.restart();
    h.batch(vec![Inbound::Sync {
        sessions: vec![snapshot],
        last: true,
    }]);
    assert!(texts(&h.input(S1, "help"), S1)[0].contains("@grant"));
}

#[test]
fn every_command_is_registered_and_no_secret_is_logged() {
    let game = Game::new(
        Fixture::default(),
        Rules {
            test_commands: true,
            ..rules()
        },
    );
    let mut names: Vec<&str> = game.commands.names().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "@crash", "@grant", "@hang", "@markup", "@timer", "@timers", "@work", "client",
            "colour", "connect", "create", "help", "look", "ping", "quit", "say", "version", "who"
        ],
        "a command clashed with another and was left out"
    );
    assert_eq!(
        game.loggable(S1, "connect Alice hunter2"),
        "connect Alice <secret>"
    );
    assert_eq!(game.loggable(S1, "cre Bob hunter2"), "cre Bob <secret>");
}

#[test]
fn login_screen_commands() {
    let mut h = Harness::new();
    h.open(S1);
    assert_eq!(texts(&h.input(S1, "ping x"), S1), ["pong x"]);
    assert_eq!(
        texts(&h.input(S1, "look"), S1),
        ["Unknown command 'look'. Type create NAME PASSWORD, connect NAME PASSWORD, or help."]
    );
    assert!(texts(&h.input(S1, "HELP"), S1)[0].contains("connect NAME PASSWORD"));
    assert_eq!(
        texts(&h.input(S1, "create Al pass word"), S1),
        ["Usage: create NAME PASSWORD (or create alone, to be asked)"]
    );
    assert_eq!(
        texts(&h.input(S1, "create A1 secret"), S1),
        ["Names are 2-20 letters, A to Z only."]
    );
    assert_eq!(
        texts(&h.input(S1, "create Al abc"), S1),
        ["Passwords need at least 4 characters and no spaces."]
    );
    let out = h.input(S1, "quit");
    assert_eq!(texts(&out, S1), ["Goodbye."]);
    assert!(unseq(&out).contains(&Outbound::Disconnect {
        seq: 0,
        session: S1,
        reason: "quit".into()
    }));
    assert_eq!(h.game.session_count(), 0);
}

#[test]
fn name_taken_in_any_case() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.open(S2);
    assert_eq!(
        texts(&h.input(S2, "create ALICE other"), S2),
        ["That name is taken."]
    );
}

#[test]
fn two_creates_of_one_name_racing_for_the_hash() {
    let mut h = Harness::new();
    h.open(S1);
    h.open(S2);
    let (_, mut jobs) = h.step(vec![
        input(S1, 1, "create Dora secret"),
        input(S2, 1, "create dora secret"),
    ]);
    assert_eq!(jobs.len(), 2);
    let second = jobs.pop().unwrap();
    let (out, _) = h.resume(jobs.pop().unwrap());
    assert_eq!(texts(&out, S1)[0], "Welcome, Dora!");
    let (out, _) = h.resume(second);
    assert_eq!(texts(&out, S2), ["That name is taken."]);
    assert_eq!(acks(&out), [(S2, 1)]);
}

#[test]
fn connect_wrong_password_and_unknown_name_read_the_same() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.input(S1, "quit");
    h.open(S2);
    assert_eq!(
        texts(&h.input(S2, "connect alice wrong"), S2),
        ["Wrong name or password."]
    );
    assert_eq!(
        texts(&h.input(S2, "connect nobody secret"), S2),
        ["Wrong name or password."]
    );
    assert_eq!(
        texts(&h.input(S2, "connect x! secret"), S2),
        ["Wrong name or password."]
    );
    assert_eq!(
        texts(&h.input(S2, "connect alice x y"), S2),
        ["Usage: connect NAME PASSWORD (or connect alone, to be asked)"]
    );
    let out = h.input(S2, "connect alice secret");
    assert_eq!(
        texts(&out, S2),
        [
            "Welcome back, Alice!",
            "Limbo\nA quiet grey space where new arrivals gather.\nYou are alone here."
        ]
    );
}

#[test]
fn failed_logins_delay_later_answers() {
    let mut h = Harness::new();
    h.open(S1);
    let mut delays = Vec::new();
    for seq in 1..=4 {
        let (_, jobs) = h.step(vec![input(S1, seq, "connect ghost secret")]);
        let [job] = <[Job; 1]>::try_from(jobs).unwrap();
        delays.push(job.delay);
        let (out, _) = h.resume(job);
        assert_eq!(texts(&out, S1), ["Wrong name or password."]);
    }
    // failures_before_delay is 2: the third and fourth answers wait.
    assert_eq!(delays, [false, false, true, true]);
}

#[test]
fn failures_follow_the_address_across_connections_and_the_owner_still_gets_in() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.input(S1, "quit");
    let attacker = "10.66.0.1:5000";
    let per_address = test_limits().failures_per_address;
    let mut answers = Vec::new();
    for n in 0..=u64::from(per_address) {
        // A new connection for every guess.
        let id = SessionId(100 + n);
        h.batch(vec![Inbound::Opened(PortalSession {
            id,
            peer: attacker.into(),
            ..Default::default()
        })]);
        let (out, jobs) = h.step(vec![input(id, 1, "connect alice wrong")]);
        match <[Job; 1]>::try_from(jobs) {
            Ok([job]) => {
                answers.push(if job.delay { "late" } else { "at once" }.to_owned());
                h.resume(job);
            }
            Err(_) => answers.push(texts(&out, id)[0].to_owned()),
        }
    }
    let late = per_address as usize - 2;
    assert_eq!(answers[..2], ["at once"; 2]);
    assert_eq!(answers[2..answers.len() - 1], vec!["late"; late][..]);
    assert_eq!(answers.last().unwrap(), throttle::TOO_MANY_FAILURES);
    // The owner, elsewhere, is slowed but let in; then the count is cleared.
    h.open(S2);
    let (_, jobs) = h.step(vec![input(S2, 1, "connect alice secret")]);
    let [job] = <[Job; 1]>::try_from(jobs).unwrap();
    assert!(job.delay);
    let (out, _) = h.resume(job);
    assert_eq!(texts(&out, S2)[0], "Welcome back, Alice!");
    h.open(S3);
    let (_, jobs) = h.step(vec![input(S3, 1, "connect alice secret")]);
    assert!(!jobs[0].delay);
}

#[test]
fn account_creation_is_limited_per_address() {
    let mut h = Harness::new();
    h.game = Game::new(
        Fixture::default(),
        Rules {
            login: Limits {
                creates_per_address_per_hour: 1,
                ..test_limits()
            },
            ..rules()
        },
    );
    for id in [S1, S2] {
        h.batch(vec![Inbound::Opened(PortalSession {
            id,
            peer: "10.7.7.7:1".into(),
            ..Default::default()
        })]);
    }
    assert_eq!(
        texts(&h.input(S1, "create Alice secret"), S1)[0],
        "Welcome, Alice!"
    );
    assert_eq!(
        texts(&h.input(S2, "create Bob secret"), S2),
        [throttle::TOO_MANY_CREATES_HERE]
    );
    h.open(S3);
    assert_eq!(
        texts(&h.input(S3, "create Bob secret"), S3)[0],
        "Welcome, Bob!"
    );
}

#[test]
fn arrival_is_seen_by_others_on_connect_and_a_takeover_moves_the_character() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    h.open(S3);
    let out = h.input(S3, "connect bob secret");
    assert_eq!(texts(&out, S2), ["Another connection took over Bob."]);
    assert!(unseq(&out).contains(&Outbound::Disconnect {
        seq: 0,
        session: S2,
        reason: "takeover".into()
    }));
    assert_eq!(texts(&out, S3)[0], "Welcome back, Bob!");
    assert!(texts(&out, S1).is_empty(), "Bob never left the room");
    assert_eq!(
        texts(&h.input(S1, "who"), S1),
        ["Players online (2): Alice, Bob"]
    );
    // The old connection is back at the login screen until the portal closes it.
    assert_eq!(texts(&h.input(S2, "ping"), S2), ["pong"]);
    let out = h.batch(vec![Inbound::Closed {
        session: S2,
        reason: String::new(),
    }]);
    assert!(out.is_empty(), "{out:?}");
    // A plain log-in announces the arrival.
    h.input(S3, "quit");
    h.open(SessionId(4));
    let out = h.input(SessionId(4), "connect BOB secret");
    assert_eq!(texts(&out, S1), ["Bob has arrived."]);
}

#[test]
fn an_applied_seq_is_only_acknowledged_again() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    let out = h.batch(vec![input(S1, 2, "say once")]);
    assert_eq!(texts(&out, S2), ["Alice says, \"once\""]);
    for seq in [2, 1] {
        let out = h.batch(vec![input(S1, seq, "say once")]);
        assert_eq!(out, vec![Outbound::Ack { session: S1, seq }]);
    }
    // Also after a restart: the database says what was applied.
    h.restart();
    let sessions = vec![h.delivered(playing(S1, 1)), h.delivered(playing(S2, 2))];
    let out = h.batch(vec![Inbound::Sync {
        sessions,
        last: true,
    }]);
    assert_eq!(out, vec![Outbound::Ready { sessions: 2 }]);
    let out = h.batch(vec![input(S1, 2, "say once"), input(S1, 3, "say twice")]);
    assert_eq!(texts(&out, S2), ["Alice says, \"twice\""]);
    assert_eq!(acks(&out), [(S1, 3)]);
}

#[test]
fn group_commit_writes_every_last_seq_in_the_one_transaction() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    let (out, _) = h.step(vec![
        input(S1, 2, "say a"),
        input(S2, 2, "say b"),
        input(S1, 3, "say c"),
        input(S2, 3, "ping"),
    ]);
    // Acks come last, one per session, with its highest seq.
    let n = out.len();
    assert_eq!(
        out[n - 2..],
        [
            Outbound::Ack {
                session: S1,
                seq: 3
            },
            Outbound::Ack {
                session: S2,
                seq: 3
            }
        ]
    );
    assert!(
        out[..n - 2]
            .iter()
            .all(|e| matches!(e, Outbound::Output { .. }))
    );

    // A batch whose transaction never commits (a crash) leaves no trace.
    let mut out = Outbox::default();
    let tx = h.store.begin().unwrap();
    h.game
        .handle(&tx, input(S1, 4, "say lost"), &mut out)
        .unwrap();
    drop(tx);

    h.restart();
    assert_eq!(h.last_seq(S1), 3);
    assert_eq!(h.last_seq(S2), 3);
}

#[test]
fn sync_restores_playing_sessions_with_their_characters() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    h.open(S3);
    h.restart();
    // The portal delivered everything: nothing is sent again.
    let s1 = h.delivered(playing(S1, 1));
    let s2 = h.delivered(playing(S2, 2));
    let s3 = h.delivered(Snapshot {
        portal: PortalSession {
            id: S3,
            peer: peer(S3),
            ..Default::default()
        },
        acked_seq: 0,
        server: SessionState::login(),
        output_seq: 0,
    });
    let out = h.batch(vec![
        Inbound::Sync {
            sessions: vec![s1],
            last: false,
        },
        Inbound::Sync {
            sessions: vec![
                s2,
                s3,
                Snapshot {
                    portal: PortalSession {
                        id: SessionId(4),
                        peer: peer(SessionId(4)),
                        ..Default::default()
                    },
                    acked_seq: 0,
                    server: SessionState {
                        stage: Stage::New,
                        ..SessionState::login()
                    },
                    output_seq: 0,
                },
            ],
            last: true,
        },
    ]);
    // No arrival messages; the never-greeted session is greeted; then Ready.
    assert_eq!(
        out,
        vec![
            Outbound::Output {
                session: SessionId(4),
                seq: 1,
                text: command::welcome("Testgame"),
                form: ev::link::Form::LINE,
            },
            Outbound::Update {
                session: SessionId(4),
                seq: 2,
                server: SessionState::login()
            },
            Outbound::Ready { sessions: 4 },
        ]
    );
    let out = h.batch(vec![input(S1, 2, "look")]);
    assert_eq!(
        texts(&out, S1),
        ["Limbo\nA quiet grey space where new arrivals gather.\nHere: Bob"]
    );
    assert_eq!(
        texts(&h.batch(vec![input(S3, 1, "look")]), S3)[0],
        "Unknown command 'look'. Type create NAME PASSWORD, connect NAME PASSWORD, or help."
    );
    let out = h.batch(vec![input(S2, 2, "quit")]);
    assert_eq!(texts(&out, S1), ["Bob has left."]);

    // A later Sync that leaves S1 out drops it: its character leaves.
    h.player(SessionId(5), "Carol");
    let carol = h.delivered(playing(SessionId(5), 3));
    let out = h.batch(vec![Inbound::Sync {
        sessions: vec![carol],
        last: true,
    }]);
    assert_eq!(texts(&out, SessionId(5)), ["Alice has left."]);
    assert_eq!(out.last(), Some(&Outbound::Ready { sessions: 1 }));
    assert_eq!(h.last_seq(S1), 0, "dropped sessions are forgotten");
}

#[test]
fn a_new_servers_sync_forgets_sessions_it_does_not_list() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    assert!(h.last_seq(S1) > 0 && h.output_seq(S1) > 0);
    assert!(!h.outbox(S1, 0).is_empty());
    let bobs_seq = h.last_seq(S2);
    // S1 closed while no server ran: the next one hears only of S2.
    h.restart();
    let bob = h.delivered(playing(S2, 2));
    let out = h.batch(vec![Inbound::Sync {
        sessions: vec![bob],
        last: true,
    }]);
    assert_eq!(out.last(), Some(&Outbound::Ready { sessions: 1 }));
    assert_eq!(
        (h.last_seq(S1), h.output_seq(S1), h.outbox(S1, 0)),
        (0, 0, vec![])
    );
    assert_eq!(h.last_seq(S2), bobs_seq, "the listed session is kept");
}

#[test]
fn sync_of_a_missing_character_goes_back_to_login() {
    let mut h = Harness::new();
    let out = h.batch(vec![Inbound::Sync {
        sessions: vec![playing_as(S1, 5, 42)],
        last: true,
    }]);
    assert_eq!(texts(&out, S1), [command::welcome("Testgame")]);
    assert!(unseq(&out).contains(&Outbound::Update {
        seq: 0,
        session: S1,
        server: SessionState::login()
    }));
}

#[test]
fn inputs_wait_behind_a_password_hash_and_other_sessions_go_on() {
    let mut h = Harness::new();
    h.player(S2, "Bob");
    h.open(S1);
    let (out, jobs) = h.step(vec![
        input(S1, 1, "create Alice secret"),
        input(S1, 2, "say first"),
        input(S2, 2, "ping other"),
        input(S1, 3, "say second"),
    ]);
    // S1 is waiting: nothing from it, nothing acknowledged; S2 is answered.
    assert_eq!(texts(&out, S1), Vec::<&str>::new());
    assert_eq!(texts(&out, S2), ["pong other"]);
    assert_eq!(acks(&out), [(S2, 2)]);
    // A re-delivery of a waiting input is not run twice.
    let (out, more) = h.step(vec![input(S1, 2, "say first")]);
    assert!(out.is_empty() && more.is_empty(), "{out:?}");

    let [job] = <[Job; 1]>::try_from(jobs).unwrap();
    let (out, _) = h.resume(job);
    assert_eq!(
        texts(&out, S1),
        [
            "Welcome, Alice!",
            "Limbo\nA quiet grey space where new arrivals gather.\nHere: Bob",
            "You say, \"first\"",
            "You say, \"second\""
        ]
    );
    assert_eq!(
        texts(&out, S2),
        [
            "Alice has arrived.",
            "Alice says, \"first\"",
            "Alice says, \"second\""
        ]
    );
    assert_eq!(acks(&out), [(S1, 3)]);
    assert_eq!(h.last_seq(S1), 3);
}

#[test]
fn a_close_waits_behind_a_hash_already_running() {
    let mut h = Harness::new();
    h.player(S2, "Bob");
    h.open(S1);
    let (_, jobs) = h.step(vec![input(S1, 1, "create Alice secret")]);
    let [job] = <[Job; 1]>::try_from(jobs).unwrap();
    // The pool has started it: the close comes too late to abandon it.
    let outcome = h.hasher.run_blocking(job.work.clone());
    h.step(vec![
        Inbound::Closed {
            session: S1,
            reason: String::new(),
        },
        input(S1, 2, "say too late"),
    ]);
    let (out, _) = h.resume_with(job.id, job.session, outcome);
    assert_eq!(texts(&out, S2), ["Alice has arrived.", "Alice has left."]);
    assert_eq!(acks(&out), [(S1, 2)]);
    assert_eq!(h.game.session_count(), 1);
    assert_eq!(h.last_seq(S1), 0);
    // The account was made all the same: the input was applied.
    h.open(S3);
    assert_eq!(
        texts(&h.input(S3, "connect alice secret"), S3)[0],
        "Welcome back, Alice!"
    );
}

#[test]
fn a_close_abandons_a_hash_not_yet_started() {
    let mut h = Harness::new();
    h.player(S2, "Bob");
    h.open(S1);
    let (_, jobs) = h.step(vec![
        input(S1, 1, "create Alice secret"),
        Inbound::Closed {
            session: S1,
            reason: String::new(),
        },
    ]);
    let [job] = <[Job; 1]>::try_from(jobs).unwrap();
    assert!(job.abandon.is_set(), "the close abandons the waiting job");
    let (out, _) = h.resume(job);
    assert_eq!(texts(&out, S2), Vec::<&str>::new());
    assert_eq!(acks(&out), [(S1, 1)]);
    assert_eq!(h.game.session_count(), 1);
    h.open(S3);
    assert_eq!(
        texts(&h.input(S3, "connect alice secret"), S3)[0],
        "Wrong name or password."
    );
}

#[test]
fn past_the_job_room_a_login_is_told_to_try_again_and_applied() {
    let mut h = Harness::new();
    for id in [S1, S2, S3] {
        h.open(id);
    }
    let mut out = Outbox::with_job_room(2);
    let tx = h.store.begin().unwrap();
    for (i, id) in [S1, S2, S3].into_iter().enumerate() {
        let text = format!("create Name{} secret", ["a", "b", "c"][i]);
        h.game.handle(&tx, input(id, 1, &text), &mut out).unwrap();
    }
    tx.commit().unwrap();
    let (sent, jobs) = out.finish();
    assert_eq!(jobs.len(), 2);
    assert_eq!(texts(&sent, S3), [BUSY]);
    assert_eq!(acks(&sent), [(S3, 1)]);
    assert_eq!(h.last_seq(S3), 1);
    // The busy session is not waiting: its next input runs at once.
    let (sent, _) = h.step(vec![input(S3, 2, "ping")]);
    assert_eq!(texts(&sent, S3), ["pong"]);
}

#[test]
fn inputs_for_unknown_sessions_are_acknowledged_and_ignored() {
    let mut h = Harness::new();
    let out = h.batch(vec![input(SessionId(77), 5, "look")]);
    assert_eq!(
        out,
        vec![Outbound::Ack {
            session: SessionId(77),
            seq: 5
        }]
    );
    assert_eq!(h.last_seq(SessionId(77)), 0);
}

#[test]
fn odd_text_never_panics() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    h.open(S3);
    let long_word = "é".repeat(50_000);
    let lines = [
        "\u{0}",
        "\u{1b}[2J\u{7}",
        "say \u{1b}[31mred\u{7}",
        "\"",
        "\"\u{301}",
        "say \u{200b}",
        "İ",
        "ß ẞ",
        "👩‍👩‍👧 hi",
        long_word.as_str(),
        "\r\n\t",
        "\u{fffd}\u{fffe}",
        "create \u{1d400}\u{1d401} pass",
        "connect \u{0} \u{0}",
        "ping \u{202e}olleh",
    ];
    for line in lines {
        for id in [S1, S3] {
            let out = h.input(id, line);
            assert!(acks(&out).iter().any(|(s, _)| *s == id), "{line:?}");
        }
    }
    // Control characters never reach another player.
    let out = h.input(S1, "say \u{1b}[31mred\u{7}");
    assert_eq!(texts(&out, S2), ["Alice says, \"[31mred\""]);
}

// === exactly-once output ===

/// The sequenced events for `id` in `out`.
fn sequenced(out: &[Outbound], id: SessionId) -> Vec<Outbound> {
    out.iter()
        .filter(|e| {
            let mut e = (*e).clone();
            matches!(e.sequence_mut(), Some((session, _)) if session == id)
        })
        .cloned()
        .collect()
}

#[test]
fn output_is_sequenced_per_session_and_kept_in_the_outbox() {
    let mut h = Harness::new();
    let mut sent = h.open(S1);
    sent.extend(h.input(S1, "create Alice secret"));
    // Welcome screen, login stage; then playing stage, greeting, room.
    assert_eq!(seqs(&sent, S1), [1, 2, 3, 4, 5]);
    let out = h.player(S2, "Bob");
    assert_eq!(
        seqs(&out, S2),
        [3, 4, 5],
        "each session has its own counter"
    );
    // What others see is sequenced by the session that sees it.
    assert_eq!(texts(&out, S1), ["Bob has arrived."]);
    assert_eq!(seqs(&out, S1), [6]);
    sent.extend(out);
    // Acks are not sequenced and not kept.
    assert!(acks(&sent).contains(&(S1, 1)));
    assert_eq!(h.outbox(S1, 0), sequenced(&sent, S1));
    assert_eq!(h.output_seq(S1), 6);
}

#[test]
fn an_outbox_row_is_written_in_the_commands_transaction_or_not_at_all() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    let before = h.outbox(S1, 0);
    let counter = h.output_seq(S1);
    assert_eq!(counter, 5);
    let mut out = Outbox::default();
    let tx = h.store.begin().unwrap();
    h.game
        .handle(&tx, input(S1, 2, "ping lost"), &mut out)
        .unwrap();
    drop(tx); // the crash before the commit
    let (events, _) = out.finish();
    assert_eq!(seqs(&events, S1), [6], "sealed inside the transaction");
    h.restart();
    assert_eq!(h.outbox(S1, 0), before, "no row");
    assert_eq!(h.output_seq(S1), counter, "no counter change");
    assert_eq!(h.last_seq(S1), 1);
}

#[test]
fn sync_resends_exactly_what_is_above_the_delivered_mark_first_and_prunes_the_rest() {
    let mut h = Harness::new();
    let mut sent = h.player(S1, "Alice");
    sent.extend(h.player(S2, "Bob"));
    sent.extend(h.input(S1, "ping a"));
    sent.extend(h.input(S1, "ping b"));
    let s1 = sequenced(&sent, S1);
    assert_eq!(seqs(&s1, S1), [3, 4, 5, 6, 7, 8]);

    // A new server; the portal delivered S1's output up to 5, all of S2's.
    h.restart();
    let s2 = h.delivered(playing(S2, 2));
    let out = h.batch(vec![
        Inbound::Sync {
            sessions: vec![
                Snapshot {
                    output_seq: 5,
                    ..playing(S1, 1)
                },
                s2,
            ],
            last: true,
        },
        input(S1, 4, "ping c"),
    ]);
    let again: Vec<Outbound> = s1.iter().filter(|e| seq_of(e) > 5).cloned().collect();
    assert_eq!(texts(&again, S1), ["Bob has arrived.", "pong a", "pong b"]);
    let mut expected = again.clone();
    expected.push(Outbound::Ready { sessions: 2 });
    expected.push(Outbound::Output {
        session: S1,
        seq: 9,
        text: "pong c".into(),
        form: ev::link::Form::LINE,
    });
    expected.push(Outbound::Ack {
        session: S1,
        seq: 4,
    });
    assert_eq!(out, expected, "re-sent in order, before anything new");
    assert_eq!(
        seqs(&h.outbox(S1, 0), S1),
        [6, 7, 8, 9],
        "rows up to 5 are gone"
    );
    assert!(h.outbox(S2, 0).is_empty());

    // The portal confirms delivery: the rows go, with the next transaction.
    let out = h.batch(vec![Inbound::Delivered {
        session: S1,
        seq: 8,
    }]);
    assert!(out.is_empty());
    assert_eq!(seqs(&h.outbox(S1, 0), S1), [9]);
}

#[test]
fn the_counter_survives_a_restart_and_never_goes_below_the_portals_mark() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.restart();
    let s1 = h.delivered(playing(S1, 1));
    h.batch(vec![Inbound::Sync {
        sessions: vec![s1],
        last: true,
    }]);
    assert_eq!(seqs(&h.input(S1, "ping"), S1), [6]);
    // A portal mark above the counter (it cannot happen, but) wins.
    h.restart();
    h.batch(vec![Inbound::Sync {
        sessions: vec![Snapshot {
            output_seq: 40,
            ..playing(S1, 1)
        }],
        last: true,
    }]);
    assert_eq!(seqs(&h.input(S1, "ping"), S1), [41]);
    assert!(h.outbox(S1, 0).iter().all(|e| seq_of(e) > 40));
}

#[test]
fn a_login_whose_update_was_not_delivered_is_restored_logged_in() {
    let mut h = Harness::new();
    h.open(S1);
    h.input(S1, "create Alice secret");
    // The crash came before the portal saw the playing stage: its snapshot
    // still says login, delivered up to the login stage (2).
    h.restart();
    let out = h.batch(vec![Inbound::Sync {
        sessions: vec![Snapshot {
            portal: PortalSession {
                id: S1,
                peer: peer(S1),
                ..Default::default()
            },
            acked_seq: 0,
            server: SessionState::login(),
            output_seq: 2,
        }],
        last: true,
    }]);
    assert_eq!(
        texts(&out, S1),
        [
            "Welcome, Alice!",
            "Limbo\nA quiet grey space where new arrivals gather.\nYou are alone here."
        ]
    );
    assert_eq!(seqs(&out, S1), [3, 4, 5]);
    assert_eq!(
        texts(&h.batch(vec![input(S1, 2, "who")]), S1),
        ["Players online (1): Alice"]
    );
}

#[test]
fn a_quit_whose_disconnect_was_not_delivered_stays_out_of_the_game() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    let mark = h.output_seq(S2);
    h.input(S2, "quit");
    h.restart();
    let s1 = h.delivered(playing(S1, 1));
    let out = h.batch(vec![Inbound::Sync {
        sessions: vec![
            s1,
            Snapshot {
                output_seq: mark,
                ..playing(S2, 2)
            },
        ],
        last: true,
    }]);
    assert_eq!(texts(&out, S2), ["Goodbye."]);
    assert!(unseq(&out).contains(&Outbound::Disconnect {
        session: S2,
        seq: 0,
        reason: "quit".into()
    }));
    assert_eq!(out.last(), Some(&Outbound::Ready { sessions: 1 }));
    assert_eq!(
        texts(&h.batch(vec![input(S1, 2, "who")]), S1),
        ["Players online (1): Alice"]
    );
}

#[test]
fn open_close_and_a_final_sync_forget_a_sessions_output() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    h.player(S3, "Carol");
    // Opened again (a stale number): the counter starts over, old rows go.
    let out = h.batch(vec![
        Inbound::Closed {
            session: S1,
            reason: String::new(),
        },
        Inbound::Opened(PortalSession {
            id: S1,
            peer: peer(S1),
            ..Default::default()
        }),
    ]);
    assert_eq!(seqs(&out, S1), [1, 2]);
    assert_eq!(seqs(&h.outbox(S1, 0), S1), [1, 2]);
    h.batch(vec![Inbound::Closed {
        session: S1,
        reason: String::new(),
    }]);
    assert!(h.outbox(S1, 0).is_empty());
    assert_eq!(h.output_seq(S1), 0);
    // A final Sync without S2 drops its rows too.
    let s3 = h.delivered(playing(S3, 3));
    h.batch(vec![Inbound::Sync {
        sessions: vec![s3],
        last: true,
    }]);
    assert!(h.outbox(S2, 0).is_empty());
    assert_eq!(h.output_seq(S2), 0);
    // S3's delivered rows are pruned; what the Sync itself sent it stays.
    assert_eq!(texts(&h.outbox(S3, 0), S3), ["Bob has left."]);
}

#[test]
fn a_crowd_is_not_told_of_each_arrival_and_lists_are_cut_short() {
    let mut h = Harness::new();
    h.game = Game::new(
        Fixture::default(),
        Rules {
            crowd_size: 2,
            ..rules()
        },
    );
    h.player(S1, "Alice");
    let out = h.player(S2, "Bob");
    assert_eq!(texts(&out, S1), ["Bob has arrived."]);
    h.player(S3, "Carol");
    // Two others are there already: a crowd, so nobody is told.
    let out = h.player(SessionId(4), "Dave");
    assert!(texts(&out, S1).is_empty(), "{out:?}");
    let out = h.input(S1, "look");
    assert_eq!(
        texts(&out, S1),
        ["Limbo\nA quiet grey space where new arrivals gather.\nHere: Bob, Carol and 1 more"]
    );
    let out = h.input(S1, "who");
    assert_eq!(
        texts(&out, S1),
        ["Players online (4): Alice, Bob and 2 more"]
    );
}

#[test]
fn names_sort_ignoring_case_then_by_bytes() {
    let mut names = vec!["bob", "Alice", "alice", "Carol", "ALICE", "al"];
    super::sort_names(&mut names, 10);
    assert_eq!(names, ["al", "ALICE", "Alice", "alice", "bob", "Carol"]);
}

#[test]
fn names_compare_as_their_lowered_bytes_then_their_bytes_at_any_length() {
    fn slow(a: &&str, b: &&str) -> std::cmp::Ordering {
        a.to_ascii_lowercase()
            .cmp(&b.to_ascii_lowercase())
            .then(a.cmp(b))
    }
    // Names of many lengths, alike but for one byte or one letter's case
    // anywhere, and names not in ASCII.
    let mut names: Vec<String> = vec![String::new(), "é".into(), "É".into(), "Zoë".into()];
    for len in 1..12 {
        for at in 0..len {
            for c in ['a', 'A', 'b', 'Z', '[', '`', '@', '{', '~'] {
                let mut name: Vec<char> = "abcdefghijklmnopqrst".chars().take(len).collect();
                name[at] = c;
                names.push(name.into_iter().collect());
            }
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for a in &names {
        for b in &names {
            assert_eq!(super::by_name(a, b), slow(a, b), "{a:?} against {b:?}");
        }
    }
}

#[test]
fn only_the_names_shown_are_put_in_order() {
    let mut names = vec!["e", "B", "d", "a", "C", "f"];
    super::sort_names(&mut names, 3);
    assert_eq!(names[..3], ["a", "B", "C"]);
    let mut rest = names[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["d", "e", "f"]);
    super::sort_names(&mut names, 0);
    assert_eq!(names.len(), 6);
}

#[test]
fn client_shows_what_the_portal_knows_and_follows_its_updates() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    let out = h.input(S1, "client");
    assert_eq!(texts(&out, S1), ["Your client: unknown"]);
    let info = PortalSession {
        id: S1,
        peer: peer(S1),
        client: "MUDLET 4.17.2".into(),
        terminal: "XTERM-256COLOR".into(),
        width: 120,
        height: 40,
        encoding: "utf-8".into(),
        capabilities: ev::link::Capabilities(1 | 8),
        ..Default::default()
    };
    h.batch(vec![Inbound::SessionInfo(info.clone())]);
    let out = h.input(S1, "client");
    assert_eq!(
        texts(&out, S1),
        [
            "Your client: MUDLET 4.17.2 (XTERM-256COLOR), 120x40, UTF-8; capabilities: ANSI, 256 colours"
        ]
    );
    // For a session it does not know, nothing happens.
    h.batch(vec![Inbound::SessionInfo(PortalSession {
        id: SessionId(999),
        ..info
    })]);
}

#[test]
fn a_password_asked_for_is_a_secret_prompt_and_its_answer_never_reaches_a_log() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.open(S2);
    let prompt = |out: &[Outbound]| -> Vec<(String, ev::link::TextKind)> {
        out.iter()
            .filter_map(|e| match e {
                Outbound::Output {
                    session,
                    text,
                    form,
                    ..
                } if *session == S2 => Some((text.clone(), form.kind)),
                _ => None,
            })
            .collect()
    };
    let out = h.input(S2, "connect");
    assert_eq!(
        prompt(&out),
        [("Name: ".into(), ev::link::TextKind::Prompt)]
    );
    assert_eq!(h.game.loggable(S2, "Alice"), "Alice", "a name is no secret");
    let out = h.input(S2, "Alice");
    assert_eq!(
        prompt(&out),
        [("Password: ".into(), ev::link::TextKind::Secret)]
    );
    assert_eq!(h.game.loggable(S2, "secret"), "<secret>");
    assert_eq!(h.game.loggable(S1, "say secret"), "say secret");
    let out = h.input(S2, "secret");
    assert_eq!(texts(&out, S2)[0], "Welcome back, Alice!");
    assert_eq!(h.game.loggable(S2, "say secret"), "say secret");
}

#[test]
fn a_world_read_ahead_catches_up_on_every_change_made_since() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    let with = |h: &mut Harness, f: &dyn Fn(&mut Context)| {
        let mut out = Outbox::default();
        let tx = h.store.begin().unwrap();
        h.game.with_game(&tx, &mut out, None, |_, cx| f(cx));
        out.seal(&tx).unwrap();
        tx.commit().unwrap();
    };
    with(&mut h, &|cx| {
        let room = cx.all_of_kind("room")[0];
        let cup = cx.create("thing", "cup", Some(room)).unwrap();
        cx.set(cup, "colour", "red").unwrap();
        let chest = cx.create("thing", "chest", Some(room)).unwrap();
        cx.set(chest, "weight", &40).unwrap();
        cx.create("thing", "coin", Some(chest)).unwrap();
        cx.create("thing", "hat", Some(room)).unwrap();
    });
    // A standby reads the world ahead, on its own connection.
    let mut standby = Game::new(Fixture::default(), rules());
    let mut other = Store::open(&h.path, Synchronous::Normal).unwrap();
    standby.preload(&other);
    assert!(standby.preloaded.is_some());
    // The serving one changes every kind of thing meanwhile.
    with(&mut h, &|cx| {
        let find = |cx: &Context, name: &str| {
            cx.all_of_kind("thing")
                .into_iter()
                .find(|t| cx.name(*t) == name)
                .unwrap()
        };
        let alice = cx.all_of_kind("character")[0];
        let cup = find(cx, "cup");
        cx.move_to(cup, Some(alice)).unwrap();
        cx.set(cup, "colour", "blue").unwrap();
        let chest = find(cx, "chest");
        cx.unset(chest, "weight").unwrap();
        cx.destroy(chest).unwrap();
        cx.rename(find(cx, "hat"), "old hat").unwrap();
        let new = cx.create("thing", "lamp", None).unwrap();
        cx.set(new, "lit", &true).unwrap();
        cx.unset(new, "lit").unwrap();
        cx.set(new, "lit", &false).unwrap();
    });
    let tx = other.begin().unwrap();
    let (caught_up, changes) = standby.load_world(&tx, false).unwrap();
    let fresh = Objects::load(&tx).unwrap();
    assert!(
        changes.is_some_and(|n| n > 5),
        "caught up, not loaded afresh: {changes:?}"
    );
    assert_eq!(caught_up.dump(), fresh.dump());
    assert!(
        fresh
            .dump()
            .iter()
            .any(|o| o.contains("\"lamp\"") && o.contains("lit"))
    );
    assert!(!fresh.dump().iter().any(|o| o.contains("chest")));

    // After a game migration (SQL without revisions) it loads afresh; after
    // tombstones it needs were pruned, too.
    standby.preload(&h.store);
    assert_eq!(standby.load_world(&tx, true).unwrap().1, None);
    standby.preload(&h.store);
    tx.prune_tombstones(tx.world_rev().unwrap() + 1).unwrap();
    assert_eq!(standby.load_world(&tx, false).unwrap().1, None);
}

/// The index of where the played characters are matches one computed from
/// scratch, and what the game asks of it answers from it.
fn check_index(h: &mut Harness, places: &[ObjectId]) {
    let state = &h.game.state;
    let errors = state.objects.index_errors(state.playing.keys().copied());
    assert!(errors.is_empty(), "{errors:#?}");
    let playing: HashSet<ObjectId> = state.playing.keys().copied().collect();
    for &place in places {
        let (players, rest): (Vec<ObjectId>, Vec<ObjectId>) = h.with(|cx| {
            let held = cx.contents(place);
            assert_eq!(cx.player_count_in(place), cx.players_in(place).len());
            let seen = (cx.players_in(place), cx.contents_except_players(place));
            assert_eq!(
                held.iter().partition(|c| playing.contains(c)),
                (seen.0.clone(), seen.1.clone()),
                "{place}"
            );
            seen
        });
        assert!(players.iter().all(|c| playing.contains(c)), "{place}");
        assert!(rest.iter().all(|c| !playing.contains(c)), "{place}");
    }
}

#[test]
fn where_the_players_are_is_kept_exact_through_logins_moves_reloads_and_destroys() {
    let mut h = Harness::new();
    h.player(S1, "Alice");
    h.player(S2, "Bob");
    h.player(S3, "Carol");
    let ids = |h: &mut Harness| {
        h.with(|cx| {
            let of = |name: &str| {
                cx.all_of_kind("character")
                    .into_iter()
                    .find(|&c| cx.name(c) == name)
                    .unwrap()
            };
            (
                cx.all_of_kind("room")[0],
                of("Alice"),
                of("Bob"),
                of("Carol"),
            )
        })
    };
    let (limbo, alice, bob, carol) = ids(&mut h);
    let (hall, lamp) = h.with(|cx| {
        let hall = cx.create("room", "Hall", None).unwrap();
        let lamp = cx.create("thing", "lamp", Some(hall)).unwrap();
        cx.move_to(bob, Some(hall)).unwrap();
        (hall, lamp)
    });
    let places = [limbo, hall, alice];
    check_index(&mut h, &places);
    h.with(|cx| {
        assert_eq!(cx.players_in(limbo), [alice, carol]);
        assert_eq!(cx.player_count_in(hall), 1);
        assert_eq!(cx.contents_except_players(hall), [lamp]);
        assert_eq!(cx.contents(hall), [bob, lamp]);
    });

    // Bob logs out: still in the hall (this game leaves him there), not played.
    h.input(S2, "quit");
    check_index(&mut h, &places);
    h.with(|cx| {
        assert_eq!(cx.player_count_in(hall), 0);
        assert_eq!(cx.contents_except_players(hall), [bob, lamp]);
    });
    // Alice is taken over, then her old connection closes: played throughout.
    h.open(SessionId(4));
    h.input(SessionId(4), "connect alice secret");
    check_index(&mut h, &places);
    h.batch(vec![Inbound::Closed {
        session: S1,
        reason: String::new(),
    }]);
    check_index(&mut h, &places);
    // Carol's connection drops; Bob comes back.
    h.batch(vec![Inbound::Closed {
        session: S3,
        reason: String::new(),
    }]);
    h.open(SessionId(5));
    h.input(SessionId(5), "connect bob secret");
    check_index(&mut h, &places);
    h.with(|cx| {
        assert_eq!(cx.players_in(limbo), [alice]);
        assert_eq!(cx.players_in(hall), [bob]);
        // A thing moved into a player's hands and out, a player carried.
        cx.move_to(lamp, Some(alice)).unwrap();
        cx.move_to(lamp, Some(hall)).unwrap();
        cx.move_to(alice, Some(hall)).unwrap();
        cx.move_to(alice, Some(limbo)).unwrap();
    });
    check_index(&mut h, &places);

    // A reload: the world read ahead, changed meanwhile, caught up at the
    // Sync that restores who plays.
    let alice_account = h.game.state.sessions[&SessionId(4)].state.account_id;
    let bob_account = h.game.state.sessions[&SessionId(5)].state.account_id;
    let mut standby = Game::new(Fixture::default(), rules());
    standby.preload(&Store::open(&h.path, Synchronous::Normal).unwrap());
    h.with(|cx| cx.move_to(carol, Some(hall)).unwrap());
    h.restart();
    h.game = standby;
    let alice_snapshot = h.delivered(playing_as(SessionId(4), alice_account, alice.0));
    let bob_snapshot = h.delivered(playing_as(SessionId(5), bob_account, bob.0));
    h.batch(vec![Inbound::Sync {
        sessions: vec![alice_snapshot, bob_snapshot],
        last: true,
    }]);
    check_index(&mut h, &places);
    h.with(|cx| {
        assert_eq!(cx.players_in(hall), [bob]);
        assert_eq!(cx.contents_except_players(hall), [carol, lamp]);
    });
    // The world loaded again while they play, as after a first
    // transaction that failed before the game was started.
    h.game.started = false;
    h.input(SessionId(4), "look");
    check_index(&mut h, &places);
    assert_eq!(h.with(|cx| cx.players_in(hall)), [bob]);

    // The hall goes with a player in it: he is nowhere, and played.
    h.with(|cx| cx.destroy(hall).unwrap());
    check_index(&mut h, &places);
    h.with(|cx| {
        assert_eq!(cx.location(bob), None);
        assert!(cx.players_in(hall).is_empty());
        assert_eq!(cx.players_in(limbo), [alice]);
    });
    h.input(SessionId(5), "quit");
    check_index(&mut h, &places);
}
