use std::sync::atomic::Ordering;

use clap::Parser;
use ev_loadgen::{Cli, Outcome};
use serde_json::Value;

use crate::fake::FakeMud;

fn run(mud: &FakeMud, args: &[&str]) -> Outcome {
    let addr = mud.addr.to_string();
    let mut argv = vec!["ev-loadgen", "--addr", &addr, "--login-timeout-ms", "10000"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).unwrap();
    ev_loadgen::run(cli).unwrap()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn provision_creates_then_finds_existing_accounts() {
    let mud = FakeMud::start();
    let first = run(&mud, &["provision", "--sessions", "20"]);
    assert!(first.ok, "{}", first.human);
    assert_eq!(num(&first.json, "created"), 20);
    assert_eq!(first.json["workload"], "provision");
    let again = run(&mud, &["provision", "--sessions", "25"]);
    assert!(again.ok, "{}", again.human);
    assert_eq!(num(&again.json, "existed"), 20);
    assert_eq!(num(&again.json, "created"), 5);
}

#[test]
fn login_fails_clearly_without_the_account() {
    let mud = FakeMud::start();
    let addr = mud.addr.to_string();
    let cli =
        Cli::try_parse_from(["ev-loadgen", "--addr", &addr, "login", "--name", "nobody"]).unwrap();
    let err = ev_loadgen::run(cli).unwrap_err().to_string();
    assert!(err.contains("Wrong name or password"), "{err}");
    let created = run(&mud, &["login", "--name", "somebody", "--create-missing"]);
    assert!(created.ok);
    assert_eq!(created.json["created"], true);
}

#[test]
fn latency_and_throughput_answer_every_probe() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "10"]);
    let lat = run(
        &mud,
        &[
            "latency",
            "--sessions",
            "10",
            "--rate",
            "20",
            "--duration",
            "0.5",
        ],
    );
    assert!(lat.ok, "{}", lat.human);
    let sent = num(&lat.json, "sent");
    assert!(sent >= 80, "{}", lat.human);
    assert_eq!(num(&lat.json, "answered"), sent);
    assert_eq!(num(&lat.json, "lost"), 0);
    assert!(num(&lat.json["round_trip_us"], "p50") > 0);

    let thr = run(
        &mud,
        &[
            "throughput",
            "--sessions",
            "4",
            "--depth",
            "2",
            "--duration",
            "0.5",
        ],
    );
    assert!(thr.ok, "{}", thr.human);
    assert!(
        thr.json["commands_per_s"].as_f64().unwrap() > 100.0,
        "{}",
        thr.human
    );
}

#[test]
fn broadcast_delivers_every_say_to_every_listener() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "6"]);
    let out = run(
        &mud,
        &["broadcast", "--listeners", "5", "--duration", "0.5"],
    );
    assert!(out.ok, "{}", out.human);
    let says = num(&out.json, "says_sent");
    assert!(says > 10, "{}", out.human);
    assert_eq!(num(&out.json, "lines_delivered"), says * 5);
    assert_eq!(num(&out.json, "lines_missing"), 0);
}

#[test]
fn mccp2_is_accepted_only_when_asked_for() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "6"]);
    assert_eq!(mud.compressed.load(Ordering::Relaxed), 0);
    let out = run(
        &mud,
        &[
            "--mccp2",
            "broadcast",
            "--listeners",
            "5",
            "--duration",
            "0.5",
        ],
    );
    assert!(out.ok, "{}", out.human);
    assert_eq!(mud.compressed.load(Ordering::Relaxed), 6);
    let says = num(&out.json, "says_sent");
    assert!(says > 10, "{}", out.human);
    assert_eq!(num(&out.json, "lines_delivered"), says * 5);
    assert_eq!(num(&out.json, "lines_missing"), 0);
}

#[test]
fn reload_measures_the_dark_time_and_checks_every_session() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "8"]);
    let dark = mud.flag("dark");
    let cmd = format!(
        "touch {0}; sleep 0.2; rm {0}; echo 'reloaded, dark for 200 ms'",
        dark.display()
    );
    let out = run(
        &mud,
        &[
            "reload",
            "--sessions",
            "8",
            "--probers",
            "4",
            "--reloads",
            "2",
            "--reload-cmd",
            &cmd,
            "--spacing-ms",
            "300",
            "--warmup-ms",
            "200",
            "--settle-ms",
            "200",
        ],
    );
    assert!(out.ok, "{}", out.human);
    let j = &out.json;
    assert_eq!(num(j, "probes_lost"), 0);
    assert_eq!(num(j, "probes_doubled"), 0);
    assert_eq!(num(j, "sessions_closed"), 0);
    assert_eq!(num(j, "sessions_not_logged_in"), 0);
    assert_eq!(j["commands"][1]["reported_dark_ms"], 200.0);
    // The game held input for 200 ms: some probe waited about that long.
    assert!(num(&j["round_trip"], "max_us") >= 150_000, "{}", out.human);
    assert!(num(&j["silence"], "max_us") >= 150_000, "{}", out.human);
}

#[test]
fn reload_fails_on_lost_replies_and_failed_commands() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "3"]);
    let drop = mud.flag("drop");
    let cmd = format!("touch {0}; sleep 0.1; rm {0}; exit 4", drop.display());
    let out = run(
        &mud,
        &[
            "reload",
            "--sessions",
            "3",
            "--probers",
            "2",
            "--reload-cmd",
            &cmd,
            "--warmup-ms",
            "100",
            "--settle-ms",
            "100",
            "--drain-ms",
            "500",
        ],
    );
    assert!(!out.ok, "{}", out.human);
    assert!(num(&out.json, "probes_lost") > 0, "{}", out.human);
    assert_eq!(num(&out.json, "commands_failed"), 1);
    assert_eq!(num(&out.json, "sessions_not_logged_in"), 0);
}

#[test]
fn hold_runs_the_command_while_sessions_are_in() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "5"]);
    let out = run(
        &mud,
        &["hold", "--sessions", "5", "--then", "echo measured"],
    );
    assert!(out.ok, "{}", out.human);
    assert_eq!(out.json["then"]["last_line"], "measured");
    assert_eq!(num(&out.json, "sessions_closed"), 0);
}

#[test]
fn logins_give_up_when_the_phase_time_runs_out() {
    let mud = FakeMud::start();
    std::fs::write(mud.flag("dark"), "").unwrap();
    let addr = mud.addr.to_string();
    let cli = Cli::try_parse_from([
        "ev-loadgen",
        "--addr",
        &addr,
        "--login-concurrency",
        "1",
        "--login-phase-timeout-ms",
        "300",
        "hold",
        "--sessions",
        "3",
    ])
    .unwrap();
    let started = std::time::Instant::now();
    let err = ev_loadgen::run(cli).unwrap_err().to_string();
    assert!(err.contains("3 of 3"), "{err}");
    assert!(err.contains("ran out"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    std::fs::remove_file(mud.flag("dark")).unwrap();
}

/// `flood` runs for a fixed short time against the fake; these check what
/// it counts, from attacker addresses other than the players'.
fn flood(mud: &FakeMud, args: &[&str]) -> Outcome {
    let mut argv = vec![
        "--bind",
        "127.0.0.1",
        "flood",
        "--from",
        "127.0.0.2,127.0.0.3",
        "--players",
        "3",
        "--player-rate",
        "20",
        "--calm",
        "0.2",
    ];
    argv.extend_from_slice(args);
    run(mud, &argv)
}

#[test]
fn flood_counts_answers_and_players_lose_nothing() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "3"]);
    let login = flood(
        &mud,
        &[
            "--kind",
            "login",
            "--wait-answer",
            "--count",
            "20",
            "--duration",
            "5",
        ],
    );
    assert!(login.ok, "{}", login.human);
    assert_eq!(
        login.json["attack"]["outcomes"]["wrong"], 20,
        "{}",
        login.json
    );
    assert!(
        num(&login.json["players"], "answered") > 0,
        "{}",
        login.json
    );
    assert_eq!(num(&login.json["players"], "lost"), 0);

    let closed_at_once = flood(
        &mud,
        &["--kind", "login", "--count", "10", "--duration", "5"],
    );
    assert_eq!(closed_at_once.json["attack"]["outcomes"]["sent"], 10);

    let create = flood(
        &mud,
        &["--kind", "create", "--count", "4", "--duration", "5"],
    );
    assert_eq!(
        create.json["attack"]["outcomes"]["ok"], 4,
        "{}",
        create.json
    );
    let again = flood(
        &mud,
        &["--kind", "create", "--count", "4", "--duration", "5"],
    );
    assert_eq!(
        again.json["attack"]["outcomes"]["taken"], 4,
        "{}",
        again.json
    );
}

#[test]
fn flood_brute_times_the_owner_from_another_address() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "3"]);
    run(&mud, &["login", "--name", "owner", "--create-missing"]);
    let brute = flood(
        &mud,
        &[
            "--kind",
            "brute",
            "--target",
            "owner",
            "--count",
            "30",
            "--concurrency",
            "2",
            "--duration",
            "0.6",
            "--owner",
            "owner",
            "--owner-from",
            "127.0.0.9",
            "--owner-every-ms",
            "200",
        ],
    );
    assert!(brute.ok, "{}", brute.human);
    let logins = brute.json["attack"]["owner_logins"].as_array().unwrap();
    assert!(!logins.is_empty());
    assert!(
        logins.iter().all(|l| l["elapsed_ms"].is_number()),
        "{logins:?}"
    );
    assert!(brute.json["attack"]["outcomes"]["wrong"].as_u64().unwrap() > 0);
}

#[test]
fn flood_chat_and_silent_connections() {
    let mud = FakeMud::start();
    run(&mud, &["provision", "--sessions", "3"]);
    run(
        &mud,
        &["--prefix", "listen", "provision", "--sessions", "2"],
    );
    run(&mud, &["login", "--name", "flooder", "--create-missing"]);
    let chat = flood(
        &mud,
        &[
            "--kind",
            "chat",
            "--listeners",
            "2",
            "--line-chars",
            "200",
            "--duration",
            "0.5",
        ],
    );
    let attack = &chat.json["attack"];
    assert!(num(attack, "says_run") > 0, "{}", chat.json);
    assert_eq!(num(attack, "listeners"), 2);
    // The fake never cuts off a listener.
    assert_eq!(num(attack, "listeners_cut_off"), 0, "{}", chat.json);

    let silent = flood(
        &mud,
        &["--kind", "silent", "--count", "6", "--duration", "0.5"],
    );
    let attack = &silent.json["attack"];
    assert_eq!(num(attack, "opened"), 6, "{}", silent.json);
    assert_eq!(num(attack, "still_open"), 6);
}

#[test]
fn flood_refuses_addresses_off_this_machine() {
    let mud = FakeMud::start();
    let addr = mud.addr.to_string();
    let cli = Cli::try_parse_from([
        "ev-loadgen",
        "--addr",
        &addr,
        "flood",
        "--kind",
        "login",
        "--from",
        "10.1.2.3",
    ])
    .unwrap();
    let err = ev_loadgen::run(cli).unwrap_err().to_string();
    assert!(err.contains("--from"), "{err}");
}
