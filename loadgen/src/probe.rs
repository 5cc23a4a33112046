//! Probing one session: numbered probes out, replies matched by token, and the
//! two loops that drive it (open loop on a schedule, closed loop on replies).
//!
//! [`Prober`] is the bookkeeping and has no IO: a reply is matched to the probe
//! whose token it carries, so a reply that comes twice, or for a probe this
//! session never sent, is counted rather than mistaken for another.

use std::time::{Duration, Instant};

use tokio::time::sleep_until;

use crate::client::{Client, LineError};
use crate::pattern::{ReplyPattern, Template, Token, Vars};
use crate::stats::{Probe, Samples};

pub struct Prober {
    session: u32,
    probe: Template,
    reply: ReplyPattern,
    /// Time zero of every figure: shared by all sessions of a run.
    origin: Instant,
    probes: Vec<Probe>,
    outstanding: usize,
    pub doubled: u64,
    /// Replies carrying a token this session never sent.
    pub foreign: u64,
    pub round_trips: Samples,
}

impl Prober {
    pub fn new(session: u32, probe: Template, reply: ReplyPattern, origin: Instant) -> Prober {
        Prober {
            session,
            probe,
            reply,
            origin,
            probes: Vec::new(),
            outstanding: 0,
            doubled: 0,
            foreign: 0,
            round_trips: Samples::default(),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The next probe's text; its send time is taken now.
    pub fn next_probe(&mut self) -> String {
        let token = Token {
            session: self.session,
            seq: self.probes.len() as u64,
        };
        self.probes.push(Probe {
            sent: self.now(),
            reply: None,
        });
        self.outstanding += 1;
        self.probe.render(Vars {
            token: &token.encode(),
            ..Vars::default()
        })
    }

    /// Looks at one line from the game. True if it answered a probe for the
    /// first time.
    pub fn on_line(&mut self, line: &str) -> bool {
        let now = self.now();
        self.on_line_at(line, now)
    }

    pub fn on_line_at(&mut self, line: &str, now: u64) -> bool {
        let Some(token) = self.reply.extract(line).and_then(Token::decode) else {
            return false;
        };
        if token.session != self.session {
            self.foreign += 1;
            return false;
        }
        let Some(probe) = self.probes.get_mut(token.seq as usize) else {
            self.foreign += 1;
            return false;
        };
        if probe.reply.is_some() {
            self.doubled += 1;
            return false;
        }
        probe.reply = Some(now);
        self.outstanding -= 1;
        self.round_trips.push(now.saturating_sub(probe.sent));
        true
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    pub fn sent(&self) -> u64 {
        self.probes.len() as u64
    }

    pub fn probes(&self) -> &[Probe] {
        &self.probes
    }

    /// Replies that came at or before `until` (µs from the origin).
    pub fn answered_by(&self, until: u64) -> u64 {
        self.probes
            .iter()
            .filter(|p| p.reply.is_some_and(|r| r <= until))
            .count() as u64
    }
}

/// How a probing loop ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopEnd {
    /// The game closed the connection (or it failed).
    pub closed: bool,
}

const CLOSED: LoopEnd = LoopEnd { closed: true };

/// Sends a probe at `first` and every `period` after until `stop` resolves;
/// then waits up to `drain` for the outstanding replies. A schedule that falls
/// behind skips the missed probes rather than bursting.
pub async fn open_loop(
    client: &mut Client,
    prober: &mut Prober,
    first: Instant,
    period: Duration,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> LoopEnd {
    tokio::pin!(stop);
    let mut next = first;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = sleep_until(next.into()) => {
                let text = prober.next_probe();
                if client.send(&text).await.is_err() {
                    return CLOSED;
                }
                next += period;
                let now = Instant::now();
                if next < now {
                    let behind = (now - next).as_nanos() / period.as_nanos().max(1);
                    next += period * (behind as u32 + 1);
                }
            }
            line = client.next_line() => match line {
                Ok(Some(line)) => { prober.on_line(&line); }
                _ => return CLOSED,
            },
        }
    }
    drain_replies(client, prober, drain).await
}

/// Keeps `depth` probes in flight, each reply sending the next, until `stop`
/// resolves; then waits up to `drain` for the outstanding replies.
pub async fn closed_loop(
    client: &mut Client,
    prober: &mut Prober,
    depth: u32,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> LoopEnd {
    tokio::pin!(stop);
    for _ in 0..depth.max(1) {
        let text = prober.next_probe();
        if client.send(&text).await.is_err() {
            return CLOSED;
        }
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            line = client.next_line() => match line {
                Ok(Some(line)) => {
                    if prober.on_line(&line) {
                        let text = prober.next_probe();
                        if client.send(&text).await.is_err() {
                            return CLOSED;
                        }
                    }
                }
                _ => return CLOSED,
            },
        }
    }
    drain_replies(client, prober, drain).await
}

async fn drain_replies(client: &mut Client, prober: &mut Prober, drain: Duration) -> LoopEnd {
    let give_up = Instant::now() + drain;
    while prober.outstanding() > 0 {
        match client.line_by(give_up).await {
            Ok(Some(line)) => {
                prober.on_line(&line);
            }
            Ok(None) | Err(LineError::Io(_)) => return CLOSED,
            Err(LineError::Timeout) => break,
        }
    }
    LoopEnd::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prober(session: u32) -> Prober {
        Prober::new(
            session,
            Template::new("ping {token}"),
            ReplyPattern::new("pong {token}", "").unwrap(),
            Instant::now(),
        )
    }

    #[test]
    fn replies_match_their_probe_once() {
        let mut p = prober(3);
        assert_eq!(p.next_probe(), "ping t3x0");
        assert_eq!(p.next_probe(), "ping t3x1");
        assert_eq!(p.outstanding(), 2);
        assert!(p.on_line_at("pong t3x1", 500));
        assert!(!p.on_line_at("pong t3x1", 600));
        assert_eq!(p.doubled, 1);
        assert!(!p.on_line_at("pong t4x0", 700));
        assert!(!p.on_line_at("pong t3x9", 700));
        assert_eq!(p.foreign, 2);
        assert!(!p.on_line_at("Bob has arrived.", 700));
        assert!(!p.on_line_at("pong hello", 700));
        assert_eq!(p.foreign, 2);
        assert_eq!(p.outstanding(), 1);
        assert!(p.on_line_at("pong t3x0", 900));
        assert_eq!(p.outstanding(), 0);
        assert_eq!(p.sent(), 2);
        assert_eq!(p.answered_by(500), 1);
        assert_eq!(p.answered_by(900), 2);
        assert_eq!(p.round_trips.len(), 2);
    }
}
