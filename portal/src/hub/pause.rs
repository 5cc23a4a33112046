//! Pauses: input waits for a server (a reload, a crash, a server that
//! leaves inputs unanswered), and the players hear of it only once it has
//! lasted `portal.pause_notice_ms`, and then of its end.

use std::collections::HashSet;

use super::Hub;
use super::api::{HubEvent, Outbound};
use super::shutdown::Stopping;
use ev::link::SessionId;

/// Input waits for a server: a hand-over's drain and restore, a crashed
/// server's restart, or an active server that leaves inputs unanswered (hung,
/// or holding commands while its storage fails). A reload or crash ends when
/// a server reports Ready, unanswered inputs when none has waited
/// `pause_notice` any more. Players hear of it only once it has lasted
/// `pause_notice`: a reload takes milliseconds, and a line to every player
/// costs more than that.
pub(super) struct Pause {
    id: u64,
    cause: Cause,
    told: Told,
}

/// Who heard that the game is paused, and so hears when it is back.
enum Told {
    Nobody,
    Everyone,
    /// Unanswered inputs: only the players whose input waits hear of it.
    Only(HashSet<SessionId>),
}

impl Told {
    fn anybody(&self) -> bool {
        match self {
            Told::Nobody => false,
            Told::Everyone => true,
            Told::Only(these) => !these.is_empty(),
        }
    }
}

/// Ordered by how much it says: a later, graver cause replaces the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cause {
    Unanswered,
    Reload,
    Crash,
}

impl Cause {
    fn notice(self) -> &'static str {
        match self {
            Cause::Unanswered => "[ev] The game is paused; your commands will run when it is back.",
            Cause::Reload => "[ev] The game is reloading; your commands will run in a moment.",
            Cause::Crash => {
                "[ev] The game server stopped unexpectedly; it is restarting. Your commands will run when it is back."
            }
        }
    }
}

/// Told at a pause's end, if its start was told.
const BACK: &str = "[ev] The game is back.";

/// Whether `notice` tells of a pause (Some(true)) or of its end
/// (Some(false)); None for any other notice.
pub(super) fn told(notice: &str) -> Option<bool> {
    if notice == BACK {
        return Some(false);
    }
    [Cause::Unanswered, Cause::Reload, Cause::Crash]
        .iter()
        .any(|cause| cause.notice() == notice)
        .then_some(true)
}

impl Hub {
    pub(super) fn pause_begins(&mut self, cause: Cause) {
        if let Some(pause) = &mut self.pause {
            if cause <= pause.cause {
                return;
            }
            // A crash in a hand-over, or a server that stopped answering and
            // is now replaced: who heard of the pause hears why it lasts.
            let from_silence = pause.cause == Cause::Unanswered;
            pause.cause = cause;
            if pause.told.anybody() {
                pause.told = Told::Everyone;
                self.notice_all(cause.notice());
            } else if from_silence {
                // Nobody was told, so no notice timer runs: start one.
                pause.told = Told::Nobody;
                let id = pause.id;
                self.notice_later(id);
            }
            return;
        }
        let id = self.next_pause;
        self.next_pause += 1;
        self.pause = Some(Pause {
            id,
            cause,
            told: Told::Nobody,
        });
        self.notice_later(id);
    }

    /// Tells everyone of pause `id` if it lasts `pause_notice`.
    fn notice_later(&mut self, id: u64) {
        let after = self.config.pause_notice;
        if after.is_zero() {
            self.tell_pause(id);
            return;
        }
        self.me.after(after, HubEvent::PauseNotice { pause: id });
    }

    pub(super) fn tell_pause(&mut self, id: u64) {
        if !matches!(self.stopping, Stopping::No) {
            return;
        }
        let Some(pause) = &mut self.pause else { return };
        if pause.id != id || matches!(pause.told, Told::Everyone) {
            return;
        }
        pause.told = Told::Everyone;
        let text = pause.cause.notice();
        self.notice_all(text);
    }

    pub(super) fn pause_ends(&mut self) {
        match self.pause.take().map(|p| p.told) {
            Some(Told::Everyone) => self.notice_all(BACK),
            Some(Told::Only(these)) => {
                for session in these {
                    self.send_to_player(session, Outbound::Notice(BACK.into()));
                }
            }
            Some(Told::Nobody) | None => {}
        }
    }

    /// An active server that leaves inputs unanswered for `pause_notice` is a
    /// pause like a reload's, told to the players whose input waits; it is
    /// over when no input has waited that long any more.
    pub(super) fn check_unanswered(&mut self) {
        let silent = matches!(&self.pause, Some(p) if p.cause == Cause::Unanswered);
        if self.active.is_none()
            || self.switch.is_some()
            || !matches!(self.stopping, Stopping::No)
            || (self.pause.is_some() && !silent)
        {
            return;
        }
        let Some(cutoff) = tokio::time::Instant::now().checked_sub(self.config.pause_notice) else {
            return;
        };
        let sessions = &self.sessions;
        let mut overdue = Vec::new();
        let stalled = self.unanswered.check(
            cutoff,
            |session, seq| {
                sessions
                    .get(&session)
                    .is_none_or(|s| s.acked >= seq || s.working > s.acked)
            },
            |session| overdue.push(session),
        );
        if !stalled {
            if silent {
                tracing::info!("the server answers again");
                self.pause_ends();
            }
            return;
        }
        if !silent {
            tracing::warn!(
                "inputs unanswered for {:?}: telling their players the game is paused",
                self.config.pause_notice
            );
            let id = self.next_pause;
            self.next_pause += 1;
            self.pause = Some(Pause {
                id,
                cause: Cause::Unanswered,
                told: Told::Only(HashSet::new()),
            });
        }
        for session in overdue {
            if let Some(Pause {
                told: Told::Only(these),
                ..
            }) = &mut self.pause
                && these.insert(session)
            {
                self.send_to_player(session, Outbound::Notice(Cause::Unanswered.notice().into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BACK, Cause};
    use crate::hub::fixture::*;

    #[tokio::test]
    async fn a_quick_hand_over_tells_the_players_nothing() {
        let h = start();
        let HandOver {
            mut s,
            mut b,
            promoted,
            ..
        } = hand_over(&h).await;
        drained_then_ready(&h, &mut b, promoted).await;
        assert_eq!(s.texts(), Vec::<String>::new());
        h.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hand_over_that_lasts_is_told_and_so_is_its_end() {
        let h = start_with(Duration::from_millis(500));
        let HandOver {
            mut s,
            mut b,
            promoted,
            ..
        } = hand_over(&h).await;
        let drain_began = tokio::time::Instant::now();
        // A takes its time to drain.
        let Some(Outbound::Notice(told)) = s.out.recv().await else {
            panic!("the session was closed");
        };
        assert!(told.contains("The game is reloading"), "{told}");
        assert!(drain_began.elapsed() >= Duration::from_millis(500));
        drained_then_ready(&h, &mut b, promoted).await;
        assert_eq!(s.texts(), [BACK]);
        h.stop.cancel();
    }

    /// What a player is told across a kill of the server and the next
    /// one's Ready.
    async fn told_across_a_crash(pause_notice: Duration) -> Vec<String> {
        let h = start_with(pause_notice);
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.kill(1);
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(2).await;
        h.from(2, vec![ToPortal::Ready { sessions: 1 }]);
        h.status().await;
        h.stop.cancel();
        s.texts()
    }

    #[tokio::test]
    async fn a_crash_is_told_when_the_pause_notice_is_zero_and_so_is_its_end() {
        let told = told_across_a_crash(Duration::ZERO).await;
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(told[0].contains("stopped unexpectedly"), "{told:?}");
        assert_eq!(told[1], BACK);
    }

    #[tokio::test]
    async fn a_crash_with_a_quick_restart_tells_the_players_nothing() {
        let told = told_across_a_crash(Duration::from_secs(3600)).await;
        assert_eq!(told, Vec::<String>::new());
    }

    /// Sessions 7 and 8 on server 1; 7's input waits past the pause notice.
    async fn unanswered(h: &Harness) -> (FakeSession, FakeSession, FakeServer) {
        let mut s = h.open(7, 16);
        let t = h.open(8, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "ping");
        a.take(1).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(s.texts(), Vec::<String>::new(), "told too soon");
        tokio::time::advance(Duration::from_millis(600)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        let told = s.texts();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("The game is paused"), "{told:?}");
        (s, t, a)
    }

    #[tokio::test(start_paused = true)]
    async fn inputs_left_unanswered_are_told_and_so_is_the_answer() {
        let h = start_with(Duration::from_millis(500));
        let (mut s, mut t, _a) = unanswered(&h).await;
        assert_eq!(t.texts(), Vec::<String>::new(), "8 waits for nothing");
        // Told once, however long it lasts.
        tokio::time::advance(Duration::from_secs(5)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(s.texts(), Vec::<String>::new());
        h.from(1, pong(7, 1));
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(s.texts(), ["pong", BACK]);
        assert_eq!(t.texts(), Vec::<String>::new());
        h.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_input_the_server_works_on_is_no_pause() {
        let h = start_with(Duration::from_millis(500));
        let mut s = h.open(7, 16);
        let mut a = h.attach(1, 1, ev::version::LINK_MAJOR);
        a.take(2).await;
        h.input(7, "connect alice wrongpw");
        h.input(7, "look");
        a.take(2).await;
        // A delayed login: the server took it and hashes off its thread.
        h.from(
            1,
            vec![ToPortal::Working {
                session: SessionId(7),
                seq: 1,
            }],
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        assert_eq!(
            s.texts(),
            Vec::<String>::new(),
            "a login's wait read as a pause"
        );
        // Once the work is answered, a new input left waiting is a pause.
        h.from(
            1,
            vec![ToPortal::Ack {
                session: SessionId(7),
                seq: 2,
            }],
        );
        h.input(7, "look");
        a.take(1).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        tokio::time::advance(Duration::from_millis(600)).await;
        h.tx.send(HubEvent::Tick);
        h.status().await;
        let told = s.texts();
        assert!(
            told.len() == 1 && told[0].contains("The game is paused"),
            "{told:?}"
        );
        h.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_that_is_killed_is_told_as_a_crash() {
        let h = start_with(Duration::from_millis(500));
        let (mut s, mut t, _a) = unanswered(&h).await;
        h.kill(1);
        h.status().await;
        let crash = Cause::Crash.notice();
        assert_eq!(s.texts(), [crash]);
        assert_eq!(t.texts(), [crash], "a crash is told to everyone");
        let mut b = h.attach(2, 2, ev::version::LINK_MAJOR);
        b.take(3).await;
        h.from(2, vec![ToPortal::Ready { sessions: 2 }]);
        h.status().await;
        assert_eq!(s.texts(), [BACK]);
        assert_eq!(t.texts(), [BACK]);
        h.stop.cancel();
    }
}
