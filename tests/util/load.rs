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

fn run_client(me: usize, mut c: Client, spec: &Spec, shared: &Shared) -> ClientReport {
    let owner = format!("c{me} ({})", c.label());
    let mut report = ClientReport::default();
    let sayer = me < spec.sayers;
    let mut pongs = Stream::new(format!("pong c{me}-"));
    let mut own_says = Stream::new(format!("own `You say` s{me}-"));
    let mut heard: Vec<Stream> = (0..spec.sayers)
        .map(|s| Stream::new(format!("heard say s{s}-")))
        .collect();
    let started = Instant::now();
    let mut next_ping = Instant::now();
    // Spread the says so the sayers do not all speak at once.
    let mut next_say = Instant::now() + spec.say_every * (me as u32 + 1) / (spec.sayers as u32 + 1);

    let handle = |line: &str,
                  report: &mut ClientReport,
                  pongs: &mut Stream,
                  own_says: &mut Stream,
                  heard: &mut Vec<Stream>| {
        let f = &mut report.failures;
        if line.contains("pong c") {
            match numbered(line, "pong c") {
                Some((i, n)) if i == me => pongs.got(n, f, &owner),
                Some((i, n)) => f.push(format!("{owner}: got another client's pong c{i}-{n}")),
                None => f.push(format!("{owner}: unreadable pong line {line:?}")),
            }
        } else if line.contains("You say, \"s") {
            match numbered(line, "You say, \"s") {
                Some((i, n)) if i == me => own_says.got(n, f, &owner),
                _ => f.push(format!("{owner}: unexpected `You say` line {line:?}")),
            }
        } else if line.contains(" says, \"s") {
            match numbered(line, " says, \"s") {
                Some((i, n)) if i < heard.len() => heard[i].got(n, f, &owner),
                _ => f.push(format!("{owner}: unexpected say line {line:?}")),
            }
        } else if line.contains("Welcome to ") {
            f.push(format!(
                "{owner}: was shown the login screen again: {line:?}"
            ));
        }
    };

    // Phase 1: send on the period until told to stop.
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now - started > MAX_RUN {
            report
                .failures
                .push(format!("{owner}: load still running after {MAX_RUN:?}"));
            break;
        }
        if now >= next_ping {
            let text = format!("ping c{me}-{}", report.pings);
            if let Err(e) = c.try_send_line(&text) {
                report.failures.push(format!(
                    "{owner}: sending {text:?} failed: {e}{}",
                    c.context()
                ));
                break;
            }
            report.pings += 1;
            next_ping = (next_ping + spec.ping_every).max(now);
        }
        if sayer && now >= next_say {
            let text = format!("say s{me}-{}", report.says);
            if let Err(e) = c.try_send_line(&text) {
                report.failures.push(format!(
                    "{owner}: sending {text:?} failed: {e}{}",
                    c.context()
                ));
                break;
            }
            report.says += 1;
            next_say = (next_say + spec.say_every).max(now);
        }
        let wake = if sayer {
            next_ping.min(next_say)
        } else {
            next_ping
        };
        for line in c.poll_lines(wake.saturating_duration_since(Instant::now())) {
            handle(&line, &mut report, &mut pongs, &mut own_says, &mut heard);
        }
        shared.pongs[me].store(pongs.next, Ordering::SeqCst);
        if c.seen_closed() {
            report.failures.push(format!(
                "{owner}: connection closed after sending ping {} (pongs received: {}){}",
                report.pings,
                pongs.next,
                c.context()
            ));
            break;
        }
    }
    if sayer {
        shared.says_final[me].store(report.says, Ordering::SeqCst);
        shared.says_done[me].store(true, Ordering::SeqCst);
    }

    // Phase 2: wait for every reply to what was sent, and every say heard.
    let deadline = Instant::now() + DRAIN;
    loop {
        // A sayer sees its own says as `You say`, counted in `own_says`.
        let heard_all = (0..heard.len()).filter(|&s| s != me).all(|s| {
            shared.says_done[s].load(Ordering::SeqCst)
                && heard[s].next >= shared.says_final[s].load(Ordering::SeqCst)
        });
        let done =
            pongs.next >= report.pings && (!sayer || own_says.next >= report.says) && heard_all;
        if done || c.seen_closed() || Instant::now() >= deadline {
            if !done {
                let missing: Vec<String> = (0..heard.len())
                    .filter(|&s| {
                        s != me && heard[s].next < shared.says_final[s].load(Ordering::SeqCst)
                    })
                    .map(|s| {
                        format!(
                            "says of s{s}: {}/{}",
                            heard[s].next,
                            shared.says_final[s].load(Ordering::SeqCst)
                        )
                    })
                    .collect();
                report.failures.push(format!(
                    "{owner}: after sending stopped, {} (pongs {}/{}, own says {}/{}, {}){}",
                    if c.seen_closed() {
                        "the connection closed"
                    } else {
                        "replies were missing at the deadline"
                    },
                    pongs.next,
                    report.pings,
                    own_says.next,
                    if sayer { report.says } else { 0 },
                    missing.join(", "),
                    c.context()
                ));
                return report;
            }
            break;
        }
        for line in c.poll_lines(Duration::from_millis(50)) {
            handle(&line, &mut report, &mut pongs, &mut own_says, &mut heard);
        }
        shared.pongs[me].store(pongs.next, Ordering::SeqCst);
    }

    // Phase 3: still logged in. Lines before the look output still go
    // through the checks, so a late duplicate is caught too.
    c.send_line("look");
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut room = false;
    loop {
        let Some(line) = c.next_line(deadline) else {
            report.failures.push(format!(
                "{owner}: no answer to `look` after the load{}",
                c.context()
            ));
            break;
        };
        room |= line.contains("Limbo");
        if line.contains("Here: ") || line.contains("You are alone here.") {
            if !room {
                report.failures.push(format!(
                    "{owner}: `look` after the load showed no room{}",
                    c.context()
                ));
            }
            break;
        }
        if line.contains("Unknown command") {
            report.failures.push(format!(
                "{owner}: `look` after the load is an unknown command: logged out{}",
                c.context()
            ));
            break;
        }
        handle(&line, &mut report, &mut pongs, &mut own_says, &mut heard);
    }
    report
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
