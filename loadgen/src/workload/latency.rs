//! `latency` (open loop: each session probes on its own schedule, whatever
//! the replies do, so a stall shows in the figures instead of slowing the
//! load) and `throughput` (closed loop: the next probe when a reply comes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::client::LoginMode;
use crate::fleet::login_all;
use crate::game::Game;
use crate::probe::{Prober, closed_loop, open_loop};
use crate::report::Outcome;
use crate::stats::{Samples, Summary, ms};

/// Time between the last login and the first probe, so the run starts calm.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Serialize)]
struct Counts {
    sent: u64,
    answered: u64,
    lost: u64,
    doubled: u64,
    foreign: u64,
    closed: u64,
}

impl Counts {
    fn clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.foreign == 0 && self.closed == 0
    }

    fn human(&self) -> String {
        let mut text = format!(
            "sent {}, answered {}, lost {}",
            self.sent, self.answered, self.lost
        );
        for (what, n) in [
            ("doubled", self.doubled),
            ("foreign", self.foreign),
            ("closed", self.closed),
        ] {
            if n > 0 {
                text.push_str(&format!(", {what} {n}"));
            }
        }
        text
    }
}

struct SessionResult {
    prober: Prober,
    closed: bool,
}

/// Logs in `sessions`, runs `drive` on each (given its index, the run's
/// origin and its start), and gathers the probers.
async fn probe_all<F, Fut>(
    game: &Arc<Game>,
    sessions: u32,
    drive: F,
) -> anyhow::Result<(Vec<SessionResult>, Instant, Instant)>
where
    F: Fn(u32, crate::fleet::Member, Prober, Instant) -> Fut,
    Fut: Future<Output = SessionResult> + Send + 'static,
{
    if sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    let members = login_all(game, sessions, LoginMode::Connect).await?;
    let origin = Instant::now();
    let start = origin + SETTLE;
    let mut tasks = JoinSet::new();
    for member in members {
        let prober = Prober::new(
            member.index,
            game.probe.clone(),
            game.reply_pattern(&member.name)?,
            origin,
        );
        tasks.spawn(drive(member.index, member, prober, start));
    }
    let mut results = Vec::with_capacity(sessions as usize);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("probing task")?);
    }
    Ok((results, origin, start))
}

fn gather(results: &mut [SessionResult]) -> (Counts, Samples) {
    let mut counts = Counts::default();
    let mut samples = Samples::default();
    for r in results {
        let p = &mut r.prober;
        counts.sent += p.sent();
        counts.answered += p.round_trips.len() as u64;
        counts.lost += p.outstanding() as u64;
        counts.doubled += p.doubled;
        counts.foreign += p.foreign;
        counts.closed += u64::from(r.closed);
        samples.extend(std::mem::take(&mut p.round_trips));
    }
    (counts, samples)
}

fn latency_human(s: &Summary) -> String {
    format!(
        "round trip p50 {} ms, p99 {} ms, max {} ms",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    )
}

#[derive(Debug, Serialize)]
struct LatencyReport {
    sessions: u32,
    rate_per_session: f64,
    duration_s: f64,
    #[serde(flatten)]
    counts: Counts,
    round_trip_us: Summary,
}

pub async fn latency(
    game: Arc<Game>,
    sessions: u32,
    rate: f64,
    duration: Duration,
    drain: Duration,
) -> anyhow::Result<Outcome> {
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let (mut results, _, _) =
        probe_all(&game, sessions, move |i, mut member, mut prober, start| {
            // Spread evenly over one period, so the sessions do not fire at once.
            let first = start + period.mul_f64(f64::from(i) / f64::from(sessions));
            let end = start + duration;
            async move {
                let end = open_loop(
                    &mut member.client,
                    &mut prober,
                    first,
                    period,
                    sleep_until(end.into()),
                    drain,
                )
                .await;
                SessionResult {
                    prober,
                    closed: end.closed,
                }
            }
        })
        .await?;
    let (counts, samples) = gather(&mut results);
    let report = LatencyReport {
        sessions,
        rate_per_session: rate,
        duration_s: duration.as_secs_f64(),
        round_trip_us: samples.summary(),
        counts,
    };
    let human = format!(
        "latency: {sessions} sessions × {rate}/s for {:.0} s: {}; {}",
        report.duration_s,
        report.counts.human(),
        latency_human(&report.round_trip_us)
    );
    let ok = report.counts.clean();
    Ok(Outcome::new("latency", human, &report, ok))
}

#[derive(Debug, Serialize)]
struct ThroughputReport {
    sessions: u32,
    depth: u32,
    duration_s: f64,
    /// Replies received within the duration, per second.
    commands_per_s: f64,
    #[serde(flatten)]
    counts: Counts,
    round_trip_us: Summary,
}

pub async fn throughput(
    game: Arc<Game>,
    sessions: u32,
    depth: u32,
    duration: Duration,
    drain: Duration,
) -> anyhow::Result<Outcome> {
    let (mut results, origin, start) =
        probe_all(&game, sessions, move |_, mut member, mut prober, start| {
            let end = start + duration;
            async move {
                sleep_until(start.into()).await;
                let end = closed_loop(
                    &mut member.client,
                    &mut prober,
                    depth,
                    sleep_until(end.into()),
                    drain,
                )
                .await;
                SessionResult {
                    prober,
                    closed: end.closed,
                }
            }
        })
        .await?;
    let end_us = (start + duration - origin).as_micros() as u64;
    let in_time: u64 = results.iter().map(|r| r.prober.answered_by(end_us)).sum();
    let (counts, samples) = gather(&mut results);
    let report = ThroughputReport {
        sessions,
        depth,
        duration_s: duration.as_secs_f64(),
        commands_per_s: in_time as f64 / duration.as_secs_f64().max(1e-9),
        round_trip_us: samples.summary(),
        counts,
    };
    let human = format!(
        "throughput: {sessions} sessions, {depth} in flight each, {:.0} s: {:.0} commands/s; {}; {}",
        report.duration_s,
        report.commands_per_s,
        report.counts.human(),
        latency_human(&report.round_trip_us)
    );
    let ok = report.counts.clean();
    Ok(Outcome::new("throughput", human, &report, ok))
}
