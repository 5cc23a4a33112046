//! A token bucket: `rate` tokens a second, at most `burst` saved up.
//!
//! Tokens are counted in billionths, so refills and waits are exact
//! integers: a task that sleeps for [`Bucket::wait`] always finds its token
//! when it wakes, never a rounding error short of it.

use std::time::Duration;

use tokio::time::Instant;

const UNIT: u128 = 1_000_000_000;

#[derive(Debug, Clone)]
pub struct Bucket {
    /// Tokens a second.
    rate: u128,
    /// Most tokens held, in billionths.
    cap: u128,
    /// Tokens held at `at`, in billionths.
    held: u128,
    at: Instant,
}

impl Bucket {
    /// A full bucket. `rate` and `burst` are at least 1 (the config says so).
    pub fn new(rate: u32, burst: u32, now: Instant) -> Bucket {
        let cap = u128::from(burst.max(1)) * UNIT;
        Bucket {
            rate: u128::from(rate.max(1)),
            cap,
            held: cap,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let nanos = (now - self.at).as_nanos();
            self.held = (self.held + nanos * self.rate).min(self.cap);
            self.at = now;
        }
    }

    /// How long until a token is there: zero if one is there now.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let missing = UNIT.saturating_sub(self.held);
        let nanos = missing.div_ceil(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes a token; call only when [`Bucket::wait`] said zero.
    pub fn take(&mut self) {
        self.held = self.held.saturating_sub(UNIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(b: &mut Bucket, now: Instant) -> u32 {
        let mut n = 0;
        while b.wait(now).is_zero() {
            b.take();
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(4, 10, start);
        assert_eq!(drain(&mut b, start), 10);
        assert_eq!(b.wait(start), Duration::from_millis(250));
        tokio::time::advance(Duration::from_millis(249)).await;
        assert!(!b.wait(Instant::now()).is_zero());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(drain(&mut b, Instant::now()), 1);
        // A long rest refills no more than the burst.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(drain(&mut b, Instant::now()), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_what_it_says_always_gives_a_token() {
        let mut b = Bucket::new(3, 1, Instant::now());
        for _ in 0..100 {
            let wait = b.wait(Instant::now());
            tokio::time::advance(wait).await;
            assert!(b.wait(Instant::now()).is_zero());
            b.take();
        }
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let now = Instant::now();
        let mut b = Bucket::new(1, 1, now);
        b.take();
        let earlier = now.checked_sub(Duration::from_secs(5)).unwrap_or(now);
        assert_eq!(b.wait(earlier), Duration::from_secs(1));
    }
}
