//! `flood`: an attack on the game while logged-in players probe it, and what
//! both sides got: the players' round trips and losses, the attacker's
//! attempts by how the game answered them.
//!
//! The attacker connects from `--from` (loopback addresses other than the
//! players' `--bind`), so a game's per-address limits fall on it and not on
//! the players. Every attack is bounded by `--count` and `--duration`, and
//! every wait on the game by a deadline.
//!
//! Timeline: the players log in (and, for `chat`, the flooder and its
//! listeners), the players probe for `--calm` seconds, the attack runs (with
//! `--kill-cmd` fired into it), the players probe `--calm` more, drain.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at};

use crate::cli::{FloodArgs, FloodKind};
use crate::client::{Client, LoginMode, dial};
use crate::fleet::{Member, login_all, login_named};
use crate::game::Game;
use crate::inbound::Inbound;
use crate::pattern::{Template, Vars, account_name};
use crate::probe::{Prober, open_loop};
use crate::report::Outcome;
use crate::stats::{Samples, Summary, ms};
use crate::workload::{CmdRun, run_cmd};

const READ_BUF: usize = 4096;

/// How the game answered, by the first line that tells.
struct Outcomes {
    /// (name, text) in the order they are tried.
    list: Vec<(String, String)>,
    login_screen: String,
    slow_notice: String,
}

impl Outcomes {
    fn new(specs: &[String], login_screen: &str, slow_notice: &str) -> anyhow::Result<Outcomes> {
        let list = specs
            .iter()
            .map(|spec| match spec.split_once('=') {
                Some((name, text)) if !name.is_empty() && !text.is_empty() => {
                    Ok((name.to_owned(), text.to_owned()))
                }
                _ => bail!("--outcome {spec:?}: expected NAME=TEXT"),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Outcomes {
            list,
            login_screen: login_screen.to_owned(),
            slow_notice: slow_notice.to_owned(),
        })
    }

    /// The outcome a line tells, if any. The login screen tells nothing
    /// (ev's starts "Welcome to", which is not a login).
    fn classify(&self, line: &str) -> Option<&str> {
        if !self.login_screen.is_empty() && line.contains(&self.login_screen) {
            return None;
        }
        self.list
            .iter()
            .find(|(_, text)| line.contains(text.as_str()))
            .map(|(name, _)| name.as_str())
    }

    fn is_slow_notice(&self, line: &str) -> bool {
        !self.slow_notice.is_empty() && line.contains(&self.slow_notice)
    }
}

/// Lines from a socket that is only read (nothing is ever answered: telnet
/// negotiation is decoded and left unanswered, as a silent client would).
struct Reader {
    inbound: Inbound,
    lines: VecDeque<String>,
    ignored: Vec<u8>,
    buf: Box<[u8]>,
    bytes: u64,
}

enum Read {
    Line(String),
    Closed,
    Timeout,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            inbound: Inbound::new(false, false),
            lines: VecDeque::new(),
            ignored: Vec::new(),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            bytes: 0,
        }
    }

    /// The next line by `deadline`. A reset or a corrupt stream counts as
    /// closed: either way the game is done with this connection.
    async fn line<R: AsyncReadExt + Unpin>(&mut self, socket: &mut R, deadline: Instant) -> Read {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Read::Line(line);
            }
            match timeout_at(deadline.into(), socket.read(&mut self.buf)).await {
                Err(_) => return Read::Timeout,
                Ok(Ok(0) | Err(_)) => return Read::Closed,
                Ok(Ok(n)) => {
                    self.bytes += n as u64;
                    let pushed =
                        self.inbound
                            .push(&self.buf[..n], &mut self.lines, &mut self.ignored);
                    self.ignored.clear();
                    if pushed.is_err() {
                        return Read::Closed;
                    }
                }
            }
        }
    }
}

/// Reads until a line tells an outcome; "closed" or "timeout" otherwise.
/// Returns it and the slow-down notices seen on the way.
async fn read_outcome(
    stream: &mut TcpStream,
    outcomes: &Outcomes,
    deadline: Instant,
) -> (String, u32) {
    let mut reader = Reader::new();
    let mut notices = 0;
    loop {
        match reader.line(stream, deadline).await {
            Read::Line(line) => {
                if outcomes.is_slow_notice(&line) {
                    notices += 1;
                }
                if let Some(name) = outcomes.classify(&line) {
                    return (name.to_owned(), notices);
                }
            }
            Read::Closed => return ("closed".into(), notices),
            Read::Timeout => return ("timeout".into(), notices),
        }
    }
}

/// One attempt: connect from `source`, send `line`, then close at once or
/// read the answer.
async fn attempt(
    game: &Game,
    source: Option<IpAddr>,
    line: String,
    wait: bool,
    outcomes: &Outcomes,
    answer_timeout: Duration,
) -> (String, u32) {
    let mut stream = match dial(game.addr, source, game.connect_timeout).await {
        Ok(s) => s,
        Err(_) => return ("connect_error".into(), 0),
    };
    let mut bytes = Vec::with_capacity(line.len() + 2);
    crate::telnet::encode_line(&line, &mut bytes);
    if stream.write_all(&bytes).await.is_err() {
        return ("write_error".into(), 0);
    }
    if !wait {
        return ("sent".into(), 0);
    }
    read_outcome(&mut stream, outcomes, Instant::now() + answer_timeout).await
}

/// An attempt's result at the time it ended (µs from the flood's start).
struct Ended {
    at_us: u64,
    outcome: String,
    notices: u32,
    answer_us: u64,
}

/// Runs `count` attempts (`make(i)` gives the line), `concurrency` at once,
/// starting none after `deadline`.
async fn attempts(
    attacker: &Arc<Game>,
    args: &FloodArgs,
    outcomes: &Arc<Outcomes>,
    wait: bool,
    deadline: Instant,
    make: impl Fn(u32) -> String,
) -> Vec<Ended> {
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let answer_timeout = Duration::from_millis(args.answer_timeout_ms);
    let mut tasks = JoinSet::new();
    for i in 0..args.count {
        let Ok(Ok(permit)) = timeout_at(deadline.into(), permits.clone().acquire_owned()).await
        else {
            break;
        };
        let (game, outcomes, line) = (attacker.clone(), outcomes.clone(), make(i));
        tasks.spawn(async move {
            let began = Instant::now();
            let source = game.next_source();
            let (outcome, notices) =
                attempt(&game, source, line, wait, &outcomes, answer_timeout).await;
            drop(permit);
            Ended {
                at_us: start.elapsed().as_micros() as u64,
                outcome,
                notices,
                answer_us: began.elapsed().as_micros() as u64,
            }
        });
    }
    let mut ended = Vec::with_capacity(args.count as usize);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(e) = joined {
            ended.push(e);
        }
    }
    ended.sort_by_key(|e| e.at_us);
    ended
}

fn count_outcomes<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_insert(0) += 1;
    }
    counts
}

fn outcomes_human(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the attempts of a login, create or brute flood came to.
fn attempts_report(ended: &[Ended], elapsed: Duration) -> (serde_json::Value, String) {
    let counts = count_outcomes(ended.iter().map(|e| e.outcome.as_str()));
    let secs = elapsed.as_secs_f64().max(1e-9);
    let first_refusal = ended.iter().position(|e| e.outcome.starts_with("refused"));
    let checked_before = ended[..first_refusal.unwrap_or(ended.len())]
        .iter()
        .filter(|e| e.outcome == "wrong")
        .count();
    let mut answers = Samples::default();
    for e in ended.iter().filter(|e| e.outcome != "sent") {
        answers.push(e.answer_us);
    }
    let answer_us = answers.summary();
    let report = json!({
        "attempts": ended.len(),
        "elapsed_s": elapsed.as_secs_f64(),
        "attempts_per_s": ended.len() as f64 / secs,
        "outcomes": counts,
        "wrong_per_s": counts.get("wrong").copied().unwrap_or(0) as f64 / secs,
        "first_refusal_ms": first_refusal.map(|i| ended[i].at_us as f64 / 1000.0),
        "wrong_before_first_refusal": checked_before,
        "slow_notices": ended.iter().map(|e| u64::from(e.notices)).sum::<u64>(),
        "answer_us": answer_us,
    });
    let mut human = format!(
        "{} attempts in {:.1} s ({:.0}/s): {}",
        ended.len(),
        elapsed.as_secs_f64(),
        ended.len() as f64 / secs,
        outcomes_human(&counts)
    );
    if answer_us.count > 0 {
        human.push_str(&format!(
            "; answer p50 {} ms, max {} ms",
            ms(answer_us.p50),
            ms(answer_us.max)
        ));
    }
    if let Some(i) = first_refusal {
        human.push_str(&format!(
            "; first refusal after {:.1} s",
            ended[i].at_us as f64 / 1e6
        ));
    }
    (report, human)
}

/// Brute: the owner logs in from another address every `every` until
/// `deadline`; each login's time, or why it failed.
async fn owner_logins(
    owner: Game,
    name: String,
    every: Duration,
    deadline: Instant,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    let mut next = start;
    let mut logins = Vec::new();
    while next < deadline {
        sleep_until(next.into()).await;
        let at_ms = start.elapsed().as_secs_f64() * 1000.0;
        let result = async {
            let mut client = Client::connect(&owner).await?;
            client
                .login(
                    &owner,
                    &name,
                    LoginMode::Connect,
                    Instant::now() + owner.login_timeout,
                )
                .await
        }
        .await;
        logins.push(match result {
            Ok(done) => {
                json!({ "at_ms": at_ms, "elapsed_ms": done.elapsed.as_secs_f64() * 1000.0 })
            }
            Err(e) => json!({ "at_ms": at_ms, "error": e.to_string() }),
        });
        next += every;
    }
    logins
}

/// Chat: the flooder's side of the socket, read apart from the writes.
#[derive(Default)]
struct Heard {
    echoes: AtomicU64,
    notices: AtomicU64,
    first_notice_us: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    echoed: Notify,
}

/// Chat: the flooder says lines as fast as the game takes them (never more
/// than `in_flight` unechoed) until `deadline`, then resets its connection
/// so nothing it left unread runs after the flood. The listeners are held
/// unread throughout, then read to their end: those the game cut off read
/// to a close, the others to silence.
async fn chat(
    args: &FloodArgs,
    outcomes: &Arc<Outcomes>,
    flooder: Member,
    listeners: Vec<Member>,
    deadline: Instant,
) -> anyhow::Result<(serde_json::Value, String)> {
    let start = Instant::now();
    let (mut rd, mut wr) = flooder.client.into_stream().into_split();
    let heard = Arc::new(Heard::default());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let echo = args.echo.clone();
    let reader = {
        let heard = heard.clone();
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            let mut reader = Reader::new();
            // Bounded: it stops when told, at the latest after the flood.
            let give_up = deadline + Duration::from_secs(10);
            loop {
                let read = tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => break,
                    read = reader.line(&mut rd, give_up) => read,
                };
                match read {
                    Read::Line(line) => {
                        if line.contains(&echo) {
                            heard.echoes.fetch_add(1, Ordering::Relaxed);
                            heard.echoed.notify_one();
                        } else if outcomes.is_slow_notice(&line) {
                            let at = start.elapsed().as_micros() as u64;
                            let _ = heard.first_notice_us.compare_exchange(
                                0,
                                at.max(1),
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            heard.notices.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Read::Closed | Read::Timeout => {
                        heard.closed.store(true, Ordering::Relaxed);
                        heard.echoed.notify_one();
                        break;
                    }
                }
            }
            rd
        })
    };
    let filler: String = "abcdefghijklmnopqrstuvwxyz"
        .chars()
        .cycle()
        .take(args.line_chars)
        .collect();
    let say = Template::new(&args.say).render(Vars {
        name: "",
        password: "",
        token: "",
    });
    let line = say.replace("{text}", &filler);
    let mut bytes = Vec::with_capacity(line.len() + 2);
    crate::telnet::encode_line(&line, &mut bytes);
    let mut sent: u64 = 0;
    let mut echoes_after_1s = None;
    while Instant::now() < deadline && !heard.closed.load(Ordering::Relaxed) {
        if echoes_after_1s.is_none() && start.elapsed() >= Duration::from_secs(1) {
            echoes_after_1s = Some(heard.echoes.load(Ordering::Relaxed));
        }
        let echoed = heard.echoes.load(Ordering::Relaxed);
        if sent.saturating_sub(echoed) >= u64::from(args.in_flight) {
            let wake = (Instant::now() + Duration::from_millis(100)).min(deadline);
            let _ = timeout_at(wake.into(), heard.echoed.notified()).await;
            continue;
        }
        match timeout_at(deadline.into(), wr.write_all(&bytes)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    let echoes = heard.echoes.load(Ordering::Relaxed);
    let flooder_closed = heard.closed.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let rd = reader.await.context("the flooder's reader")?;
    // A reset, not a close: what the flooder left in the socket must not
    // keep running after the flood.
    if let Ok(stream) = rd.reunite(wr) {
        let _ = stream.set_zero_linger();
    }

    let mut checks = JoinSet::new();
    for member in listeners {
        checks.spawn(async move {
            let mut stream = member.client.into_stream();
            let mut reader = Reader::new();
            let give_up = Instant::now() + Duration::from_secs(20);
            let closed = loop {
                let quiet = (Instant::now() + Duration::from_secs(1)).min(give_up);
                match reader.line(&mut stream, quiet).await {
                    Read::Line(_) => {}
                    Read::Closed => break true,
                    Read::Timeout => break false,
                }
            };
            (closed, reader.bytes)
        });
    }
    let (mut cut_off, mut bytes_read) = (0u64, Vec::new());
    while let Some(joined) = checks.join_next().await {
        let (closed, bytes) = joined.context("a listener's check")?;
        cut_off += u64::from(closed);
        bytes_read.push(bytes);
    }
    let listeners_n = bytes_read.len();
    bytes_read.sort_unstable();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let first_notice = heard.first_notice_us.load(Ordering::Relaxed);
    let report = json!({
        "line_chars": args.line_chars,
        "elapsed_s": secs,
        "says_written": sent,
        "says_run": echoes,
        "says_per_s": echoes as f64 / secs,
        "says_in_first_s": echoes_after_1s,
        "slow_notices": heard.notices.load(Ordering::Relaxed),
        "first_notice_ms": (first_notice > 0).then(|| first_notice as f64 / 1000.0),
        "flooder_closed": flooder_closed,
        "listeners": listeners_n,
        "listeners_cut_off": cut_off,
        "listener_bytes_read_max": bytes_read.last().copied().unwrap_or(0),
    });
    let human = format!(
        "{echoes} says of {} chars run in {secs:.1} s ({:.1}/s; {} in the first second), {} slow-down notice(s); {cut_off} of {listeners_n} listeners cut off",
        args.line_chars,
        echoes as f64 / secs,
        echoes_after_1s.map_or("?".into(), |n| n.to_string()),
        heard.notices.load(Ordering::Relaxed),
    );
    Ok((report, human))
}

/// Silent: `count` connections that never send a byte, held until
/// `deadline`: which the game closed, when, and what it said last.
async fn silent(
    attacker: &Arc<Game>,
    args: &FloodArgs,
    outcomes: &Arc<Outcomes>,
    deadline: Instant,
) -> (serde_json::Value, String) {
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = JoinSet::new();
    for _ in 0..args.count {
        let Ok(Ok(permit)) = timeout_at(deadline.into(), permits.clone().acquire_owned()).await
        else {
            break;
        };
        let (game, outcomes) = (attacker.clone(), outcomes.clone());
        tasks.spawn(async move {
            let source = game.next_source();
            let stream = dial(game.addr, source, game.connect_timeout).await;
            // The permit bounds connections being made, not those held.
            drop(permit);
            let Ok(mut stream) = stream else {
                return None;
            };
            let opened = Instant::now();
            let mut reader = Reader::new();
            let mut told = None;
            loop {
                match reader.line(&mut stream, deadline).await {
                    Read::Line(line) => {
                        if let Some(name) = outcomes.classify(&line) {
                            told = Some(name.to_owned());
                        }
                    }
                    Read::Closed => return Some((Some(opened.elapsed()), told)),
                    Read::Timeout => return Some((None, told)),
                }
            }
        });
    }
    let (mut opened, mut errors, mut still_open) = (0u64, 0u64, 0u64);
    let mut closed_after = Samples::default();
    let mut told = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Some((closed, last))) => {
                opened += 1;
                match closed {
                    Some(after) => closed_after.push(after.as_micros() as u64),
                    None => still_open += 1,
                }
                told.push(last.unwrap_or_else(|| "nothing".into()));
            }
            Ok(None) | Err(_) => errors += 1,
        }
    }
    let closed = closed_after.len();
    let closed_after = closed_after.summary();
    let told = count_outcomes(told.iter().map(String::as_str));
    let report = json!({
        "opened": opened,
        "connect_errors": errors,
        "closed_by_game": closed,
        "still_open": still_open,
        "closed_after_us": closed_after,
        "told": told,
        "held_s": args.duration,
    });
    let human = format!(
        "{opened} silent connections ({errors} not opened): {closed} closed by the game (after {:.1}-{:.1} s), {still_open} still open after {:.0} s; told: {}",
        closed_after.p50 as f64 / 1e6,
        closed_after.max as f64 / 1e6,
        args.duration,
        outcomes_human(&told)
    );
    (report, human)
}

/// The players' figures: every probe, and those sent during the flood.
#[derive(Debug, Serialize)]
struct Players {
    sessions: u32,
    rate_per_session: f64,
    sent: u64,
    answered: u64,
    lost: u64,
    doubled: u64,
    closed: u64,
    /// Round trips of the probes sent while the flood ran.
    during_flood_us: Summary,
    /// Round trips of every probe (calm before and after included).
    all_us: Summary,
}

pub async fn flood(game: Arc<Game>, args: FloodArgs) -> anyhow::Result<Outcome> {
    let duration = super::secs(args.duration)?;
    let calm = super::secs(args.calm)?;
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    if args.players > 0 && !(args.player_rate > 0.0 && args.player_rate.is_finite()) {
        bail!("--player-rate must be a positive number");
    }
    let outcomes = Arc::new(Outcomes::new(
        &args.outcomes,
        &game.login_screen,
        &args.slow_notice,
    )?);
    let attacker = Arc::new(game.with_sources(args.from.clone()).context("--from")?);

    // Chat: the flooder and its listeners are in before the players start.
    let mut chat_members = None;
    if args.kind == FloodKind::Chat {
        let flooder = login_named(&attacker, vec![args.flooder.clone()], LoginMode::Connect)
            .await
            .context("logging in the flooder")?
            .pop()
            .context("the flooder did not log in")?;
        let names = (0..args.listeners)
            .map(|i| account_name(&args.listener_prefix, i, game.name_style))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let listeners = login_named(&attacker, names, LoginMode::Connect)
            .await
            .context("logging in the listeners")?;
        chat_members = Some((flooder, listeners));
    }

    let members = if args.players > 0 {
        login_all(&game, args.players, LoginMode::Connect)
            .await
            .context("logging in the players")?
    } else {
        Vec::new()
    };
    let origin = Instant::now();
    let flood_start = origin + calm;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut probing = JoinSet::new();
    if args.players > 0 {
        let period = Duration::from_secs_f64(1.0 / args.player_rate);
        for mut member in members {
            let mut prober = Prober::new(
                member.index,
                game.probe.clone(),
                game.reply_pattern(&member.name)?,
                origin,
            );
            // Spread over one period, so the players do not fire at once.
            let first = origin + period.mul_f64(f64::from(member.index) / f64::from(args.players));
            let mut stop = stop_rx.clone();
            let drain = Duration::from_millis(args.drain_ms);
            probing.spawn(async move {
                let end = open_loop(
                    &mut member.client,
                    &mut prober,
                    first,
                    period,
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                    drain,
                )
                .await;
                (prober, end.closed)
            });
        }
    }

    sleep_until(flood_start.into()).await;
    let deadline = flood_start + duration;
    let kill = args.kill_cmd.clone().map(|cmd| {
        let at = flood_start + Duration::from_millis(args.kill_after_ms);
        tokio::spawn(async move {
            sleep_until(at.into()).await;
            run_cmd(&cmd, Duration::from_secs(30)).await
        })
    });
    let (attack, attack_human) = match args.kind {
        FloodKind::Login | FloodKind::Create | FloodKind::Brute => {
            let attempt = Template::new(&args.attempt);
            let create = Template::new(&game.create.render(Vars {
                name: "{name}",
                password: &game.password,
                token: "",
            }));
            let kind = args.kind;
            let (target, prefix, style) = (
                args.target.clone(),
                args.create_prefix.clone(),
                game.name_style,
            );
            let make = move |i: u32| match kind {
                FloodKind::Create => {
                    let name = account_name(&prefix, i, style).unwrap_or_else(|_| prefix.clone());
                    create.render(Vars {
                        name: &name,
                        password: "",
                        token: "",
                    })
                }
                _ => attempt.render(Vars {
                    name: &target,
                    password: "",
                    token: &format!("{i}"),
                }),
            };
            let wait = args.kind != FloodKind::Login || args.wait_answer;
            let owner = match (args.kind, &args.owner) {
                (FloodKind::Brute, Some(name)) => {
                    let from = args.owner_from.context("--owner needs --owner-from")?;
                    let owner_game = game.with_sources(vec![from]).context("--owner-from")?;
                    let every = Duration::from_millis(args.owner_every_ms.max(100));
                    Some(tokio::spawn(owner_logins(
                        owner_game,
                        name.clone(),
                        every,
                        deadline,
                    )))
                }
                _ => None,
            };
            let started = Instant::now();
            let ended = attempts(&attacker, &args, &outcomes, wait, deadline, make).await;
            let (mut report, human) = attempts_report(&ended, started.elapsed());
            let mut human = human;
            if let Some(owner) = owner {
                let logins = owner.await.context("the owner's logins")?;
                human.push_str(&format!("; owner's logins: {}", owner_human(&logins)));
                report["owner_logins"] = json!(logins);
            }
            (report, human)
        }
        FloodKind::Chat => {
            let (flooder, listeners) = chat_members.take().context("chat members")?;
            chat(&args, &outcomes, flooder, listeners, deadline).await?
        }
        FloodKind::Silent => silent(&attacker, &args, &outcomes, deadline).await,
    };
    let flood_end = Instant::now();
    let kill: Option<CmdRun> = match kill {
        Some(task) => Some(task.await.context("the kill command")?),
        None => None,
    };
    sleep_until((flood_end + calm).into()).await;
    let _ = stop_tx.send(true);

    let (from_us, to_us) = (
        (flood_start - origin).as_micros() as u64,
        (flood_end - origin).as_micros() as u64,
    );
    let (mut during, mut all) = (Samples::default(), Samples::default());
    let mut players = Players {
        sessions: args.players,
        rate_per_session: args.player_rate,
        sent: 0,
        answered: 0,
        lost: 0,
        doubled: 0,
        closed: 0,
        during_flood_us: Summary::default(),
        all_us: Summary::default(),
    };
    while let Some(joined) = probing.join_next().await {
        let (prober, closed) = joined.context("a player's probing")?;
        players.closed += u64::from(closed);
        players.doubled += prober.doubled;
        for p in prober.probes() {
            players.sent += 1;
            let Some(reply) = p.reply else {
                players.lost += 1;
                continue;
            };
            players.answered += 1;
            let rt = reply.saturating_sub(p.sent);
            all.push(rt);
            if (from_us..=to_us).contains(&p.sent) {
                during.push(rt);
            }
        }
    }
    players.during_flood_us = during.summary();
    players.all_us = all.summary();
    let players_human = format!(
        "players: {} × {}/s: sent {}, answered {}, lost {}, closed {}; during the flood p50 {} ms, p99 {} ms, max {} ms",
        players.sessions,
        players.rate_per_session,
        players.sent,
        players.answered,
        players.lost,
        players.closed,
        ms(players.during_flood_us.p50),
        ms(players.during_flood_us.p99),
        ms(players.all_us.max.max(players.during_flood_us.max)),
    );
    let kind = format!("{:?}", args.kind).to_lowercase();
    let ok = players.lost == 0 && players.closed == 0 && players.doubled == 0;
    let human = format!("flood {kind}: {attack_human}; {players_human}");
    let report = json!({
        "kind": kind,
        "from": args.from,
        "flood_s": (flood_end - flood_start).as_secs_f64(),
        "attack": attack,
        "players": players,
        "kill": kill,
    });
    Ok(Outcome::new("flood", human, report, ok))
}

fn owner_human(logins: &[serde_json::Value]) -> String {
    logins
        .iter()
        .map(|l| match l["elapsed_ms"].as_f64() {
            Some(e) => format!("{e:.0} ms"),
            None => format!("failed ({})", l["error"].as_str().unwrap_or("?")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connections a flood may hold at once (for the open-file check).
pub fn sessions_needed(args: &FloodArgs) -> u32 {
    let attacker = match args.kind {
        FloodKind::Silent => args.count,
        FloodKind::Chat => args.listeners.saturating_add(1),
        _ => args.concurrency.saturating_add(1),
    };
    args.players.saturating_add(attacker)
}
