//! `evctl new NAME [DIR] [--telnet ADDR] [--web ADDR] [--admin NAME]`: a game of your
//! own. Makes a crate on ev's runtime (the `ev-server` crate, by path to
//! the ev checkout this evctl was built from), builds it with `cargo build`,
//! and makes its game directory, DIR/game, as `evctl init` does, with
//! `server.binary` at that build and `server.auto_reload` on: from then on
//! each `cargo build` of the crate reloads the running game.
//!
//! The build comes before the game directory because an admin account is
//! made by the game's own binary (`create-admin`), and because
//! `server.binary` must name the file cargo actually writes: cargo's own
//! report of the build says where that is (`CARGO_TARGET_DIR`, a target dir
//! in cargo's config, a build target), so evctl never guesses.
//!
//! Everything that can be refused (the name, DIR, the socket paths, no
//! cargo, the admin's password) is checked before anything is written. A
//! build that fails leaves the crate where it is, to look at.
//!
//! A new game is usually made beside a running one (the demo, another of
//! the author's), which has the default ports: a listener not given as a
//! flag moves to the first free pair of ports [`PORT_STEP`] apart, so the
//! new game starts as it is, and the last lines say where it listens.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::init::{self, Admin, Listeners};
use super::{EXIT_OK, Failure, Outcome, say};
use crate::config::Config;
use crate::gamedir::GameDir;

/// The ev checkout this evctl was built from: its `server/` is the game's
/// dependency.
const EV_CHECKOUT: &str = env!("CARGO_MANIFEST_DIR");

/// The crate's files, with `@crate@` (the package name), `@lib@` (its
/// library's name), `@Game@` (the game's type) and `@server@` (ev-server's
/// path, a TOML string) to fill in.
const TEMPLATES: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("new/Cargo.toml.in")),
    ("src/main.rs", include_str!("new/main.rs.in")),
    ("src/lib.rs", include_str!("new/lib.rs.in")),
    ("src/tests.rs", include_str!("new/tests.rs.in")),
    (".gitignore", include_str!("new/gitignore.in")),
];

/// Names a crate here may not have: Rust's own crates, cargo's directories
/// beside the binary in target/debug, and ev's crates and binaries (a game
/// built into ev's target directory must not overwrite one of them).
const RESERVED: [&str; 15] = [
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    "ev",
    "ev_server",
    "ev_portal",
    "ev_supervisor",
    "ev_demo",
    "ev_loadgen",
];

/// ev binaries whose names are not crates' (`evctl`, the test server).
const RESERVED_BINARIES: [&str; 2] = ["evctl", "ev_test_server"];

/// Rust's keywords, strict and reserved: not a library's name.
const KEYWORDS: [&str; 52] = [
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen", "union",
];

/// `server.auto_reload_settle_ms` of a new game (the default, 500, is for
/// a binary written in steps).
const AUTO_RELOAD_SETTLE_MS: u64 = 100;

/// How far apart the pairs of ports `new` tries are (4000/4001,
/// 4010/4011, ...): clear of the TLS port beside the default pair (4003).
const PORT_STEP: u16 = 10;

/// How many pairs it tries before it keeps the defaults and says so.
const PORT_TRIES: u16 = 10;

/// The longest name taken: a crate's name is also its binary's and a
/// directory's.
const MAX_NAME: usize = 64;

/// NAME as a crate's name, or why not (clap prints it as a usage error).
pub fn crate_name(text: &str) -> Result<String, String> {
    let rules = "a game's name is its crate's: lower-case letters, digits, - and _, starting with a letter (e.g. my-game)";
    let mut chars = text.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if text.contains('/') {
        return Err(format!(
            "{text:?} is a path, not a name; give the directory after the name: evctl new NAME DIR"
        ));
    }
    if !starts_well || !rest_ok {
        return Err(format!("{text:?}: {rules}"));
    }
    if text.len() > MAX_NAME {
        return Err(format!("{text:?} is longer than {MAX_NAME} characters"));
    }
    let lib = lib_name(text);
    if KEYWORDS.contains(&lib.as_str()) {
        return Err(format!("{text:?} is a Rust keyword; choose another name"));
    }
    if RESERVED.contains(&lib.as_str()) || RESERVED_BINARIES.contains(&lib.as_str()) {
        return Err(format!(
            "{text:?} is taken (by Rust, cargo or ev itself); choose another name"
        ));
    }
    Ok(text.to_owned())
}

/// The library's name: the crate's with `-` as `_`.
fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The game's type: the name in CamelCase, ending in `Game` (so it never
/// shadows a type of the prelude or of ev-server that the template uses).
fn type_name(name: &str) -> String {
    let mut camel: String = name
        .split(['-', '_'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if !camel.ends_with("Game") {
        camel.push_str("Game");
    }
    // What the template imports under these names.
    if camel == "Game" || camel == "TestGame" {
        camel.insert_str(0, "My");
    }
    camel
}

/// The templates filled in: (path in the crate, contents).
fn render(name: &str, server: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let server = server
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8, which Cargo.toml needs", server.display()))?;
    let server = toml::Value::String(server.to_owned()).to_string();
    let (lib, game) = (lib_name(name), type_name(name));
    Ok(TEMPLATES
        .iter()
        .map(|&(path, template)| {
            let text = template
                .replace("@crate@", name)
                .replace("@lib@", &lib)
                .replace("@Game@", &game)
                .replace("@server@", &server);
            (path, text)
        })
        .collect())
}

pub fn run(name: &str, dir: Option<&Path>, listeners: Listeners, admin: Option<&str>) -> Outcome {
    let dir = std::path::absolute(dir.unwrap_or(Path::new(name)))
        .map_err(|e| Failure::new(format!("cannot make the game {name}: {e}")))?;
    let fail = |e: &dyn std::fmt::Display| {
        Failure::new(format!(
            "cannot make the game {name} in {}: {e}",
            dir.display()
        ))
    };

    // Everything that can be refused, before anything is written.
    let checkout = Path::new(EV_CHECKOUT);
    let server = checkout.join("server");
    if !server.join("Cargo.toml").is_file() {
        return Err(fail(&format!(
            "this evctl was built from the ev checkout {}, which has no server/Cargo.toml now; run the evctl of your ev checkout",
            checkout.display()
        )));
    }
    outside_checkout(&dir, checkout).map_err(|e| fail(&e))?;
    free_target(&dir).map_err(|e| fail(&e))?;
    let game = GameDir::new(dir.join("game"));
    init::check(&game)?;
    let files = render(name, &server).map_err(|e| fail(&e))?;
    let cargo = Cargo::find().map_err(|e| fail(&e))?;
    let password = match admin {
        Some(admin) => Some((admin, super::password::admin_password(admin)?)),
        None => None,
    };

    write_crate(&dir, &files, &checkout.join("Cargo.lock")).map_err(|e| fail(&e))?;
    say(format!("made the game crate {name} in {}", dir.display()))?;
    say(
        "building it with cargo build (the first build compiles ev's runtime and its dependencies: minutes)",
    )?;
    let binary = cargo.build(&dir, name).map_err(|e| {
        Failure::new(format!(
            "{e}; the crate is left in {} to look at (remove it before trying evctl new again)",
            dir.display()
        ))
    })?;

    let mut config = Config::default();
    config.game.name = name.to_owned();
    config.server.binary = binary_setting(&binary, &dir);
    config.server.auto_reload = true;
    // cargo puts a build at target/debug/NAME in one step (a hard link from
    // deps/), so the watch need not wait long for more writes.
    config.server.auto_reload_settle_ms = AUTO_RELOAD_SETTLE_MS;
    // Asked after the build, minutes nearer the game's start.
    let placed = place(listeners, &config, |addr| {
        super::start::port_free(addr, "").is_ok()
    });
    placed.listeners.apply(&mut config);
    let admin = password.map(|(admin, password)| Admin {
        name: admin.to_owned(),
        password,
        server: binary.clone(),
    });
    init::create(&game, &config)?;
    say(format!(
        "created the game directory {}: server.binary = {} (what cargo just built), auto_reload = true",
        game.root().display(),
        config.server.binary.display()
    ))?;
    if !binary.starts_with(&dir) {
        say(
            "  (cargo builds outside the crate, as CARGO_TARGET_DIR or cargo's config say: build the game with the same settings, or it will not reload)",
        )?;
    }
    if let Some(admin) = admin {
        init::create_admin(&game, admin)?;
    }
    let cd = std::env::current_dir()
        .ok()
        .and_then(|here| dir.strip_prefix(here).ok().map(Path::to_path_buf))
        .filter(|rel| !rel.as_os_str().is_empty())
        .unwrap_or_else(|| dir.clone());
    say(init::next_steps(
        &config,
        &[
            format!("cd {}", cd.display()),
            format!("{} -g game start", evctl_path()),
        ],
    ))?;
    say(
        "then change the text of `hello` in src/lib.rs and run `cargo build`: the game reloads by itself, and players stay connected",
    )?;
    say(placed.said(&config, &game))?;
    Ok(EXIT_OK)
}

/// Where the listeners go, and why there.
#[derive(Debug, PartialEq, Eq)]
struct Placed {
    /// Every listener's address (web: None when it has none).
    listeners: Listeners,
    /// The defaults were in use: the ports were moved past them.
    moved: bool,
    /// No free pair was found: the defaults were kept, in use.
    crowded: bool,
}

/// The addresses given as they are; each other listener at its default
/// (`config`'s), or, if any default is in use (`free` says not), all of
/// them at the first set of ports [`PORT_STEP`] on that is free.
fn place(given: Listeners, config: &Config, free: impl Fn(SocketAddr) -> bool) -> Placed {
    let shifted = |addr: SocketAddr, by: u16| {
        // Port 0 (a port chosen at each start) never clashes.
        (addr.port() != 0)
            .then(|| addr.port().checked_add(by))
            .flatten()
            .map(|port| SocketAddr::new(addr.ip(), port))
    };
    for step in 0..PORT_TRIES {
        let by = step * PORT_STEP;
        let telnet = match given.telnet {
            Some(addr) => Some(addr),
            None => shifted(config.portal.telnet, by),
        };
        let web = match (given.web, config.portal.web) {
            (Some(addr), _) => Some(Some(addr)),
            (None, Some(default)) => shifted(default, by).map(Some),
            (None, None) => Some(None),
        };
        let (Some(telnet), Some(web)) = (telnet, web) else {
            break;
        };
        let defaults_free = (given.telnet.is_some() || free(telnet))
            && (given.web.is_some() || web.is_none_or(&free))
            && web.is_none_or(|web| web.port() == 0 || web.port() != telnet.port());
        if defaults_free {
            return Placed {
                listeners: Listeners {
                    telnet: Some(telnet),
                    web,
                },
                moved: step > 0,
                crowded: false,
            };
        }
    }
    Placed {
        listeners: given,
        moved: false,
        crowded: given.telnet.is_none() || given.web.is_none(),
    }
}

impl Placed {
    /// Where the game listens, and why there if not at the defaults.
    fn said(&self, config: &Config, game: &GameDir) -> String {
        let at = |addr: SocketAddr, what: &str| match addr.port() {
            0 => format!("{what} on {addr} (a free port at each start, which evctl start prints)"),
            _ => format!("{what} on {addr}"),
        };
        let mut text = format!(
            "the game listens for {}",
            at(config.portal.telnet, "telnet")
        );
        match config.portal.web {
            Some(web) => text.push_str(&format!(" and {}", at(web, "the webclient"))),
            None => text.push_str(" (no webclient)"),
        }
        let defaults = Config::default();
        let defaults = match defaults.portal.web {
            Some(web) => format!("{} or {web}", defaults.portal.telnet),
            None => defaults.portal.telnet.to_string(),
        };
        let ev_toml = game.config_path();
        if self.moved {
            text.push_str(&format!(
                "\n  ({defaults} is in use now, by another game perhaps, so it takes the next free ports; change portal.telnet and portal.web in {} to choose others)",
                ev_toml.display()
            ));
        } else if self.crowded {
            text.push_str(&format!(
                "\n  ({defaults} is in use now and so are the next {} ports tried: stop what uses them, or change portal.telnet and portal.web in {}, before evctl start)",
                PORT_TRIES - 1,
                ev_toml.display()
            ));
        }
        text
    }
}

/// The game must not be made in ev's own checkout: it is the author's
/// project, not a part of ev, and ev's git would carry it.
fn outside_checkout(dir: &Path, checkout: &Path) -> Result<(), String> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    // DIR may not exist yet: its nearest existing ancestor decides.
    let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
    let below = dir.strip_prefix(existing).unwrap_or(Path::new(""));
    if real(existing).join(below).starts_with(real(checkout)) {
        return Err(format!(
            "that is inside ev's own checkout ({}); make your game elsewhere, e.g. evctl new NAME ~/NAME",
            checkout.display()
        ));
    }
    Ok(())
}

/// DIR must not exist, or be an empty directory.
fn free_target(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err("it already exists and is not empty".to_owned()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err("it already exists as a file".to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Writes the crate's files, and ev's Cargo.lock as the crate's: the
/// versions ev is tested with, no lookup in the registry's index, and
/// builds a shared target directory already holds.
fn write_crate(dir: &Path, files: &[(&str, String)], lock: &Path) -> Result<(), String> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if lock.is_file() {
        let to = dir.join("Cargo.lock");
        std::fs::copy(lock, &to)
            .map_err(|e| format!("copying {} to {}: {e}", lock.display(), to.display()))?;
    }
    Ok(())
}

/// `server.binary` for the build at `binary`: relative to the game
/// directory (DIR/game) when cargo built it inside the crate, so the crate
/// can move; else where it is.
fn binary_setting(binary: &Path, dir: &Path) -> PathBuf {
    match binary.strip_prefix(dir) {
        Ok(inside) => Path::new("..").join(inside),
        Err(_) => binary.to_owned(),
    }
}

/// evctl as the next steps should call it: a path if it was run by one,
/// absolute (the next step changes directory).
fn evctl_path() -> String {
    let myself = init::myself();
    if myself.contains('/') {
        if let Ok(exe) = std::env::current_exe() {
            return exe.display().to_string();
        }
    }
    myself
}

/// The cargo that builds the game: `$CARGO` (set when evctl runs under
/// cargo), else `cargo` from PATH.
struct Cargo {
    program: PathBuf,
}

impl Cargo {
    /// Checks that it runs at all.
    fn find() -> Result<Cargo, String> {
        let program = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), Into::into);
        let out = Command::new(&program)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(Cargo { program }),
            Ok(out) => Err(format!(
                "{} --version failed ({}); is Rust installed properly?",
                program.display(),
                out.status
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{} not found: install Rust (https://rustup.rs) and make sure cargo is on PATH",
                program.display()
            )),
            Err(e) => Err(format!("running {}: {e}", program.display())),
        }
    }

    /// `cargo build` in `dir`, its progress and messages on this terminal;
    /// gives the binary `name` it built, as cargo reports it.
    fn build(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let mut child = Command::new(&self.program)
            .args(["build", "--message-format", "json-render-diagnostics"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("running {} build: {e}", self.program.display()))?;
        let mut binary = None;
        if let Some(stdout) = child.stdout.take() {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(path) = built_binary(&line, name) {
                    binary = Some(path);
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("waiting for cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build failed ({status})"));
        }
        let binary = binary
            .ok_or_else(|| format!("cargo build succeeded but did not report the binary {name}"))?;
        if binary.is_file() {
            Ok(binary)
        } else {
            Err(format!(
                "cargo build reported the binary {}, which is not there",
                binary.display()
            ))
        }
    }
}

/// The executable of the binary target `name` if `line` is cargo's JSON
/// message of building it.
fn built_binary(line: &str, name: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let target = message.get("target")?;
    let is_bin = target
        .get("kind")?
        .as_array()?
        .iter()
        .any(|k| k.as_str() == Some("bin"));
    if !is_bin || target.get("name")?.as_str()? != name {
        return None;
    }
    message.get("executable")?.as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_names_and_say_why_not() {
        for good in ["my-game", "hello", "a1", "dark_tower-2", "gamey"] {
            assert_eq!(crate_name(good).unwrap(), good);
        }
        for (bad, why) in [
            ("", "starting with a letter"),
            ("My-Game", "lower-case"),
            ("2fast", "starting with a letter"),
            ("my game", "lower-case"),
            ("games/mine", "evctl new NAME DIR"),
            ("fn", "keyword"),
            ("self", "keyword"),
            ("test", "taken"),
            ("deps", "taken"),
            ("ev-server", "taken"),
            ("ev_portal", "taken"),
            ("evctl", "taken"),
            ("ev-test-server", "taken"),
        ] {
            let err = crate_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(crate_name(&"a".repeat(65)).unwrap_err().contains("longer"));
    }

    #[test]
    fn the_games_type_is_camel_case_and_never_an_imported_name() {
        assert_eq!(type_name("my-game"), "MyGame");
        assert_eq!(type_name("hello"), "HelloGame");
        assert_eq!(type_name("dark_tower-2"), "DarkTower2Game");
        assert_eq!(type_name("game"), "MyGame");
        assert_eq!(type_name("test-game"), "MyTestGame");
        assert_eq!(type_name("a--b"), "ABGame");
    }

    #[test]
    fn the_templates_are_filled_in_completely() {
        let files = render("my-game", Path::new("/src/ev \"one\"/server")).unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [
                "Cargo.toml",
                "src/main.rs",
                "src/lib.rs",
                "src/tests.rs",
                ".gitignore"
            ]
        );
        for (path, text) in &files {
            assert!(!text.contains('@'), "{path} keeps a placeholder:\n{text}");
        }
        let manifest: toml::Table = files[0].1.parse().unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some("my-game"));
        assert_eq!(
            manifest["dependencies"]["ev-server"]["path"].as_str(),
            Some("/src/ev \"one\"/server")
        );
        assert_eq!(
            manifest["dev-dependencies"]["ev-server"]["features"]
                .as_array()
                .unwrap()[0]
                .as_str(),
            Some("testkit")
        );
        assert!(manifest["workspace"].as_table().unwrap().is_empty());
        assert!(
            files[1]
                .1
                .contains("ev_server::main(my_game::MyGame::default())")
        );
        assert!(files[2].1.contains("pub struct MyGame {"));
    }

    /// The game's profile must be ev's: the same settings make the same
    /// builds of ev's crates, so a shared target directory is reused (and
    /// argon2 optimised keeps logins fast in a debug build).
    #[test]
    fn the_crates_profile_is_evs() {
        let ev: toml::Table = std::fs::read_to_string(Path::new(EV_CHECKOUT).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let files = render("my-game", Path::new("/ev/server")).unwrap();
        let game: toml::Table = files[0].1.parse().unwrap();
        assert_eq!(game["profile"], ev["profile"]);
    }

    #[test]
    fn refuses_a_target_that_exists_or_lies_inside_ev() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(free_target(&tmp.path().join("new")).is_ok());
        assert!(free_target(tmp.path()).is_ok(), "an empty directory");
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let err = free_target(tmp.path()).unwrap_err();
        assert!(err.contains("not empty"), "{err}");
        let err = free_target(&tmp.path().join("file")).unwrap_err();
        assert!(err.contains("as a file"), "{err}");

        let checkout = Path::new(EV_CHECKOUT);
        let err = outside_checkout(&checkout.join("games/mine"), checkout).unwrap_err();
        assert!(err.contains("inside ev's own checkout"), "{err}");
        assert!(outside_checkout(&tmp.path().join("mine"), checkout).is_ok());
    }

    #[test]
    fn finds_the_binary_in_cargos_report() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///g#my-game@0.1.0","target":{"kind":["bin"],"crate_types":["bin"],"name":"my-game","src_path":"/g/src/main.rs"},"filenames":["/t/debug/my-game"],"executable":"/t/debug/my-game","fresh":false}"#;
        assert_eq!(
            built_binary(line, "my-game"),
            Some(PathBuf::from("/t/debug/my-game"))
        );
        assert_eq!(built_binary(line, "other"), None);
        let lib = line.replace(r#"["bin"]"#, r#"["lib"]"#);
        assert_eq!(built_binary(&lib, "my-game"), None);
        assert_eq!(built_binary("not json", "my-game"), None);
        assert_eq!(
            built_binary(r#"{"reason":"build-finished","success":true}"#, "my-game"),
            None
        );
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn listeners_keep_the_defaults_while_they_are_free() {
        let placed = place(Listeners::default(), &Config::default(), |_| true);
        assert_eq!(
            placed.listeners,
            Listeners {
                telnet: Some(addr("127.0.0.1:4000")),
                web: Some(addr("127.0.0.1:4001")),
            }
        );
        assert!(!placed.moved && !placed.crowded);
    }

    #[test]
    fn a_default_in_use_moves_both_to_the_next_free_pair() {
        // The demo on 4000/4001, something else on 4011.
        let taken = [
            addr("127.0.0.1:4000"),
            addr("127.0.0.1:4001"),
            addr("127.0.0.1:4011"),
        ];
        let placed = place(Listeners::default(), &Config::default(), |a| {
            !taken.contains(&a)
        });
        assert_eq!(
            placed.listeners,
            Listeners {
                telnet: Some(addr("127.0.0.1:4020")),
                web: Some(addr("127.0.0.1:4021")),
            }
        );
        assert!(placed.moved);
        let mut config = Config::default();
        placed.listeners.apply(&mut config);
        let said = placed.said(&config, &GameDir::new("/g/game"));
        assert!(
            said.contains("telnet on 127.0.0.1:4020")
                && said.contains("webclient on 127.0.0.1:4021")
                && said.contains("127.0.0.1:4000 or 127.0.0.1:4001 is in use")
                && said.contains("/g/game/ev.toml"),
            "{said}"
        );
    }

    #[test]
    fn an_address_given_is_kept_and_only_the_other_moves() {
        let given = Listeners {
            telnet: Some(addr("127.0.0.1:4000")),
            web: None,
        };
        // Taken, but given: the operator's choice, which start checks.
        let placed = place(given, &Config::default(), |a| a.port() > 4001);
        assert_eq!(placed.listeners.telnet, Some(addr("127.0.0.1:4000")));
        assert_eq!(placed.listeners.web, Some(addr("127.0.0.1:4011")));

        // A web address on the telnet port given is not the web default.
        let given = Listeners {
            telnet: Some(addr("127.0.0.1:4001")),
            web: None,
        };
        let placed = place(given, &Config::default(), |_| true);
        assert_eq!(placed.listeners.web, Some(addr("127.0.0.1:4011")));

        // Both given: nothing is asked, port 0 is kept.
        let given = Listeners {
            telnet: Some(addr("127.0.0.1:0")),
            web: Some(addr("127.0.0.1:0")),
        };
        let placed = place(given, &Config::default(), |_| panic!("asked"));
        assert_eq!(placed.listeners, given);
        assert!(!placed.moved && !placed.crowded);
        let mut config = Config::default();
        placed.listeners.apply(&mut config);
        let said = placed.said(&config, &GameDir::new("/g/game"));
        assert!(said.contains("a free port at each start"), "{said}");
    }

    #[test]
    fn with_no_free_pair_the_defaults_stay_and_it_says_so() {
        let placed = place(Listeners::default(), &Config::default(), |_| false);
        assert_eq!(placed.listeners, Listeners::default());
        assert!(placed.crowded && !placed.moved);
        let config = Config::default();
        let said = placed.said(&config, &GameDir::new("/g/game"));
        assert!(said.contains("before evctl start"), "{said}");

        // No webclient: only telnet's port counts.
        let mut config = Config::default();
        config.portal.web = None;
        let placed = place(Listeners::default(), &config, |a| a.port() != 4000);
        assert_eq!(placed.listeners.telnet, Some(addr("127.0.0.1:4010")));
        assert_eq!(placed.listeners.web, None);
    }

    #[test]
    fn a_port_in_use_is_not_free() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = held.local_addr().unwrap();
        assert!(super::super::start::port_free(at, "").is_err());
    }

    #[test]
    fn the_binary_setting_is_relative_inside_the_crate() {
        let dir = Path::new("/home/me/my-game");
        assert_eq!(
            binary_setting(&dir.join("target/debug/my-game"), dir),
            Path::new("../target/debug/my-game")
        );
        assert_eq!(
            binary_setting(Path::new("/shared/target/debug/my-game"), dir),
            Path::new("/shared/target/debug/my-game")
        );
    }
}
