//! Failpoints: the test build's way to crash the server in a chosen window
//! of the exactly-once protocol, on purpose rather than by luck.
//!
//! `ev-test-server` parses `EV_FAILPOINT=NAME[:N]` into
//! [`ServerOptions::failpoint`](crate::ServerOptions); the production binary
//! never reads the variable, so there is nothing to trip by accident. The
//! process aborts (no cleanup, no flush, like kill -9) at the N-th (default
//! 1st) batch that reaches the point, counting only batches with at least
//! one Input (and for `mid_batch`, at least two, as it needs a middle).
//!
//! Without the `test-build` feature a [`Failpoint`] cannot exist (an empty
//! enum): the engine's calls compile to nothing and the production binary
//! holds no failpoint at all.

use std::fmt;
#[cfg(any(test, feature = "test-build"))]
use std::str::FromStr;

/// Where the server dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The transaction committed; nothing of it was sent.
    AfterCommit,
    /// Outputs, updates and disconnects were handed to the Link; acks not.
    AfterOutput,
    /// Some of a group commit's inputs were applied, not all; no commit.
    MidBatch,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::AfterCommit => "after_commit",
            Point::AfterOutput => "after_output",
            Point::MidBatch => "mid_batch",
        }
    }
}

/// A failpoint armed for the `at`-th hit.
#[cfg(any(test, feature = "test-build"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failpoint {
    pub point: Point,
    pub at: u64,
    hits: u64,
}

/// No failpoint: production builds cannot arm one.
#[cfg(not(any(test, feature = "test-build")))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failpoint {}

#[cfg(not(any(test, feature = "test-build")))]
impl Failpoint {
    pub fn is_at(&self, _: Point) -> bool {
        match *self {}
    }

    pub fn hit(&mut self, _: Point) {
        match *self {}
    }
}

#[cfg(not(any(test, feature = "test-build")))]
impl fmt::Display for Failpoint {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

#[cfg(any(test, feature = "test-build"))]
impl Failpoint {
    pub fn new(point: Point, at: u64) -> Failpoint {
        Failpoint { point, at, hits: 0 }
    }

    /// Whether it is armed at `point`.
    pub fn is_at(&self, point: Point) -> bool {
        self.point == point
    }

    /// Counts a hit of `point` and says whether this one is fatal.
    pub fn fires(&mut self, point: Point) -> bool {
        if point != self.point {
            return false;
        }
        self.hits += 1;
        self.hits == self.at
    }

    /// Counts a hit and, if it is the chosen one, logs and aborts.
    pub fn hit(&mut self, point: Point) {
        if self.fires(point) {
            tracing::error!("failpoint {} hit", point.name());
            std::process::abort();
        }
    }
}

#[cfg(any(test, feature = "test-build"))]
impl fmt::Display for Failpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.point.name(), self.at)
    }
}

#[cfg(any(test, feature = "test-build"))]
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown failpoint {0:?} (after_commit, after_output or mid_batch)")]
    Unknown(String),
    #[error("a failpoint count is a whole number from 1, not {0:?}")]
    Count(String),
}

#[cfg(any(test, feature = "test-build"))]
impl FromStr for Failpoint {
    type Err = ParseError;

    /// `NAME` or `NAME:N`.
    fn from_str(text: &str) -> Result<Failpoint, ParseError> {
        let text = text.trim();
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let point = match name.trim() {
            "after_commit" => Point::AfterCommit,
            // The window between a reply leaving and its ack: one point, two
            // names (the issue calls it both).
            "after_output" | "before_ack" => Point::AfterOutput,
            "mid_batch" => Point::MidBatch,
            other => return Err(ParseError::Unknown(other.to_owned())),
        };
        let at = match count {
            None => 1,
            Some(count) => match count.trim().parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(ParseError::Count(count.to_owned())),
            },
        };
        Ok(Failpoint::new(point, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_counts() {
        assert_eq!(
            "after_commit".parse(),
            Ok(Failpoint::new(Point::AfterCommit, 1))
        );
        assert_eq!(
            " after_output:3 ".parse(),
            Ok(Failpoint::new(Point::AfterOutput, 3))
        );
        assert_eq!(
            "mid_batch:1".parse(),
            Ok(Failpoint::new(Point::MidBatch, 1))
        );
        assert_eq!(
            "before_ack".parse(),
            Ok(Failpoint::new(Point::AfterOutput, 1))
        );
        assert_eq!(
            "after_lunch".parse::<Failpoint>(),
            Err(ParseError::Unknown("after_lunch".into()))
        );
        assert_eq!("".parse::<Failpoint>(), Err(ParseError::Unknown("".into())));
        for bad in [
            "after_commit:0",
            "after_commit:",
            "after_commit:x",
            "after_commit:-1",
        ] {
            assert!(
                matches!(bad.parse::<Failpoint>(), Err(ParseError::Count(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Failpoint::new(Point::MidBatch, 2).to_string(),
            "mid_batch:2"
        );
    }

    #[test]
    fn fires_only_at_the_chosen_hit_of_its_own_point() {
        let mut fp = Failpoint::new(Point::AfterOutput, 3);
        assert!(!fp.fires(Point::AfterCommit));
        assert!(!fp.fires(Point::AfterOutput));
        assert!(!fp.fires(Point::MidBatch));
        assert!(!fp.fires(Point::AfterOutput));
        assert!(fp.fires(Point::AfterOutput));
        assert!(!fp.fires(Point::AfterOutput));
    }
}
