//! Login and idle timeouts for one connection, whatever its protocol.
//!
//! Whether a session is logged in is the server's word (the stage in its
//! SessionUpdate), relayed by the hub; the portal keeps it across reloads
//! and crashes, and so does this clock, since the portal never restarts for
//! either. Commands sent before login do not put off the login timeout: a
//! connection that only pings must still log in or go.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    /// `portal.login_timeout_s`; None when 0.
    pub login: Option<Duration>,
    /// `portal.idle_timeout_s`; None when 0.
    pub idle: Option<Duration>,
}

impl Timeouts {
    pub fn from_secs(login: u64, idle: u64) -> Timeouts {
        let on = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Timeouts {
            login: on(login),
            idle: on(idle),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Login,
    Idle,
}

impl Expired {
    /// What the player is told before the connection closes.
    pub fn notice(self) -> &'static str {
        match self {
            Expired::Login => "[ev] You did not log in in time; goodbye.",
            Expired::Idle => "[ev] You were idle too long; goodbye.",
        }
    }

    /// Why the connection closed, for the log and the server.
    pub fn reason(self) -> &'static str {
        match self {
            Expired::Login => "login timeout",
            Expired::Idle => "idle timeout",
        }
    }
}

#[derive(Debug)]
pub struct Clock {
    limits: Timeouts,
    logged_in: bool,
    /// When the session last became not logged in (or opened).
    out_since: Instant,
    /// The last command, or the login if none came after it.
    last_command: Instant,
}

impl Clock {
    pub fn new(limits: Timeouts, now: Instant) -> Clock {
        Clock {
            limits,
            logged_in: false,
            out_since: now,
            last_command: now,
        }
    }

    pub fn command(&mut self, now: Instant) {
        self.last_command = now;
    }

    pub fn logged_in(&mut self, yes: bool, now: Instant) {
        if yes == self.logged_in {
            return;
        }
        self.logged_in = yes;
        if yes {
            self.last_command = now;
        } else {
            self.out_since = now;
        }
    }

    /// The next timeout and what expires then, if any is on.
    pub fn next(&self) -> Option<(Instant, Expired)> {
        if self.logged_in {
            Some((self.last_command + self.limits.idle?, Expired::Idle))
        } else {
            Some((self.out_since + self.limits.login?, Expired::Login))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn off_means_never() {
        let now = Instant::now();
        let mut c = Clock::new(Timeouts::from_secs(0, 0), now);
        assert_eq!(c.next(), None);
        c.logged_in(true, now);
        assert_eq!(c.next(), None);
    }

    #[test]
    fn commands_before_login_do_not_put_off_the_login_timeout() {
        let t0 = Instant::now();
        let mut c = Clock::new(Timeouts::from_secs(10, 0), t0);
        c.command(t0 + 5 * S);
        assert_eq!(c.next(), Some((t0 + 10 * S, Expired::Login)));
        // Logged in: idle is off by default, so nothing expires.
        c.logged_in(true, t0 + 6 * S);
        assert_eq!(c.next(), None);
        // Logged out again: the login clock starts over.
        c.logged_in(false, t0 + 100 * S);
        assert_eq!(c.next(), Some((t0 + 110 * S, Expired::Login)));
    }

    #[test]
    fn idle_counts_from_the_last_command_or_the_login() {
        let t0 = Instant::now();
        let mut c = Clock::new(Timeouts::from_secs(10, 60), t0);
        c.logged_in(true, t0 + 3 * S);
        assert_eq!(c.next(), Some((t0 + 63 * S, Expired::Idle)));
        c.command(t0 + 30 * S);
        assert_eq!(c.next(), Some((t0 + 90 * S, Expired::Idle)));
        // A repeated update changes nothing.
        c.logged_in(true, t0 + 40 * S);
        assert_eq!(c.next(), Some((t0 + 90 * S, Expired::Idle)));
    }
}
