//! Login throttling: failed logins counted per address and per account, and
//! account creations limited per address and in all.
//!
//! A counter per connection alone is useless against an attacker who
//! reconnects every third guess, so failures are also counted per address
//! (an IPv4 address, or an IPv6 /64: one host's share of a network) and per
//! account name. Past `failures_before_delay` on any of the three, answers
//! come late; past `failures_per_address`, an address is refused without a
//! password being checked. An account is only ever slowed, never locked: a
//! lock anyone can trigger would keep its owner out.
//!
//! Every table is bounded ([`MAX_TRACKED`] keys) and forgets: a failure
//! count after `failure_window_s` without a failure, a creation bucket once
//! it has filled up again. The counts live in the server's memory, so a
//! reload starts them afresh.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ev::config::AuthConfig;

/// Keys per table. Past it the stalest entry goes: an attacker with more
/// addresses than this is not slowed by address anyway.
pub const MAX_TRACKED: usize = 16_384;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// The limits of `[auth]` that the throttle enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub failures_before_delay: u32,
    pub failures_per_address: u32,
    pub failure_window: Duration,
    pub creates_per_address_per_hour: u32,
    pub creates_per_minute: u32,
}

impl Limits {
    pub fn from_config(auth: &AuthConfig) -> Limits {
        Limits {
            failures_before_delay: auth.failures_before_delay,
            failures_per_address: auth.failures_per_address,
            failure_window: Duration::from_secs(auth.failure_window_s),
            creates_per_address_per_hour: auth.creates_per_address_per_hour,
            creates_per_minute: auth.creates_per_minute,
        }
    }
}

/// What to do with a login or an account creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Check the password, but answer late.
    Delay,
    /// Refuse it with this message; no password is checked.
    Refuse(&'static str),
}

pub const TOO_MANY_FAILURES: &str =
    "Too many failed logins from your address. Please try again later.";
pub const TOO_MANY_CREATES_HERE: &str =
    "Too many new accounts from your address. Please try again later.";
pub const TOO_MANY_CREATES: &str =
    "Too many new accounts are being made just now. Please try again in a minute.";

/// Where a session connects from, as the throttle counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(IpAddr);

impl Origin {
    /// The address of a peer as the portal writes it (`ip:port`), counted
    /// by IPv4 address or by IPv6 /64. None when it is no IP address.
    pub fn of_peer(peer: &str) -> Option<Origin> {
        let ip = match peer.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr.ip(),
            Err(_) => peer.parse::<IpAddr>().ok()?,
        };
        Some(Origin(match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
            v4 => v4,
        }))
    }
}

pub struct Throttle {
    limits: Limits,
    address_failures: Failures<Origin>,
    account_failures: Failures<String>,
    address_creates: Buckets<Origin>,
    creates: Bucket,
}

impl Throttle {
    pub fn new(limits: Limits, now: Instant) -> Throttle {
        let per_address = Rate::new(limits.creates_per_address_per_hour, HOUR);
        let in_all = Rate::new(limits.creates_per_minute, MINUTE);
        Throttle {
            address_failures: Failures::new(limits.failure_window),
            account_failures: Failures::new(limits.failure_window),
            address_creates: Buckets::new(per_address),
            creates: Bucket::full(in_all, now),
            limits,
        }
    }

    /// A login to `account` from `origin`, by a connection that has failed
    /// `session_failures` times already.
    pub fn login(
        &mut self,
        origin: Option<Origin>,
        account: &str,
        session_failures: u32,
        now: Instant,
    ) -> Verdict {
        let here = origin.map_or(0, |o| self.address_failures.count(&o, now));
        if here >= self.limits.failures_per_address {
            return Verdict::Refuse(TOO_MANY_FAILURES);
        }
        let there = self.account_failures.count(&account.to_lowercase(), now);
        let most = session_failures.max(here).max(there);
        if most >= self.limits.failures_before_delay {
            Verdict::Delay
        } else {
            Verdict::Go
        }
    }

    pub fn failed(&mut self, origin: Option<Origin>, account: &str, now: Instant) {
        if let Some(origin) = origin {
            self.address_failures.add(origin, now);
        }
        self.account_failures.add(account.to_lowercase(), now);
    }

    /// The owner got in: the account's count starts over. The address's
    /// does not, or an attacker could clear it with an account of their own.
    pub fn succeeded(&mut self, account: &str) {
        self.account_failures.forget(&account.to_lowercase());
    }

    /// An account creation from `origin`: Go takes one from each allowance.
    pub fn create(&mut self, origin: Option<Origin>, now: Instant) -> Verdict {
        if let Some(origin) = origin {
            if !self.address_creates.has(&origin, now) {
                return Verdict::Refuse(TOO_MANY_CREATES_HERE);
            }
        }
        if !self.creates.has(now) {
            return Verdict::Refuse(TOO_MANY_CREATES);
        }
        self.creates.take();
        if let Some(origin) = origin {
            self.address_creates.take(origin, now);
        }
        Verdict::Go
    }
}

/// Failure counts that forget a key `window` after its latest failure.
struct Failures<K> {
    window: Duration,
    counts: HashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(window: Duration) -> Failures<K> {
        Failures {
            window,
            counts: HashMap::new(),
        }
    }

    fn live(&self, last: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last) < self.window
    }

    fn count(&self, key: &K, now: Instant) -> u32 {
        match self.counts.get(key) {
            Some(&(n, last)) if self.live(last, now) => n,
            _ => 0,
        }
    }

    fn add(&mut self, key: K, now: Instant) {
        let n = self.count(&key, now);
        if !self.counts.contains_key(&key) && self.counts.len() >= MAX_TRACKED {
            let window = self.window;
            self.counts
                .retain(|_, &mut (_, last)| now.saturating_duration_since(last) < window);
            evict_stalest(&mut self.counts, |&(_, last)| last);
        }
        self.counts.insert(key, (n.saturating_add(1), now));
    }

    fn forget(&mut self, key: &K) {
        self.counts.remove(key);
    }
}

/// How fast an allowance refills, and how much it holds.
#[derive(Debug, Clone, Copy)]
struct Rate {
    size: f64,
    per_second: f64,
}

impl Rate {
    fn new(count: u32, per: Duration) -> Rate {
        Rate {
            size: f64::from(count),
            per_second: f64::from(count) / per.as_secs_f64(),
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate.size,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.size);
        self.at = now;
    }

    fn has(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.rate.size
    }
}

/// A bucket per key; a key whose bucket has filled up again is forgotten.
struct Buckets<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: Rate) -> Buckets<K> {
        Buckets {
            rate,
            buckets: HashMap::new(),
        }
    }

    fn has(&mut self, key: &K, now: Instant) -> bool {
        match self.buckets.get_mut(key) {
            Some(bucket) => bucket.has(now),
            None => self.rate.size >= 1.0,
        }
    }

    fn take(&mut self, key: K, now: Instant) {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED {
            self.buckets.retain(|_, bucket| {
                bucket.refill(now);
                !bucket.is_full()
            });
            evict_stalest(&mut self.buckets, |bucket| bucket.at);
        }
        let rate = self.rate;
        self.buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(rate, now))
            .take();
    }
}

/// Makes room for one more key: drops the entry touched longest ago if the
/// table is still full.
fn evict_stalest<K: Hash + Eq + Clone, V>(map: &mut HashMap<K, V>, at: impl Fn(&V) -> Instant) {
    if map.len() < MAX_TRACKED {
        return;
    }
    if let Some(key) = map
        .iter()
        .min_by_key(|(_, v)| at(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            failures_before_delay: 3,
            failures_per_address: 5,
            failure_window: Duration::from_secs(600),
            creates_per_address_per_hour: 2,
            creates_per_minute: 3,
        }
    }

    fn origin(text: &str) -> Option<Origin> {
        Origin::of_peer(text)
    }

    #[test]
    fn origins_are_addresses_and_ipv6_slash_64s() {
        assert_eq!(origin("127.0.0.1:4000"), origin("127.0.0.1:5000"));
        assert_ne!(origin("127.0.0.1:4000"), origin("127.0.0.2:4000"));
        assert_eq!(origin("[2001:db8::1]:4000"), origin("[2001:db8::ffff:1]:9"));
        assert_ne!(
            origin("[2001:db8::1]:4000"),
            origin("[2001:db8:0:1::1]:4000")
        );
        assert_eq!(origin("[::ffff:10.0.0.1]:1"), origin("10.0.0.1:2"));
        assert_eq!(origin("10.0.0.1"), origin("10.0.0.1:2"));
        assert_eq!(origin("not an address"), None);
    }

    #[test]
    fn reconnecting_does_not_reset_the_address_count() {
        let now = Instant::now();
        let mut t = Throttle::new(limits(), now);
        let here = origin("10.0.0.1:1");
        let mut verdicts = Vec::new();
        for _ in 0..6 {
            // A fresh connection every time: its own count is always 0.
            verdicts.push(t.login(here, "victim", 0, now));
            t.failed(here, "victim", now);
        }
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Go, Go, Go, Delay, Delay, Refuse(TOO_MANY_FAILURES)]
        );
    }

    #[test]
    fn the_owner_gets_in_from_elsewhere_late_but_never_locked_out() {
        let now = Instant::now();
        let mut t = Throttle::new(limits(), now);
        let attacker = origin("10.0.0.1:1");
        for _ in 0..100 {
            t.failed(attacker, "Victim", now);
        }
        let owner = origin("10.9.9.9:1");
        assert_eq!(t.login(owner, "victim", 0, now), Verdict::Delay);
        t.succeeded("victim");
        assert_eq!(t.login(owner, "VICTIM", 0, now), Verdict::Go);
        // The attacker's address stays refused.
        assert_eq!(
            t.login(attacker, "other", 0, now),
            Verdict::Refuse(TOO_MANY_FAILURES)
        );
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let now = Instant::now();
        let mut t = Throttle::new(limits(), now);
        let here = origin("10.0.0.1:1");
        for _ in 0..5 {
            t.failed(here, "victim", now);
        }
        let later = now + Duration::from_secs(599);
        assert_eq!(
            t.login(here, "x", 0, later),
            Verdict::Refuse(TOO_MANY_FAILURES)
        );
        t.failed(here, "victim", later);
        // Counted from the latest failure.
        let much_later = later + Duration::from_secs(600);
        assert_eq!(t.login(here, "victim", 0, much_later), Verdict::Go);
    }

    #[test]
    fn the_session_count_still_delays() {
        let now = Instant::now();
        let mut t = Throttle::new(limits(), now);
        assert_eq!(t.login(origin("10.0.0.1:1"), "a", 3, now), Verdict::Delay);
    }

    #[test]
    fn creations_are_limited_per_address_and_in_all() {
        let now = Instant::now();
        let mut t = Throttle::new(limits(), now);
        let a = origin("10.0.0.1:1");
        let b = origin("10.0.0.2:1");
        assert_eq!(t.create(a, now), Verdict::Go);
        assert_eq!(t.create(a, now), Verdict::Go);
        assert_eq!(t.create(a, now), Verdict::Refuse(TOO_MANY_CREATES_HERE));
        assert_eq!(t.create(b, now), Verdict::Go);
        // Three a minute in all.
        assert_eq!(
            t.create(origin("10.0.0.3:1"), now),
            Verdict::Refuse(TOO_MANY_CREATES)
        );
        // Twenty seconds give the game one more; half an hour gives a one more.
        assert_eq!(
            t.create(origin("10.0.0.3:1"), now + Duration::from_secs(20)),
            Verdict::Go
        );
        let later = now + Duration::from_secs(1800);
        assert_eq!(t.create(a, later), Verdict::Go);
        assert_eq!(t.create(a, later), Verdict::Refuse(TOO_MANY_CREATES_HERE));
    }

    #[test]
    fn zero_allows_no_creation() {
        let now = Instant::now();
        let mut t = Throttle::new(
            Limits {
                creates_per_address_per_hour: 0,
                ..limits()
            },
            now,
        );
        assert_eq!(
            t.create(origin("10.0.0.1:1"), now + HOUR),
            Verdict::Refuse(TOO_MANY_CREATES_HERE)
        );
    }

    #[test]
    fn tables_stay_bounded_under_many_addresses() {
        let now = Instant::now();
        let mut t = Throttle::new(
            Limits {
                creates_per_minute: u32::MAX,
                ..limits()
            },
            now,
        );
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let o = Some(Origin(IpAddr::V4(i.into())));
            t.failed(o, &format!("name{i}"), now);
            t.create(o, now);
        }
        assert!(t.address_failures.counts.len() <= MAX_TRACKED);
        assert!(t.account_failures.counts.len() <= MAX_TRACKED);
        assert!(t.address_creates.buckets.len() <= MAX_TRACKED);
    }
}
