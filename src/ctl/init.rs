//! `evctl init DIR [--telnet ADDR] [--web ADDR] [--tls[=ADDR]] [--admin NAME]`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::start::beside_me;
use super::{EXIT_OK, Failure, Outcome, password, say};
use crate::config::Config;
use crate::gamedir::GameDir;

/// The first line of a new ev.toml.
const HEADER: &str =
    "# ev game settings: every key with its default. Unknown keys are refused.\n\n";

/// The TLS port `--tls` picks beside a telnet port: Evennia's.
pub const TLS_PORT: u16 = 4003;

/// The listeners' addresses `init` and `new` take, as flags: one
/// definition, so both commands take and document them alike.
#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listeners {
    /// The telnet listener address, HOST:PORT (default 127.0.0.1:4000; a
    /// name like localhost is resolved now and written to ev.toml as its IP
    /// address).
    #[arg(long, value_name = "ADDR", value_parser = super::listen_addr)]
    pub telnet: Option<SocketAddr>,
    /// The webclient listener address, HOST:PORT (default 127.0.0.1:4001).
    #[arg(long, value_name = "ADDR", value_parser = super::listen_addr)]
    pub web: Option<SocketAddr>,
}

impl Listeners {
    /// Puts the addresses given into `config`; the others keep its values.
    pub fn apply(&self, config: &mut Config) {
        if let Some(addr) = self.telnet {
            config.portal.telnet = addr;
        }
        if let Some(addr) = self.web {
            config.portal.web = Some(addr);
        }
    }
}

/// `tls`: `--tls` (Some(None): the telnet address's host on [`TLS_PORT`],
/// or port 0 when telnet's is 0) or `--tls=ADDR`.
pub fn run(
    dir: &Path,
    listeners: Listeners,
    tls: Option<Option<SocketAddr>>,
    admin: Option<&str>,
) -> Outcome {
    let game = GameDir::new(dir);
    check(&game)?;
    let mut config = Config::default();
    listeners.apply(&mut config);
    let tls = match tls {
        Some(addr) => {
            let telnet = config.portal.telnet;
            let addr = addr.unwrap_or_else(|| {
                let port = if telnet.port() == 0 { 0 } else { TLS_PORT };
                SocketAddr::new(telnet.ip(), port)
            });
            config.portal.tls = Some(addr);
            let files = SelfSigned {
                cert: game.path(&config.portal.tls_cert),
                key: game.path(&config.portal.tls_key),
            };
            let made = files
                .make(&config.game.name, addr)
                .map_err(|e| refused(&game, &e))?;
            Some((files, made))
        }
        None => None,
    };
    // Everything that can be refused is asked before anything is written.
    let admin = match admin {
        Some(name) => {
            let server = beside_me("ev-server").map_err(|e| refused(&game, &e))?;
            Some(Admin::asked(name, server)?)
        }
        None => None,
    };
    create(&game, &config)?;
    say(format!(
        "created the game directory {}",
        game.root().display()
    ))?;
    if let Some((files, (cert, key))) = &tls {
        files.write(cert, key).map_err(|e| refused(&game, &e))?;
        say(format!(
            "made a self-signed TLS certificate: {} (key {}, mode 0600); put your own in their place at any time",
            files.cert.display(),
            files.key.display()
        ))?;
    }
    if let Some(admin) = admin {
        create_admin(&game, admin)?;
    }
    say(next_steps(
        &config,
        &[format!("{} -g {} start", myself(), game.root().display())],
    ))?;
    Ok(EXIT_OK)
}

/// The account `create` makes, with the server binary whose
/// `create-admin` makes it.
pub(super) struct Admin {
    pub name: String,
    pub password: String,
    pub server: std::path::PathBuf,
}

impl Admin {
    /// The password from `EV_ADMIN_PASSWORD` or the terminal.
    pub fn asked(name: &str, server: std::path::PathBuf) -> Result<Admin, Failure> {
        Ok(Admin {
            name: name.to_owned(),
            password: password::admin_password(name)?,
            server,
        })
    }
}

/// `cannot init DIR: WHY`.
fn refused(game: &GameDir, why: &dyn std::fmt::Display) -> Failure {
    Failure::new(format!("cannot init {}: {why}", game.root().display()))
}

/// Whether `game` may be made: not a game already, socket paths short
/// enough. Writes nothing.
pub(super) fn check(game: &GameDir) -> Result<(), Failure> {
    if game.config_path().exists() {
        return Err(refused(game, &"already a game directory (ev.toml exists)"));
    }
    game.check_socket_paths().map_err(|e| refused(game, &e))
}

/// Writes `config` as the game's ev.toml and makes its directories.
pub(super) fn create(game: &GameDir, config: &Config) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| refused(game, e);
    std::fs::create_dir_all(game.root()).map_err(|e| fail(&e))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(game.config_path())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => fail(&"already a game directory (ev.toml exists)"),
            _ => fail(&format!("writing {}: {e}", game.config_path().display())),
        })?;
    file.write_all(format!("{HEADER}{}", config.to_toml()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(&format!("writing {}: {e}", game.config_path().display())))?;
    game.create_dirs().map_err(|e| fail(&e))
}

/// The admin account, made by the server binary's `create-admin`.
pub(super) fn create_admin(game: &GameDir, admin: Admin) -> Result<(), Failure> {
    let Admin {
        name,
        password,
        server,
    } = admin;
    let fail = |e: &dyn std::fmt::Display| refused(game, e);
    let status = std::process::Command::new(&server)
        .arg("--game-dir")
        .arg(game.root())
        .args(["create-admin", &name])
        .env("EV_ADMIN_PASSWORD", password)
        .env("EV_GAME_DIR", game.root())
        // The server's own line says what it created; its log lines
        // (migrations) are noise on an operator's terminal.
        .env("EV_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| fail(&format!("running {}: {e}", server.display())))?;
    if !status.success() {
        return Err(Failure::new(format!(
            "creating the admin account {name} failed: {} {status}",
            server.display()
        )));
    }
    Ok(())
}

/// What to type next: `start` (the commands given) and how to connect.
pub(super) fn next_steps(config: &Config, start: &[String]) -> String {
    let connect = match config.portal.telnet.port() {
        0 => "then connect to the telnet address `evctl start` prints".to_owned(),
        port => format!("telnet {} {port}", config.portal.telnet.ip()),
    };
    let connect = match config.portal.tls {
        Some(tls) if tls.port() != 0 => {
            format!("{connect}\n  openssl s_client -quiet -connect {tls}   (telnet over TLS)")
        }
        _ => connect,
    };
    let mut text = "next:".to_owned();
    for line in start.iter().chain([&connect]) {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

/// Where `evctl init --tls` puts its certificate and key.
struct SelfSigned {
    cert: PathBuf,
    key: PathBuf,
}

impl SelfSigned {
    /// A new key and a certificate for it, signed by itself, naming the
    /// game and valid for localhost, this machine's name and `addr`'s IP
    /// (unless it is 0.0.0.0 or ::), as PEM. Files already there are kept
    /// and refused: they may be an operator's.
    fn make(&self, game: &str, addr: SocketAddr) -> Result<(String, String), String> {
        for path in [&self.cert, &self.key] {
            if path.exists() {
                return Err(format!("{} already exists", path.display()));
            }
        }
        let mut names = vec!["localhost".to_owned()];
        if let Ok(host) = nix::unistd::gethostname() {
            let host = host.to_string_lossy().into_owned();
            if !host.is_empty() && !names.contains(&host) {
                names.push(host);
            }
        }
        if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
            names.push(addr.ip().to_string());
        }
        let failed = |e: rcgen::Error| format!("making a TLS certificate: {e}");
        let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, game);
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes both files, the key readable by its owner alone, making
    /// their directory (mode 0700) if need be.
    fn write(&self, cert: &str, key: &str) -> Result<(), String> {
        let write = |path: &Path, text: &str, mode: u32| {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        write(&self.key, key, 0o600).map_err(|e| format!("writing {}: {e}", self.key.display()))?;
        write(&self.cert, cert, 0o644).map_err(|e| format!("writing {}: {e}", self.cert.display()))
    }
}

/// How to run this evctl again: `evctl` if that is what PATH finds, else
/// the path it was run as (`target/debug/evctl` in a fresh clone).
pub(super) fn myself() -> String {
    let run_as = std::env::args().next().unwrap_or_else(|| "evctl".into());
    if run_as.contains('/') {
        run_as
    } else {
        "evctl".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telnet_at(addr: SocketAddr) -> Listeners {
        Listeners {
            telnet: Some(addr),
            web: None,
        }
    }

    #[test]
    fn writes_a_readable_config_and_refuses_to_overwrite_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("g");
        let telnet: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let web: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners {
            telnet: Some(telnet),
            web: Some(web),
        };
        assert_eq!(run(&dir, listeners, None, None).unwrap(), EXIT_OK);
        let text = std::fs::read_to_string(dir.join("ev.toml")).unwrap();
        assert!(text.starts_with("# ev game settings"), "{text}");
        let config = Config::parse(&text, &dir.join("ev.toml")).unwrap();
        assert_eq!(config.portal.telnet, telnet);
        assert_eq!(config.portal.web, Some(web));
        for sub in ["data", "logs", "run"] {
            assert!(dir.join(sub).is_dir(), "{sub}");
        }
        let err = run(&dir, Listeners::default(), None, None).unwrap_err();
        assert!(
            err.message.contains("already a game directory"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(&*dir.to_string_lossy()),
            "{}",
            err.message
        );
    }

    #[test]
    fn tls_makes_a_self_signed_certificate_and_a_private_key_and_turns_the_listener_on() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("g");
        let telnet: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            run(&dir, telnet_at(telnet), Some(None), None).unwrap(),
            EXIT_OK
        );
        let text = std::fs::read_to_string(dir.join("ev.toml")).unwrap();
        let config = Config::parse(&text, &dir.join("ev.toml")).unwrap();
        assert_eq!(config.portal.tls, Some("127.0.0.1:4003".parse().unwrap()));
        let cert = std::fs::read_to_string(dir.join("tls/cert.pem")).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        let key = dir.join("tls/key.pem");
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .contains("PRIVATE KEY-----")
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&dir.join("tls")), 0o700);

        // An address of its own; port 0 beside a telnet port 0.
        let other = tmp.path().join("h");
        let addr: SocketAddr = "0.0.0.0:9999".parse().unwrap();
        run(&other, Listeners::default(), Some(Some(addr)), None).unwrap();
        let text = std::fs::read_to_string(other.join("ev.toml")).unwrap();
        assert!(text.contains("tls = \"0.0.0.0:9999\""), "{text}");
        let zero = tmp.path().join("z");
        let telnet: SocketAddr = "127.0.0.1:0".parse().unwrap();
        run(&zero, telnet_at(telnet), Some(None), None).unwrap();
        let text = std::fs::read_to_string(zero.join("ev.toml")).unwrap();
        assert!(text.contains("tls = \"127.0.0.1:0\""), "{text}");
    }

    #[test]
    fn a_certificate_already_there_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("g");
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::write(dir.join("tls/key.pem"), "the operator's").unwrap();
        let err = run(&dir, Listeners::default(), Some(None), None).unwrap_err();
        assert!(
            err.message.contains("key.pem already exists"),
            "{}",
            err.message
        );
        assert!(!dir.join("ev.toml").exists(), "nothing written");
        assert_eq!(
            std::fs::read_to_string(dir.join("tls/key.pem")).unwrap(),
            "the operator's"
        );
    }

    #[test]
    fn too_long_a_path_names_the_socket_limit() {
        let long = format!("/tmp/{}", "x".repeat(120));
        let err = run(Path::new(&long), Listeners::default(), None, None).unwrap_err();
        assert!(
            err.message.contains("107-byte Unix socket limit"),
            "{}",
            err.message
        );
        assert!(!Path::new(&long).exists());
    }
}
