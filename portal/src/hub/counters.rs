//! What the hub counts for the operator: inputs through the exactly-once
//! ledger, connections opened, and the Link's heartbeat round trips.
//!
//! The counts live as long as the portal, so they carry on across server
//! generations; `PortalAdmin.Status` hands a copy to the supervisor, which
//! serves them as Prometheus metrics. Counting is a few additions on paths
//! the hub walks anyway: nothing here allocates per input.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::Hub;
use super::api::ConnId;

/// Upper bounds of the round-trip buckets, in microseconds: 100 µs to 10 s.
pub const ROUND_TRIP_BOUNDS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Heartbeats remembered for their answer; an answer later than this many
/// heartbeat periods is not timed (the watchdog has long killed its server).
const HEARTBEATS_REMEMBERED: usize = 64;

/// A histogram of durations with fixed buckets: `counts[i]` holds the
/// observations at or below `bounds[i]` (and above `bounds[i - 1]`); the
/// last count, those above every bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub bounds_micros: Vec<u64>,
    pub counts: Vec<u64>,
    pub sum_micros: u64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds_micros: &[u64]) -> Histogram {
        Histogram {
            bounds_micros: bounds_micros.to_vec(),
            counts: vec![0; bounds_micros.len() + 1],
            sum_micros: 0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let bucket = self.bounds_micros.partition_point(|&b| b < micros);
        if let Some(n) = self.counts.get_mut(bucket) {
            *n += 1;
        }
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.count += 1;
    }
}

/// The hub's counters since the portal started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Inputs from clients: lines and out-of-band messages alike.
    pub inputs_received: u64,
    /// Acked by a server: applied and committed.
    pub inputs_applied: u64,
    /// Handed to a server again after the one that had them crashed.
    pub inputs_replayed: u64,
    pub inputs_quarantined: u64,
    /// Connections opened, by protocol.
    pub sessions_opened: BTreeMap<String, u64>,
    pub link_round_trip: Histogram,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            inputs_received: 0,
            inputs_applied: 0,
            inputs_replayed: 0,
            inputs_quarantined: 0,
            sessions_opened: BTreeMap::new(),
            link_round_trip: Histogram::new(&ROUND_TRIP_BOUNDS_MICROS),
        }
    }
}

impl Counters {
    pub(super) fn opened(&mut self, protocol: &str) {
        match self.sessions_opened.get_mut(protocol) {
            Some(n) => *n += 1,
            None => {
                self.sessions_opened.insert(protocol.to_owned(), 1);
            }
        }
    }
}

/// When each recent heartbeat went out, to time its answers.
#[derive(Debug, Default)]
pub(super) struct Heartbeats {
    sent: VecDeque<(u64, Instant)>,
}

impl Heartbeats {
    pub(super) fn sent(&mut self, nonce: u64, at: Instant) {
        if self.sent.len() == HEARTBEATS_REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((nonce, at));
    }

    fn sent_at(&self, nonce: u64) -> Option<Instant> {
        self.sent
            .iter()
            .rev()
            .find(|(n, _)| *n == nonce)
            .map(|&(_, at)| at)
    }
}

impl Hub {
    /// A server answered heartbeat `nonce`: one round trip to count.
    pub(super) fn heartbeat_answered(&mut self, conn: ConnId, nonce: u64) {
        if !self.servers.contains_key(&conn) {
            return;
        }
        if let Some(at) = self.heartbeats.sent_at(nonce) {
            self.counters.link_round_trip.observe(at.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::fixture::*;

    #[test]
    fn observations_fall_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::new(&[100, 1_000]);
        for micros in [0, 100, 101, 1_000, 1_001, 5_000_000] {
            h.observe(Duration::from_micros(micros));
        }
        assert_eq!(h.counts, [2, 2, 2]);
        assert_eq!(h.count, 6);
        assert_eq!(h.sum_micros, 5_002_202);
    }

    #[test]
    fn only_recent_heartbeats_are_timed() {
        let mut beats = Heartbeats::default();
        let now = Instant::now();
        for nonce in 1..=(HEARTBEATS_REMEMBERED as u64 + 1) {
            beats.sent(nonce, now);
        }
        assert_eq!(beats.sent_at(1), None);
        assert_eq!(beats.sent_at(2), Some(now));
    }

    #[tokio::test]
    async fn inputs_are_counted_through_apply_crash_replay_and_quarantine() {
        let h = start();
        let _s = h.open(7, 16);
        let _t = h.open(8, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "ping");
        h.input(8, "look");
        a.take(2).await;
        h.from(1, pong(7, 1));
        let c = h.status().await.counters;
        assert_eq!(c.sessions_opened.get(""), Some(&2));
        assert_eq!(
            (c.inputs_received, c.inputs_applied, c.inputs_replayed),
            (2, 1, 0)
        );
        // Session 8's input was in flight: the next server gets it again.
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        assert_eq!(inputs(&b.take(3).await), vec![(8, 1, "look".into())]);
        let c = h.status().await.counters;
        assert_eq!((c.inputs_applied, c.inputs_replayed), (1, 1));
        // In flight alone in a second crash: quarantined, not replayed.
        h.kill(2);
        let mut c3 = h.attach(3, 3, ev::version::LINK_MAJOR);
        c3.take(2).await;
        let c = h.status().await.counters;
        assert_eq!(
            (
                c.inputs_received,
                c.inputs_applied,
                c.inputs_replayed,
                c.inputs_quarantined
            ),
            (2, 1, 1, 1)
        );
        h.stop.cancel();
    }

    #[tokio::test]
    async fn heartbeat_answers_are_timed_once_each() {
        let h = start_with_heartbeat(Duration::ZERO);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(1).await;
        h.tx.send(HubEvent::Tick);
        let nonce = a
            .take(1)
            .await
            .iter()
            .find_map(|e| match e {
                ToServer::Heartbeat { nonce, .. } => Some(*nonce),
                _ => None,
            })
            .expect("a heartbeat");
        h.from(1, vec![ToPortal::Heartbeat { nonce, reply: true }]);
        // An answer to a heartbeat never sent is not a round trip.
        h.from(
            1,
            vec![ToPortal::Heartbeat {
                nonce: 999,
                reply: true,
            }],
        );
        let rtt = h.status().await.counters.link_round_trip;
        assert_eq!(rtt.count, 1);
        assert_eq!(rtt.counts.iter().sum::<u64>(), 1);
        h.stop.cancel();
    }
}
