//! `broadcast`: N listeners in one room and one speaker (session N). The
//! speaker's says carry numbered tokens; each listener notes which it heard
//! and when, so the report has lines delivered per second, the lines missing
//! or doubled, and the delivery latency (say sent → heard).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::client::{Client, LoginMode};
use crate::fleet::login_all;
use crate::game::Game;
use crate::pattern::{ReplyPattern, Template, Token};
use crate::probe::{Prober, closed_loop, open_loop};
use crate::report::Outcome;
use crate::stats::{Samples, Summary, ms};

pub struct Args {
    pub listeners: u32,
    pub duration: Duration,
    pub say: String,
    pub echo: String,
    pub heard: String,
    pub rate: f64,
    pub depth: u32,
    pub drain: Duration,
}

#[derive(Debug, Serialize)]
struct Report {
    listeners: u32,
    duration_s: f64,
    mode: String,
    says_sent: u64,
    says_echoed: u64,
    lines_delivered: u64,
    lines_expected: u64,
    lines_missing: u64,
    lines_doubled: u64,
    /// Delivered lines per second, over the time from the first say to the
    /// last line heard.
    lines_per_s: f64,
    listeners_closed: u64,
    speaker_closed: bool,
    delivery_us: Summary,
}

/// What one listener heard: (say number, when in µs from the origin).
struct Heard {
    lines: Vec<(u64, u64)>,
    closed: bool,
}

pub async fn broadcast(game: Arc<Game>, args: Args) -> anyhow::Result<Outcome> {
    if args.listeners == 0 {
        bail!("--listeners must be at least 1");
    }
    let say = Template::new(&args.say);
    if !say.has_token() {
        bail!("--say {:?} has no {{token}}", args.say);
    }
    let mut members = login_all(&game, args.listeners + 1, LoginMode::Connect).await?;
    let mut speaker = members.pop().context("the speaker session")?;
    let speaker_index = speaker.index;

    let origin = Instant::now();
    let start = origin + Duration::from_millis(200);
    let end = start + args.duration;
    // None while the speaker speaks; then how many says it sent.
    let (total_tx, total_rx) = watch::channel(None::<u64>);
    let heard = ReplyPattern::new(&args.heard, &speaker.name).context("--heard")?;
    let mut tasks = JoinSet::new();
    for member in members {
        let heard = heard.clone();
        let total = total_rx.clone();
        let drain = args.drain;
        tasks.spawn(listen(
            member.client,
            heard,
            speaker_index,
            origin,
            total,
            drain,
        ));
    }

    let mut prober = Prober::new(
        speaker_index,
        say,
        ReplyPattern::new(&args.echo, &speaker.name).context("--echo")?,
        origin,
    );
    let (mode, spoke) = if args.rate > 0.0 && args.rate.is_finite() {
        let period = Duration::from_secs_f64(1.0 / args.rate);
        let spoke = open_loop(
            &mut speaker.client,
            &mut prober,
            start,
            period,
            sleep_until(end.into()),
            args.drain,
        )
        .await;
        (format!("{}/s", args.rate), spoke)
    } else {
        sleep_until(start.into()).await;
        let spoke = closed_loop(
            &mut speaker.client,
            &mut prober,
            args.depth,
            sleep_until(end.into()),
            args.drain,
        )
        .await;
        (
            format!("closed loop, {} in flight", args.depth.max(1)),
            spoke,
        )
    };
    let says = prober.sent();
    let _ = total_tx.send(Some(says));

    let sent_at: Vec<u64> = prober.probes().iter().map(|p| p.sent).collect();
    let (mut delivered, mut doubled, mut closed) = (0u64, 0u64, 0u64);
    let mut last_heard = 0u64;
    let mut delivery = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        let listener = joined.context("listener task")?;
        closed += u64::from(listener.closed);
        let mut seen = HashSet::with_capacity(listener.lines.len());
        for (seq, at) in listener.lines {
            if !seen.insert(seq) {
                doubled += 1;
                continue;
            }
            delivered += 1;
            last_heard = last_heard.max(at);
            if let Some(sent) = sent_at.get(seq as usize) {
                delivery.push(at.saturating_sub(*sent));
            }
        }
    }
    let expected = says * u64::from(args.listeners);
    let start_us = (start - origin).as_micros() as u64;
    let span_s = (last_heard.saturating_sub(start_us)) as f64 / 1e6;
    let report = Report {
        listeners: args.listeners,
        duration_s: args.duration.as_secs_f64(),
        mode,
        says_sent: says,
        says_echoed: prober.round_trips.len() as u64,
        lines_delivered: delivered,
        lines_expected: expected,
        lines_missing: expected.saturating_sub(delivered),
        lines_doubled: doubled,
        lines_per_s: if span_s > 0.0 {
            delivered as f64 / span_s
        } else {
            0.0
        },
        listeners_closed: closed,
        speaker_closed: spoke.closed,
        delivery_us: delivery.summary(),
    };
    let d = &report.delivery_us;
    let human = format!(
        "broadcast: {} listeners, {} for {:.0} s: {} says, {:.0} lines delivered/s ({} of {} delivered, {} missing, {} doubled, {} listeners closed); delivery p50 {} ms, p99 {} ms, max {} ms",
        args.listeners,
        report.mode,
        report.duration_s,
        says,
        report.lines_per_s,
        delivered,
        expected,
        report.lines_missing,
        doubled,
        closed,
        ms(d.p50),
        ms(d.p99),
        ms(d.max)
    );
    let ok = report.lines_missing == 0 && doubled == 0 && closed == 0 && !spoke.closed;
    Ok(Outcome::new("broadcast", human, &report, ok))
}

/// Reads until the speaker is done and every say was heard, or `drain` after
/// the speaker is done.
async fn listen(
    mut client: Client,
    heard: ReplyPattern,
    speaker: u32,
    origin: Instant,
    mut total: watch::Receiver<Option<u64>>,
    drain: Duration,
) -> Heard {
    let mut out = Heard {
        lines: Vec::new(),
        closed: false,
    };
    let mut distinct = HashSet::new();
    let mut give_up: Option<Instant> = None;
    loop {
        let done = *total.borrow_and_update();
        if let Some(n) = done {
            if distinct.len() as u64 >= n {
                return out;
            }
            give_up.get_or_insert_with(|| Instant::now() + drain);
        }
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            changed = total.changed(), if done.is_none() => {
                if changed.is_err() {
                    return out;
                }
            }
            _ = sleep_until(give_up.unwrap_or(far).into()), if give_up.is_some() => return out,
            line = client.next_line() => match line {
                Ok(Some(line)) => {
                    let at = origin.elapsed().as_micros() as u64;
                    let token = heard.extract(&line).and_then(Token::decode);
                    if let Some(token) = token.filter(|t| t.session == speaker) {
                        distinct.insert(token.seq);
                        out.lines.push((token.seq, at));
                    }
                }
                _ => {
                    out.closed = true;
                    return out;
                }
            },
        }
    }
}
