//! Inputs handed to the active server and not yet acked, oldest first, so
//! the hub can tell in constant time per input whether any has waited past
//! `portal.pause_notice_ms`: a hung server, or one that stopped taking
//! commands while its storage fails, keeps the Link open and says nothing.

use std::collections::VecDeque;

use tokio::time::Instant;

use ev::link::SessionId;

#[derive(Default)]
pub struct Unanswered {
    /// When each input was handed over, in that order.
    sent: VecDeque<(Instant, SessionId, u64)>,
    /// Entries before this index were already reported overdue.
    reported: usize,
}

impl Unanswered {
    pub fn sent(&mut self, now: Instant, session: SessionId, seq: u64) {
        self.sent.push_back((now, session, seq));
    }

    /// Forgets everything: the inputs go to another server, which is timed
    /// from when it gets them.
    pub fn clear(&mut self) {
        self.sent.clear();
        self.reported = 0;
    }

    /// Drops answered inputs from the front, calls `overdue` once for each
    /// input sent at or before `cutoff` and still unanswered that it was not
    /// called for yet, and says whether the oldest unanswered input is
    /// overdue.
    pub fn check(
        &mut self,
        cutoff: Instant,
        answered: impl Fn(SessionId, u64) -> bool,
        mut overdue: impl FnMut(SessionId),
    ) -> bool {
        while let Some(&(_, session, seq)) = self.sent.front() {
            if !answered(session, seq) {
                break;
            }
            self.sent.pop_front();
            self.reported = self.reported.saturating_sub(1);
        }
        while let Some(&(at, session, seq)) = self.sent.get(self.reported) {
            if at > cutoff {
                break;
            }
            if !answered(session, seq) {
                overdue(session);
            }
            self.reported += 1;
        }
        self.sent.front().is_some_and(|&(at, _, _)| at <= cutoff)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S1: SessionId = SessionId(1);
    const S2: SessionId = SessionId(2);

    #[test]
    fn overdue_inputs_are_reported_once_until_answered() {
        let t0 = Instant::now();
        let mut u = Unanswered::default();
        let acked: RefCell<HashMap<SessionId, u64>> = RefCell::default();
        let answered = |s, seq| acked.borrow().get(&s).is_some_and(|&a| a >= seq);
        u.sent(t0, S1, 1);
        u.sent(t0 + 10 * MS, S2, 1);
        u.sent(t0 + 20 * MS, S1, 2);
        let mut told = Vec::new();
        assert!(u.check(t0 + 5 * MS, answered, |s| told.push(s)));
        assert_eq!(told, [S1]);
        assert!(u.check(t0 + 10 * MS, answered, |s| told.push(s)));
        assert_eq!(told, [S1, S2]);
        // Nothing new is overdue: nobody is told twice.
        assert!(u.check(t0 + 15 * MS, answered, |s| told.push(s)));
        assert_eq!(told, [S1, S2]);
        // Session 1's first input and session 2's are answered; 1's second
        // is not overdue yet.
        acked.borrow_mut().insert(S1, 1);
        acked.borrow_mut().insert(S2, 1);
        assert!(!u.check(t0 + 15 * MS, answered, |s| told.push(s)));
        assert!(u.check(t0 + 20 * MS, answered, |s| told.push(s)));
        assert_eq!(told, [S1, S2, S1]);
        acked.borrow_mut().insert(S1, 2);
        assert!(!u.check(t0 + 100 * MS, answered, |s| told.push(s)));
        assert!(u.sent.is_empty());
    }

    #[test]
    fn cleared_means_nothing_is_waiting() {
        let t0 = Instant::now();
        let mut u = Unanswered::default();
        u.sent(t0, S1, 1);
        u.clear();
        assert!(!u.check(t0 + MS, |_, _| false, |_| panic!("told")));
    }
}
