//! `reload`: what players see across reloads (and kills) of the game.
//!
//! N sessions log in; the first P probe on a fixed interval with numbered
//! tokens, the rest stay idle (but keep reading, so a closed connection shows
//! at once). The controller runs the reload command K times and the kill
//! command M times, spaced out. Then every session is checked: connected, the
//! probe still answered, and the check command (`look`) answered as a player
//! in the game would be, not with the login screen. The checks wait until
//! every prober has its last replies: ten thousand checks at once would
//! otherwise queue ahead of them and show up as the run's longest wait. Any lost or doubled probe,
//! closed connection, failed check or failed command makes the run fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::{Barrier, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until};

use crate::cli::ReloadArgs;
use crate::client::{Client, LineError, LoginMode};
use crate::fleet::{Member, login_all};
use crate::game::Game;
use crate::pattern::{Vars, number_after};
use crate::probe::{Prober, open_loop};
use crate::report::Outcome;
use crate::stats::{Gaps, gaps, median_max, ms};
use crate::workload::{CmdRun, run_cmd};

#[derive(Debug, Serialize)]
struct CommandReport {
    kind: &'static str,
    #[serde(flatten)]
    run: CmdRun,
    /// The number after --dark-marker in its output, if any.
    reported_dark_ms: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
struct MedianMax {
    median_us: u64,
    max_us: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    sessions: u32,
    probers: u32,
    interval_ms: u64,
    commands: Vec<CommandReport>,
    commands_failed: u64,
    /// Per probing client, its longest time from a probe sent to its reply.
    round_trip: MedianMax,
    /// Per probing client, its longest time between two replies.
    silence: MedianMax,
    probes_sent: u64,
    probes_answered: u64,
    probes_lost: u64,
    probes_doubled: u64,
    probes_foreign: u64,
    sessions_closed: u64,
    sessions_not_logged_in: u64,
    /// Of those, the ones whose check got no answer at all in time.
    sessions_check_unanswered: u64,
    first_problem: Option<String>,
}

/// What became of one session.
struct SessionResult {
    index: u32,
    gaps: Option<Gaps>,
    sent: u64,
    doubled: u64,
    foreign: u64,
    closed: bool,
    check: Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Passed,
    /// Connected but not (or no longer) in the game, with what was seen.
    NotLoggedIn(String),
    /// Connected, but the probe or the check command got no answer in time
    /// (counted as not logged in too: it could not be shown to be).
    NoReply(String),
    Closed,
}

pub async fn reload(game: Arc<Game>, args: ReloadArgs) -> anyhow::Result<Outcome> {
    if args.sessions == 0 || args.probers > args.sessions {
        bail!("--sessions must be at least 1 and at least --probers");
    }
    if args.interval_ms == 0 {
        bail!("--interval-ms must be at least 1");
    }
    if args.kills > 0 && args.kill_cmd.is_none() {
        bail!("--kills needs --kill-cmd");
    }
    let args = Arc::new(args);
    let members = login_all(&game, args.sessions, LoginMode::Connect).await?;
    let origin = Instant::now();
    let start = origin + Duration::from_millis(100);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (check_tx, check_rx) = watch::channel(false);
    let probed = Arc::new(Barrier::new(args.probers as usize + 1));
    let mut tasks = JoinSet::new();
    for member in members {
        tasks.spawn(session(
            game.clone(),
            args.clone(),
            member,
            origin,
            start,
            Phases {
                stop: stop_rx.clone(),
                probed: probed.clone(),
                checks: check_rx.clone(),
            },
        ));
    }

    sleep_until((start + Duration::from_millis(args.warmup_ms)).into()).await;
    let limit = Duration::from_millis(args.cmd_timeout_ms);
    let mut plan: Vec<(&'static str, &str)> = Vec::new();
    plan.extend((0..args.reloads).map(|_| ("reload", args.reload_cmd.as_str())));
    if let Some(kill) = &args.kill_cmd {
        plan.extend((0..args.kills).map(|_| ("kill", kill.as_str())));
    }
    let mut commands = Vec::with_capacity(plan.len());
    for (i, (kind, command)) in plan.iter().enumerate() {
        if i > 0 {
            sleep(Duration::from_millis(args.spacing_ms)).await;
        }
        let run = run_cmd(command, limit).await;
        eprintln!(
            "ev-loadgen: {kind} {}/{}: exit {:?} in {:.0} ms: {}",
            i + 1,
            plan.len(),
            run.exit_code,
            run.elapsed_ms,
            run.last_line
        );
        commands.push(CommandReport {
            kind,
            reported_dark_ms: number_after(&run.output, &args.dark_marker),
            run,
        });
    }
    sleep(Duration::from_millis(args.settle_ms)).await;
    let _ = stop_tx.send(true);
    probed.wait().await;
    let _ = check_tx.send(true);

    let mut results = Vec::with_capacity(args.sessions as usize);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("session task")?);
    }
    results.sort_by_key(|r| r.index);
    let report = summarise(&args, commands, &results);
    let human = human(&report);
    let ok = report.probes_lost == 0
        && report.probes_doubled == 0
        && report.probes_foreign == 0
        && report.sessions_closed == 0
        && report.sessions_not_logged_in == 0
        && report.commands_failed == 0;
    Ok(Outcome::new("reload", human, &report, ok))
}

/// The run's end, as each session sees it: probing stops, every prober
/// has drained its replies, then the checks.
struct Phases {
    stop: watch::Receiver<bool>,
    probed: Arc<Barrier>,
    checks: watch::Receiver<bool>,
}

async fn session(
    game: Arc<Game>,
    args: Arc<ReloadArgs>,
    member: Member,
    origin: Instant,
    start: Instant,
    phases: Phases,
) -> SessionResult {
    let Phases {
        mut stop,
        probed,
        mut checks,
    } = phases;
    let Member {
        index,
        name,
        mut client,
        ..
    } = member;
    let mut result = SessionResult {
        index,
        gaps: None,
        sent: 0,
        doubled: 0,
        foreign: 0,
        closed: false,
        check: Check::Closed,
    };
    let drain = Duration::from_millis(args.drain_ms);
    let reply = match game.reply_pattern(&name) {
        Ok(reply) => reply,
        Err(e) => {
            result.check = Check::NotLoggedIn(e.to_string());
            if index < args.probers {
                probed.wait().await;
            }
            return result;
        }
    };
    if index < args.probers {
        let period = Duration::from_millis(args.interval_ms);
        let first = start + period.mul_f64(f64::from(index) / f64::from(args.probers.max(1)));
        let mut prober = Prober::new(index, game.probe.clone(), reply.clone(), origin);
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        let end = open_loop(&mut client, &mut prober, first, period, stopped, drain).await;
        result.closed = end.closed;
        result.gaps = Some(gaps(prober.probes()));
        result.sent = prober.sent();
        result.doubled = prober.doubled;
        result.foreign = prober.foreign;
        probed.wait().await;
    }
    if !result.closed {
        result.closed = client.drain_until(&mut checks).await.is_err();
    }
    if !result.closed {
        let deadline = Instant::now() + drain;
        result.check = check(&mut client, &game, &args, index, &reply, deadline).await;
    }
    result
}

/// Is the session still in the game? The probe must be answered, and the
/// check command answered with `check_expect`, never with the login screen.
async fn check(
    client: &mut Client,
    game: &Game,
    args: &ReloadArgs,
    index: u32,
    reply: &crate::pattern::ReplyPattern,
    deadline: Instant,
) -> Check {
    let token = format!("chk{index}");
    let probe = game.probe.render(Vars {
        token: &token,
        ..Vars::default()
    });
    if client.send(&probe).await.is_err() {
        return Check::Closed;
    }
    loop {
        match client.line_by(deadline).await {
            Ok(Some(line)) => {
                if reply.extract(&line) == Some(token.as_str()) {
                    break;
                }
                if game.is_login_screen(&line) {
                    return Check::NotLoggedIn(format!("login screen: {line:?}"));
                }
            }
            Ok(None) | Err(LineError::Io(_)) => return Check::Closed,
            Err(LineError::Timeout) => {
                return Check::NoReply(format!("no reply to {probe:?}"));
            }
        }
    }
    if args.check_cmd.is_empty() {
        return Check::Passed;
    }
    if client.send(&args.check_cmd).await.is_err() {
        return Check::Closed;
    }
    loop {
        match client.line_by(deadline).await {
            Ok(Some(line)) => {
                if game.is_login_screen(&line) {
                    return Check::NotLoggedIn(format!("login screen: {line:?}"));
                }
                if line.contains(&args.check_expect) {
                    return Check::Passed;
                }
            }
            Ok(None) | Err(LineError::Io(_)) => return Check::Closed,
            Err(LineError::Timeout) => {
                return Check::NoReply(format!(
                    "no {:?} in the reply to {:?}",
                    args.check_expect, args.check_cmd
                ));
            }
        }
    }
}

fn summarise(args: &ReloadArgs, commands: Vec<CommandReport>, results: &[SessionResult]) -> Report {
    let mut round_trips = Vec::new();
    let mut silences = Vec::new();
    let mut report = Report {
        sessions: args.sessions,
        probers: args.probers,
        interval_ms: args.interval_ms,
        commands_failed: commands.iter().filter(|c| !c.run.succeeded()).count() as u64,
        commands,
        round_trip: MedianMax::default(),
        silence: MedianMax::default(),
        probes_sent: 0,
        probes_answered: 0,
        probes_lost: 0,
        probes_doubled: 0,
        probes_foreign: 0,
        sessions_closed: 0,
        sessions_not_logged_in: 0,
        sessions_check_unanswered: 0,
        first_problem: None,
    };
    for r in results {
        if let Some(g) = r.gaps {
            round_trips.push(g.longest_round_trip_us);
            silences.push(g.longest_silence_us);
            report.probes_answered += g.answered;
            report.probes_lost += g.lost;
            if g.lost > 0 {
                report
                    .first_problem
                    .get_or_insert_with(|| format!("session {}: {} probes lost", r.index, g.lost));
            }
        }
        report.probes_sent += r.sent;
        report.probes_doubled += r.doubled;
        report.probes_foreign += r.foreign;
        match &r.check {
            Check::Passed => {}
            Check::Closed => {
                report.sessions_closed += 1;
                report
                    .first_problem
                    .get_or_insert_with(|| format!("session {}: connection closed", r.index));
            }
            Check::NotLoggedIn(why) => {
                report.sessions_not_logged_in += 1;
                report
                    .first_problem
                    .get_or_insert_with(|| format!("session {}: not logged in: {why}", r.index));
            }
            Check::NoReply(why) => {
                report.sessions_not_logged_in += 1;
                report.sessions_check_unanswered += 1;
                report
                    .first_problem
                    .get_or_insert_with(|| format!("session {}: check unanswered: {why}", r.index));
            }
        }
    }
    let (median_us, max_us) = median_max(&mut round_trips);
    report.round_trip = MedianMax { median_us, max_us };
    let (median_us, max_us) = median_max(&mut silences);
    report.silence = MedianMax { median_us, max_us };
    report
}

fn human(r: &Report) -> String {
    let dark: Vec<String> = r
        .commands
        .iter()
        .map(|c| match (c.kind, c.reported_dark_ms) {
            (_, Some(d)) => format!("{d}"),
            ("kill", None) => "kill".into(),
            _ => "?".into(),
        })
        .collect();
    let mut text = format!(
        "reload: {} sessions ({} probing every {} ms), {} commands ({} failed), reported dark [{}] ms; per prober longest reply wait median {} ms, max {} ms; longest silence median {} ms, max {} ms; probes {} sent, {} lost, {} doubled; {} sessions closed, {} not logged in ({} of them unanswered)",
        r.sessions,
        r.probers,
        r.interval_ms,
        r.commands.len(),
        r.commands_failed,
        dark.join(", "),
        ms(r.round_trip.median_us),
        ms(r.round_trip.max_us),
        ms(r.silence.median_us),
        ms(r.silence.max_us),
        r.probes_sent,
        r.probes_lost,
        r.probes_doubled,
        r.sessions_closed,
        r.sessions_not_logged_in,
        r.sessions_check_unanswered
    );
    if r.probes_foreign > 0 {
        text.push_str(&format!(", {} foreign replies", r.probes_foreign));
    }
    if let Some(p) = &r.first_problem {
        text.push_str(&format!("; first problem: {p}"));
    }
    for c in r.commands.iter().filter(|c| !c.run.succeeded()) {
        text.push_str(&format!(
            "; {} failed (exit {:?}{}): {}",
            c.kind,
            c.run.exit_code,
            if c.run.timed_out { ", timed out" } else { "" },
            c.run.last_line
        ));
    }
    text
}
