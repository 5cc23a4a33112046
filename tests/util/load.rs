//! Load across reloads: logged-in clients pinging (and a few saying) numbered
//! texts on a fixed period, and one client creating accounts, each checking
//! that every reply arrives exactly once and in order.
//!
//! The main thread starts a [`Load`], waits for progress with
//! [`Load::wait_progress`] (a condition, not a sleep), runs reloads, and ends
//! with [`Load::finish`], whose [`Report`] lists every failure by client and number.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Client, Game, PASSWORD, REPLY_TIMEOUT, letters};

/// How long a load may run at most, whatever the test does.
const MAX_RUN: Duration = Duration::from_secs(240);
/// How long a client waits for its outstanding replies once sending stops.
const DRAIN: Duration = Duration::from_secs(30);
/// Failures recorded per client before the rest are only counted.
const MAX_FAILURES: usize = 10;

#[derive(Debug, Clone)]
pub struct Spec {
    /// Logged-in clients, each pinging.
    pub clients: usize,
    /// The first `sayers` clients also `say` numbered texts.
    pub sayers: usize,
    pub ping_every: Duration,
    pub say_every: Duration,
    /// One more client that keeps creating accounts (create, quit, again).
    pub creator: bool,
    /// Prefix of the clients' names (letters only).
    pub name: &'static str,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            clients: 50,
            sayers: 3,
            ping_every: Duration::from_millis(20),
            say_every: Duration::from_millis(100),
            creator: true,
            name: "Load",
        }
    }
}

struct Shared {
    stop: AtomicBool,
    /// Per client: pongs received in order so far.
    pongs: Vec<AtomicU64>,
    /// Per sayer: how many says it sent, once it has stopped sending.
    says_final: Vec<AtomicU64>,
    says_done: Vec<AtomicBool>,
    /// Accounts the creator has made so far.
    created: AtomicU64,
    /// Failures of client threads that have ended, for early reports.
    ended: std::sync::Mutex<Vec<String>>,
}

pub struct Load {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<ClientReport>>,
    creator: Option<JoinHandle<CreatorReport>>,
    names: Vec<String>,
}

#[derive(Debug, Default)]
struct ClientReport {
    failures: Vec<String>,
    pings: u64,
    says: u64,
}

#[derive(Debug, Default)]
struct CreatorReport {
    failures: Vec<String>,
    created: Vec<String>,
}

/// What a finished load saw.
#[derive(Debug)]
pub struct Report {
    pub failures: Vec<String>,
    /// Accounts the creator made (each confirmed by `Welcome, NAME!`).
    pub created: Vec<String>,
    /// The logged-in clients' names.
    pub names: Vec<String>,
    pub pings: u64,
    pub says: u64,
}

impl Report {
    /// Panics listing every failure.
    pub fn assert_clean(&self) {
        eprintln!(
            "load: {} clients, {} pings, {} says, {} accounts created, {} failures",
            self.names.len(),
            self.pings,
            self.says,
            self.created.len(),
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{} failure(s) under load ({} pings, {} says sent):\n  {}",
            self.failures.len(),
            self.pings,
            self.says,
            self.failures.join("\n  ")
        );
    }

    /// Every account the creator made can log in with `connect`.
    pub fn assert_accounts_connect(&self, game: &Game) {
        let mut failures = Vec::new();
        for name in &self.created {
            match game.connect_account(name) {
                Ok(mut c) => c.send_line("quit"),
                Err(e) => failures.push(e),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} accounts created under load cannot `connect` afterwards:\n  {}",
            failures.len(),
            self.created.len(),
            failures.join("\n  ")
        );
    }
}

impl Load {
    /// Logs in `spec.clients` clients and starts them all.
    pub fn start(game: &Game, spec: Spec) -> Load {
        let names: Vec<String> = (0..spec.clients)
            .map(|i| format!("{}{}", spec.name, letters(i)))
            .collect();
        let logged_in: Vec<Client> = names.iter().map(|n| game.login(n)).collect();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            pongs: (0..spec.clients).map(|_| AtomicU64::new(0)).collect(),
            says_final: (0..spec.sayers).map(|_| AtomicU64::new(0)).collect(),
            says_done: (0..spec.sayers).map(|_| AtomicBool::new(false)).collect(),
            created: AtomicU64::new(0),
            ended: std::sync::Mutex::new(Vec::new()),
        });
        let clients = logged_in
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let (shared, spec) = (shared.clone(), spec.clone());
                std::thread::Builder::new()
                    .name(format!("load-c{i}"))
                    .spawn(move || {
                        let report = run_client(i, client, &spec, &shared);
                        shared
                            .ended
                            .lock()
                            .unwrap()
                            .extend(report.failures.iter().cloned());
                        report
                    })
                    .expect("spawning a load thread")
            })
            .collect();
        let creator = spec.creator.then(|| {
            let shared = shared.clone();
            let addr = game.telnet_addr();
            std::thread::Builder::new()
                .name("load-creator".into())
                .spawn(move || run_creator(addr, &shared))
                .expect("spawning the creator thread")
        });
        Load {
            shared,
            clients,
            creator,
            names,
        }
    }

    /// The logged-in clients' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Waits until every client has received `n` more pongs than now (so the
    /// load has gone on for about `n` ping periods), and the creator, if any,
    /// has made at least one more account.
    pub fn wait_progress(&self, n: u64) {
        let base: Vec<u64> = self
            .shared
            .pongs
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .collect();
        let created = self.shared.created.load(Ordering::SeqCst);
        let timeout = Duration::from_secs(60);
        let deadline = Instant::now() + timeout;
        loop {
            let behind: Vec<String> = base
                .iter()
                .enumerate()
                .filter(|&(i, &b)| self.shared.pongs[i].load(Ordering::SeqCst) < b + n)
                .map(|(i, b)| {
                    format!(
                        "c{i} {}/{}",
                        self.shared.pongs[i].load(Ordering::SeqCst),
                        b + n
                    )
                })
                .collect();
            let creator_behind =
                self.creator.is_some() && self.shared.created.load(Ordering::SeqCst) <= created;
            if behind.is_empty() && !creator_behind {
                return;
            }
            let finished = self.clients.iter().filter(|h| h.is_finished()).count();
            if Instant::now() >= deadline || finished > 0 {
                self.shared.stop.store(true, Ordering::SeqCst);
                let ended = self.shared.ended.lock().unwrap().join("\n  ");
                panic!(
                    "load made no progress within {timeout:?} ({finished} client threads ended early); \
                     clients behind (pongs/wanted): {}; creator made {} accounts (wanted more than {created}); \
                     failures so far:\n  {ended}",
                    behind.join(", "),
                    self.shared.created.load(Ordering::SeqCst)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops sending, waits for every outstanding reply, and reports.
    pub fn finish(mut self) -> Report {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut report = Report {
            failures: Vec::new(),
            created: Vec::new(),
            names: std::mem::take(&mut self.names),
            pings: 0,
            says: 0,
        };
        for (i, handle) in std::mem::take(&mut self.clients).into_iter().enumerate() {
            match handle.join() {
                Ok(r) => {
                    report.failures.extend(r.failures);
                    report.pings += r.pings;
                    report.says += r.says;
                }
                Err(_) => report.failures.push(format!("c{i}: its thread panicked")),
            }
        }
        if let Some(handle) = self.creator.take() {
            match handle.join() {
                Ok(r) => {
                    report.failures.extend(r.failures);
                    report.created = r.created;
                }
                Err(_) => report.failures.push("creator: its thread panicked".into()),
            }
        }
        report
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Parses `<tag><i>-<n>` at the first occurrence of `tag` in `line`.
fn numbered(line: &str, tag: &str) -> Option<(usize, u64)> {
    let rest = &line[line.find(tag)? + tag.len()..];
    let (i, rest) = rest.split_once('-')?;
    let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// In-order, exactly-once tracking of one numbered stream.
struct Stream {
    what: String,
    next: u64,
}

impl Stream {
    fn new(what: String) -> Stream {
        Stream { what, next: 0 }
    }

    fn got(&mut self, n: u64, failures: &mut Vec<String>, owner: &str) {
        if n == self.next {
            self.next += 1;
            return;
        }
        let msg = if n < self.next {
            format!(
                "{owner}: {} {n} arrived again or out of order (expected {} next)",
                self.what, self.next
            )
        } else {
            format!(
                "{owner}: {} {n} arrived but {}..={} never did (lost)",
                self.what,
                self.next,
                n - 1
            )
        };
        if failures.len() < MAX_FAILURES {
            failures.push(msg);
        }
        self.next = self.next.max(n + 1);
    }
}

/// One client's run: it pings (and says, if a sayer) until told to stop,
/// waits for every answer, then checks it is still logged in. Every line it
/// sees goes through [`ClientRun::handle`], which holds the exactly-once,
/// in-order checks.
struct ClientRun<'a> {
    me: usize,
    owner: String,
    c: Client,
    spec: &'a Spec,
    shared: &'a Shared,
    report: ClientReport,
    sayer: bool,
    pongs: Stream,
    own_says: Stream,
    heard: Vec<Stream>,
}

fn run_client(me: usize, c: Client, spec: &Spec, shared: &Shared) -> ClientReport {
    let mut run = ClientRun {
        me,
        owner: format!("c{me} ({})", c.label()),
        c,
        spec,
        shared,
        report: ClientReport::default(),
        sayer: me < spec.sayers,
        pongs: Stream::new(format!("pong c{me}-")),
        own_says: Stream::new(format!("own `You say` s{me}-")),
        heard: (0..spec.sayers)
            .map(|s| Stream::new(format!("heard say s{s}-")))
            .collect(),
    };
    run.send();
    if run.drain() {
        run.still_logged_in();
    }
    run.report
}

impl ClientRun<'_> {
    fn handle(&mut self, line: &str) {
        let (me, owner) = (self.me, &self.owner);
        let f = &mut self.report.failures;
        if line.contains("pong c") {
            match numbered(line, "pong c") {
                Some((i, n)) if i == me => self.pongs.got(n, f, owner),
                Some((i, n)) => f.push(format!("{owner}: got another client's pong c{i}-{n}")),
                None => f.push(format!("{owner}: unreadable pong line {line:?}")),
            }
        } else if line.contains("You say, \"s") {
            match numbered(line, "You say, \"s") {
                Some((i, n)) if i == me => self.own_says.got(n, f, owner),
                _ => f.push(format!("{owner}: unexpected `You say` line {line:?}")),
            }
        } else if line.contains(" says, \"s") {
            match numbered(line, " says, \"s") {
                Some((i, n)) if i < self.heard.len() => self.heard[i].got(n, f, owner),
                _ => f.push(format!("{owner}: unexpected say line {line:?}")),
            }
        } else if line.contains("Welcome to ") {
            f.push(format!(
                "{owner}: was shown the login screen again: {line:?}"
            ));
        }
    }

    /// Sends `text`; false (and a failure) if the connection took none of it.
    fn try_send(&mut self, text: &str) -> bool {
        match self.c.try_send_line(text) {
            Ok(()) => true,
            Err(e) => {
                self.report.failures.push(format!(
                    "{}: sending {text:?} failed: {e}{}",
                    self.owner,
                    self.c.context()
                ));
                false
            }
        }
    }

    /// Phase 1: send on the period until told to stop.
    fn send(&mut self) {
        let (me, spec) = (self.me, self.spec);
        let started = Instant::now();
        let mut next_ping = Instant::now();
        // Spread the says so the sayers do not all speak at once.
        let mut next_say =
            Instant::now() + spec.say_every * (me as u32 + 1) / (spec.sayers as u32 + 1);
        while !self.shared.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now - started > MAX_RUN {
                let owner = &self.owner;
                self.report
                    .failures
                    .push(format!("{owner}: load still running after {MAX_RUN:?}"));
                break;
            }
            if now >= next_ping {
                if !self.try_send(&format!("ping c{me}-{}", self.report.pings)) {
                    break;
                }
                self.report.pings += 1;
                next_ping = (next_ping + spec.ping_every).max(now);
            }
            if self.sayer && now >= next_say {
                if !self.try_send(&format!("say s{me}-{}", self.report.says)) {
                    break;
                }
                self.report.says += 1;
                next_say = (next_say + spec.say_every).max(now);
            }
            let wake = if self.sayer {
                next_ping.min(next_say)
            } else {
                next_ping
            };
            for line in self
                .c
                .poll_lines(wake.saturating_duration_since(Instant::now()))
            {
                self.handle(&line);
            }
            self.shared.pongs[me].store(self.pongs.next, Ordering::SeqCst);
            if self.c.seen_closed() {
                self.report.failures.push(format!(
                    "{}: connection closed after sending ping {} (pongs received: {}){}",
                    self.owner,
                    self.report.pings,
                    self.pongs.next,
                    self.c.context()
                ));
                break;
            }
        }
        if self.sayer {
            self.shared.says_final[me].store(self.report.says, Ordering::SeqCst);
            self.shared.says_done[me].store(true, Ordering::SeqCst);
        }
    }

    /// Says of sayer `s` this client has not heard yet, as "heard/said".
    fn missing_says(&self, s: usize) -> Option<String> {
        let said = self.shared.says_final[s].load(Ordering::SeqCst);
        (s != self.me && self.heard[s].next < said)
            .then(|| format!("says of s{s}: {}/{said}", self.heard[s].next))
    }

    /// Phase 2: wait for every reply to what was sent, and every say heard.
    /// False (and a failure) if something was missing at the deadline.
    fn drain(&mut self) -> bool {
        let me = self.me;
        let deadline = Instant::now() + DRAIN;
        loop {
            // A sayer sees its own says as `You say`, counted in `own_says`.
            let heard_all = (0..self.heard.len()).filter(|&s| s != me).all(|s| {
                self.shared.says_done[s].load(Ordering::SeqCst) && self.missing_says(s).is_none()
            });
            let done = self.pongs.next >= self.report.pings
                && (!self.sayer || self.own_says.next >= self.report.says)
                && heard_all;
            if done {
                return true;
            }
            if self.c.seen_closed() || Instant::now() >= deadline {
                let missing: Vec<String> = (0..self.heard.len())
                    .filter_map(|s| self.missing_says(s))
                    .collect();
                self.report.failures.push(format!(
                    "{}: after sending stopped, {} (pongs {}/{}, own says {}/{}, {}){}",
                    self.owner,
                    if self.c.seen_closed() {
                        "the connection closed"
                    } else {
                        "replies were missing at the deadline"
                    },
                    self.pongs.next,
                    self.report.pings,
                    self.own_says.next,
                    if self.sayer { self.report.says } else { 0 },
                    missing.join(", "),
                    self.c.context()
                ));
                return false;
            }
            for line in self.c.poll_lines(Duration::from_millis(50)) {
                self.handle(&line);
            }
            self.shared.pongs[me].store(self.pongs.next, Ordering::SeqCst);
        }
    }

    /// Phase 3: still logged in. Lines before the look output still go
    /// through the checks, so a late duplicate is caught too.
    fn still_logged_in(&mut self) {
        self.c.send_line("look");
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut room = false;
        loop {
            let Some(line) = self.c.next_line(deadline) else {
                let why = format!("no answer to `look` after the load{}", self.c.context());
                self.fail(why);
                return;
            };
            room |= line.contains("Limbo");
            if line.contains("Here: ") || line.contains("You are alone here.") {
                if !room {
                    let why = format!("`look` after the load showed no room{}", self.c.context());
                    self.fail(why);
                }
                return;
            }
            if line.contains("Unknown command") {
                let why = format!(
                    "`look` after the load is an unknown command: logged out{}",
                    self.c.context()
                );
                self.fail(why);
                return;
            }
            self.handle(&line);
        }
    }

    fn fail(&mut self, why: String) {
        self.report.failures.push(format!("{}: {why}", self.owner));
    }
}

fn run_creator(addr: std::net::SocketAddr, shared: &Shared) -> CreatorReport {
    let mut report = CreatorReport::default();
    let started = Instant::now();
    let mut k = 0;
    while !shared.stop.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN && k < 500 {
        let name = format!("New{}", letters(k));
        k += 1;
        let mut c = match Client::try_connect(addr, &name) {
            Ok(c) => c,
            Err(e) => {
                report
                    .failures
                    .push(format!("creator: connecting for {name}: {e}"));
                break;
            }
        };
        let step = (|| {
            c.expect_line(
                "the welcome screen",
                |l| l.contains("Welcome to "),
                REPLY_TIMEOUT,
            )?;
            c.send_line(&format!("create {name} {PASSWORD}"));
            let want = format!("Welcome, {name}!");
            c.expect_line(&format!("{want:?}"), |l| l.contains(&want), REPLY_TIMEOUT)?;
            report.created.push(name.clone());
            shared.created.fetch_add(1, Ordering::SeqCst);
            c.send_line("quit");
            c.expect_line("`Goodbye.`", |l| l.contains("Goodbye."), REPLY_TIMEOUT)?;
            if !c.is_closed(REPLY_TIMEOUT) {
                return Err(format!(
                    "{name}: the portal did not close the connection after `quit`"
                ));
            }
            Ok::<(), String>(())
        })();
        if let Err(e) = step {
            report.failures.push(format!("creator: {e}"));
            if report.failures.len() >= MAX_FAILURES {
                break;
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_reads_index_and_number() {
        assert_eq!(numbered("pong c12-345", "pong c"), Some((12, 345)));
        assert_eq!(numbered("> pong c1-2", "pong c"), Some((1, 2)));
        assert_eq!(numbered("Loadb says, \"s1-7\"", " says, \"s"), Some((1, 7)));
        assert_eq!(numbered("pong x", "pong c"), None);
    }

    #[test]
    fn stream_reports_lost_and_doubled_numbers() {
        let mut s = Stream::new("pong c0-".into());
        let mut f = Vec::new();
        for n in [0, 1, 2] {
            s.got(n, &mut f, "c0");
        }
        assert!(f.is_empty());
        s.got(2, &mut f, "c0");
        assert!(f[0].contains("2 arrived again"), "{f:?}");
        s.got(5, &mut f, "c0");
        assert!(f[1].contains("3..=4 never did"), "{f:?}");
        assert_eq!(s.next, 6);
    }
}
