//! Crash recovery and quarantine.
//!
//! A server that goes away without `Drained` crashed. The inputs it had but
//! never acked are suspects. Most crashes are not caused by an input (a kill,
//! a bug in a timer), so the next server gets the suspects at once with
//! everything else: one group commit, and the game is back. Inputs in flight
//! in a second crash are replayed one at a time, each only after the previous
//! one was acked, before anything else. An input in flight alone when a
//! server crashes, having been in flight in an earlier crash, is the poison:
//! it is quarantined (dropped, the player told), never delivered again.

use super::Hub;
use super::api::{ConnId, Outbound};
use super::pause::Cause;
use super::shutdown::Stopping;

impl Hub {
    /// The server that had inputs in flight went away without `Drained`.
    /// Its unacked inputs become suspects; one in flight alone that was in
    /// flight in an earlier crash too is quarantined.
    pub(super) fn crashed(&mut self, reason: &str) {
        self.careful = None;
        self.unanswered.clear();
        let in_flight: usize = self
            .sessions
            .values()
            .map(|s| s.pending.iter().take_while(|p| p.seq <= s.sent).count())
            .sum();
        let mut quarantined = Vec::new();
        for (&id, s) in self.sessions.iter_mut() {
            let sent = s.sent;
            for p in s.pending.iter_mut().filter(|p| p.seq <= sent) {
                p.crashes = p.crashes.saturating_add(1);
            }
            // Acked inputs leave `pending`, so one in flight is at the front.
            if in_flight == 1
                && let Some(p) = s.pending.front()
                && p.seq <= sent
                && p.crashes >= 2
            {
                quarantined.push((id, p.seq, p.body.clone()));
                s.pending.pop_front();
                s.credits.add_permits(1);
            }
            // Whatever it did not ack goes to the next server.
            s.sent = s.acked;
            s.closed_sent = s.closed_sent && s.pending.is_empty();
        }
        self.counters.inputs_quarantined += quarantined.len() as u64;
        for (session, seq, body) in quarantined {
            tracing::error!(
                %session,
                seq,
                input = ?body,
                "quarantined: this input crashed the server again when replayed alone; it will not be delivered again"
            );
            self.send_to_player(
                session,
                Outbound::Notice(format!(
                    "[ev] {} crashed the game more than once and was not run again.",
                    body.describe()
                )),
            );
        }
        if matches!(self.stopping, Stopping::No) {
            tracing::error!("the serving server went away without draining: {reason}");
            self.pause_begins(Cause::Crash);
        }
    }

    /// After a second crash: hands `conn` the next suspect alone and
    /// returns true; false, leaving the careful mode, once none is left.
    pub(super) fn replay_suspect_alone(&mut self, conn: ConnId) -> bool {
        let suspect = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.closed_sent)
            .filter_map(|(id, s)| {
                let p = s.pending.iter().find(|p| p.seq > s.sent)?;
                (p.crashes >= 2).then_some((*id, p.seq))
            })
            .min();
        if let Some((session, seq)) = suspect {
            tracing::info!(
                %session,
                seq,
                "replaying an input that was in flight during a crash, alone"
            );
            self.careful = Some((session, seq));
            let minor = self.minor(conn);
            if let Some(s) = self.sessions.get_mut(&session)
                && let Some(p) = s.pending.iter().find(|p| p.seq == seq)
            {
                s.sent = seq;
                self.counters.inputs_replayed += 1;
                let event = p.body.event(minor, session, seq);
                self.unanswered
                    .sent(tokio::time::Instant::now(), session, seq);
                self.push(conn, event);
            }
            return true;
        }
        self.careful = None;
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::hub::fixture::*;

    #[tokio::test]
    async fn after_a_crash_suspects_go_at_once_then_alone_and_the_poison_is_quarantined() {
        let h = start();
        let mut s = h.open(7, 16);
        let _t = h.open(8, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "@crash");
        h.input(8, "look");
        a.take(2).await;
        h.kill(1);
        h.input(7, "say after");
        // The first crash may have had nothing to do with its inputs: the
        // next server gets them all at once, and the new one too.
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        let mut got = inputs(&b.take(5).await);
        got.sort();
        assert_eq!(
            got,
            vec![
                (7, 1, "@crash".into()),
                (7, 2, "say after".into()),
                (8, 1, "look".into())
            ]
        );
        // A second crash with them in flight: now they go one at a time.
        h.kill(2);
        let mut c = h.attach(3, 3, ev::version::LINK_MAJOR);
        let events = c.take(3).await;
        assert_eq!(inputs(&events), vec![(7, 1, "@crash".into())]);
        // It crashes the server alone: quarantined.
        h.kill(3);
        let mut d = h.attach(4, 4, ev::version::LINK_MAJOR);
        let events = d.take(3).await;
        assert_eq!(inputs(&events), vec![(8, 1, "look".into())]);
        h.from(
            4,
            vec![ToPortal::Ack {
                session: SessionId(8),
                seq: 1,
            }],
        );
        // Suspects done: the rest flows, and the quarantined seq never again.
        let events = d.take(1).await;
        assert_eq!(inputs(&events), vec![(7, 2, "say after".into())]);
        assert_told_of_quarantine(&mut s);
        // Replays: two to B, three to C and D (the suspects alone, then the
        // rest); the poison is not replayed again.
        let c = h.status().await.counters;
        assert_eq!(
            (c.inputs_received, c.inputs_replayed, c.inputs_quarantined),
            (3, 5, 1)
        );
        h.stop.cancel();
    }

    #[tokio::test]
    async fn an_input_alone_in_two_crashes_is_quarantined_after_the_second() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "@crash");
        a.take(1).await;
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        assert_eq!(inputs(&b.take(3).await), vec![(7, 1, "@crash".into())]);
        h.kill(2);
        let mut c = h.attach(3, 3, ev::version::LINK_MAJOR);
        assert_eq!(
            inputs(&c.take(2).await),
            vec![],
            "quarantined, not replayed"
        );
        h.input(7, "ping");
        assert_eq!(inputs(&c.take(1).await), vec![(7, 2, "ping".into())]);
        assert_told_of_quarantine(&mut s);
        h.stop.cancel();
    }

    #[tokio::test]
    async fn client_oob_alone_in_two_crashes_is_quarantined_by_name() {
        let h = start();
        let mut s = h.open(7, 16);
        let mut a = h.attach_minor(1, 1, ev::version::LINK_MAJOR, 3);
        a.take(2).await;
        h.oob(7, "Char.Poison", "{}");
        a.take(1).await;
        h.kill(1);
        let mut b = h.attach_minor(2, 2, ev::version::LINK_MAJOR, 3);
        assert_eq!(
            inputs_and_oob(&b.take(3).await),
            vec![(7, 1, "Char.Poison {}".into())]
        );
        h.kill(2);
        let mut c = h.attach_minor(3, 3, ev::version::LINK_MAJOR, 3);
        assert_eq!(inputs_and_oob(&c.take(2).await), vec![]);
        let told = s.texts();
        assert!(
            told.iter()
                .any(|t| t.contains("Your client's message \"Char.Poison\" crashed the game")),
            "{told:?}"
        );
        h.stop.cancel();
    }
}
