//! What the tool knows of the game under test: where it listens and its
//! grammar, resolved once from the command line.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::Common;
use crate::pattern::{NameStyle, ReplyPattern, Template, account_name};

#[derive(Debug, Clone)]
pub struct Game {
    pub addr: SocketAddr,
    pub prefix: String,
    pub name_style: NameStyle,
    pub password: String,
    pub create: Template,
    pub connect: Template,
    /// A line holding this (after `{name}` is filled in) is a successful login...
    pub logged_in: String,
    /// ...unless it also holds this: the start of the login screen.
    pub login_screen: String,
    pub taken: String,
    pub login_failed: Vec<String>,
    pub wait_banner: bool,
    pub probe: Template,
    pub reply: String,
    pub login_concurrency: usize,
    pub login_timeout: Duration,
    pub login_phase_timeout: Duration,
    pub connect_timeout: Duration,
    /// Accept MCCP2 compression when the game offers it.
    pub mccp2: bool,
    /// Agree to every option the game offers (`--all-options`).
    pub all_options: bool,
    /// Source addresses of the sessions, taken in turn (empty: the kernel
    /// picks). A game that limits per address sees each as its own host.
    pub sources: Vec<IpAddr>,
    /// The next source to use, shared by the clones of one game.
    next_source: Arc<AtomicUsize>,
}

impl Game {
    pub fn from_common(common: &Common) -> anyhow::Result<Game> {
        let addr_text = match &common.addr_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the game's address from {}", path.display()))?
                .trim()
                .to_owned(),
            None => common.addr.clone(),
        };
        let addr = resolve_loopback(&addr_text)?;
        let probe = Template::new(&common.probe);
        if !probe.has_token() {
            bail!("--probe {:?} has no {{token}}", common.probe);
        }
        ReplyPattern::new(&common.reply, "").context("--reply")?;
        if common.login_concurrency == 0 {
            bail!("--login-concurrency must be at least 1");
        }
        check_sources(&common.bind, addr).context("--bind")?;
        Ok(Game {
            addr,
            prefix: common.prefix.clone(),
            name_style: common.name_style,
            password: common.password.clone(),
            create: Template::new(&common.create),
            connect: Template::new(&common.connect),
            logged_in: common.logged_in.clone(),
            login_screen: common.login_screen.clone(),
            taken: common.taken.clone(),
            login_failed: common.login_failed.clone(),
            wait_banner: common.wait_banner,
            probe,
            reply: common.reply.clone(),
            login_concurrency: common.login_concurrency,
            login_timeout: Duration::from_millis(common.login_timeout_ms),
            login_phase_timeout: Duration::from_millis(common.login_phase_timeout_ms),
            connect_timeout: Duration::from_millis(common.connect_timeout_ms),
            mccp2: common.mccp2,
            all_options: common.all_options,
            sources: common.bind.clone(),
            next_source: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The same game, its sessions connecting from `sources` in turn.
    pub fn with_sources(&self, sources: Vec<IpAddr>) -> anyhow::Result<Game> {
        check_sources(&sources, self.addr)?;
        Ok(Game {
            sources,
            next_source: Arc::new(AtomicUsize::new(0)),
            ..self.clone()
        })
    }

    /// The source address for the next connection, if any are set.
    pub fn next_source(&self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        Some(self.sources[i % self.sources.len()])
    }

    pub fn name(&self, index: u32) -> anyhow::Result<String> {
        account_name(&self.prefix, index, self.name_style)
    }

    /// `logged_in` is [`Game::logged_in`] with the name filled in.
    pub fn is_logged_in(&self, line: &str, logged_in: &str) -> bool {
        line.contains(logged_in) && !self.is_login_screen(line)
    }

    pub fn is_login_screen(&self, line: &str) -> bool {
        !self.login_screen.is_empty() && line.contains(&self.login_screen)
    }

    pub fn reply_pattern(&self, name: &str) -> anyhow::Result<ReplyPattern> {
        ReplyPattern::new(&self.reply, name)
    }
}

/// Source addresses must be loopback too, of the game address's family.
fn check_sources(sources: &[IpAddr], game: SocketAddr) -> anyhow::Result<()> {
    for ip in sources {
        if !ip.is_loopback() {
            bail!("{ip} is not a loopback address; ev-loadgen only targets this machine");
        }
        if ip.is_ipv4() != game.is_ipv4() {
            bail!("{ip} cannot reach {game}: not the same address family");
        }
    }
    Ok(())
}

/// `host:port` on this machine only: the tool is for loopback benchmarks and
/// refuses to load anything else.
fn resolve_loopback(text: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .with_context(|| format!("resolving {text:?} (expected HOST:PORT)"))?
        .collect();
    match addrs.iter().find(|a| a.ip().is_loopback()) {
        Some(addr) => Ok(*addr),
        None => bail!("{text} is not a loopback address; ev-loadgen only targets this machine"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses() {
        assert_eq!(
            resolve_loopback("127.0.0.1:4000").unwrap(),
            "127.0.0.1:4000".parse().unwrap()
        );
        assert!(resolve_loopback("[::1]:4000").is_ok());
        assert!(resolve_loopback("10.0.0.1:4000").is_err());
        assert!(resolve_loopback("127.0.0.1").is_err());
    }

    #[test]
    fn sources_are_loopback_of_the_same_family() {
        let game: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(check_sources(&["127.0.3.7".parse().unwrap()], game).is_ok());
        assert!(check_sources(&["10.0.0.1".parse().unwrap()], game).is_err());
        assert!(check_sources(&["::1".parse().unwrap()], game).is_err());
    }
}
