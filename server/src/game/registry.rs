//! The command registry: what each command is, and all that follows from it.
//!
//! A command declares its name, aliases, where it runs (the login screen,
//! in play, or both), the permission level it needs, a category, a usage
//! line and a help text, and which of its words are secret. From that alone
//! the registry finds the command a player meant (an exact name or alias
//! first, else a unique prefix), says what was wrong when none or several
//! match, checks permissions, writes the help, and redacts secrets from any
//! line before a log sees it. Adding a command is one registration; nothing
//! else (help text, watchdog, log filters) has to be kept in step by hand.
//!
//! A player is never told of a command above their level: it reads as
//! unknown, so the admin commands of a game are not a list an attacker can
//! read off its help.

use std::fmt;

/// Who may run a command. Each level may run what the levels below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    #[default]
    Player,
    /// Builds the world.
    Builder,
    /// Runs the game.
    Admin,
}

impl Level {
    /// As stored with an account.
    pub fn as_i64(self) -> i64 {
        match self {
            Level::Player => 0,
            Level::Builder => 1,
            Level::Admin => 2,
        }
    }

    /// A stored level; an unknown number reads as the lowest.
    pub fn from_i64(n: i64) -> Level {
        match n {
            2 => Level::Admin,
            1 => Level::Builder,
            _ => Level::Player,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Player => "player",
            Level::Builder => "builder",
            Level::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        [Level::Player, Level::Builder, Level::Admin]
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(text))
    }
}

/// Where a command can be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At the login screen only (`create`, `connect`).
    Login,
    /// Only with a character in the game.
    Playing,
    /// Either (`help`, `quit`, `ping`).
    Anywhere,
}

impl Place {
    fn admits(self, playing: bool) -> bool {
        match self {
            Place::Login => !playing,
            Place::Playing => playing,
            Place::Anywhere => true,
        }
    }
}

/// One command, as the game declares it.
///
/// ```
/// use ev_server::{Level, Spec};
///
/// // `say TEXT`, also typed as `'TEXT`.
/// let say = Spec::new("say", "say TEXT", "Talk to everyone here.").aliases(&["'"]);
/// // A builder's command, listed under its own heading.
/// let dig = Spec::new("@dig", "@dig DIRECTION NAME", "Make a room.")
///     .level(Level::Builder)
///     .category("Building");
/// // At the login screen; its second argument never reaches a log.
/// let join = Spec::new("join", "join NAME SECRET", "Join a guild.")
///     .at_login()
///     .secret_from(1);
/// # let _ = (say, dig, join);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    /// Other words for it. A one-character alias that is not a letter or
    /// digit (`"` for say) needs no space after it: `"hello`.
    pub aliases: &'static [&'static str],
    pub place: Place,
    pub level: Level,
    /// Groups the help listing.
    pub category: &'static str,
    /// How to type it: `say TEXT`.
    pub usage: &'static str,
    /// One line for the listing; `help NAME` shows it after the usage.
    pub help: &'static str,
    /// Words from this one on (counting the arguments from 0) are secret:
    /// `Some(1)` for `connect NAME PASSWORD`. A log sees `<secret>` instead.
    pub secret_from: Option<usize>,
}

impl Spec {
    /// A player command that runs in play, with no secrets: fill in the rest.
    pub const fn new(name: &'static str, usage: &'static str, help: &'static str) -> Spec {
        Spec {
            name,
            aliases: &[],
            place: Place::Playing,
            level: Level::Player,
            category: "General",
            usage,
            help,
            secret_from: None,
        }
    }

    /// Other words for it.
    pub const fn aliases(self, aliases: &'static [&'static str]) -> Spec {
        Spec { aliases, ..self }
    }

    /// Runs at the login screen only.
    pub const fn at_login(self) -> Spec {
        Spec {
            place: Place::Login,
            ..self
        }
    }

    /// Runs at the login screen and in play.
    pub const fn anywhere(self) -> Spec {
        Spec {
            place: Place::Anywhere,
            ..self
        }
    }

    /// Needs at least this level.
    pub const fn level(self, level: Level) -> Spec {
        Spec { level, ..self }
    }

    /// Its heading in the help listing.
    pub const fn category(self, category: &'static str) -> Spec {
        Spec { category, ..self }
    }

    /// Its arguments from number `n` on (from 0) never reach a log.
    pub const fn secret_from(self, n: usize) -> Spec {
        Spec {
            secret_from: Some(n),
            ..self
        }
    }
}

/// Two commands that claim the same word, found when the game registers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub word: String,
    pub first: &'static str,
    pub second: &'static str,
}

impl fmt::Display for Clash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` names both the {} and the {} command",
            self.word, self.first, self.second
        )
    }
}

impl std::error::Error for Clash {}

/// What a typed word resolved to.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a, H> {
    Command(&'a Spec, &'a H),
    /// Several visible commands start with the word.
    Ambiguous(Vec<&'static str>),
    /// A command of that name exists but not here (in play, or at login).
    Elsewhere(&'a Spec),
    Unknown,
}

/// A line split into its command word and the rest.
#[derive(Debug, PartialEq, Eq)]
pub struct Typed<'a> {
    pub verb: &'a str,
    /// The rest of the line, trimmed.
    pub rest: &'a str,
}

pub struct Registry<H> {
    commands: Vec<(Spec, H)>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Registry {
            commands: Vec::new(),
        }
    }
}

impl<H> Registry<H> {
    /// Adds a command; a name or alias another command has is refused.
    pub fn add(&mut self, spec: Spec, handler: H) -> Result<(), Clash> {
        for word in words(&spec) {
            if let Some((other, _)) = self
                .commands
                .iter()
                .find(|(other, _)| words(other).any(|w| w.eq_ignore_ascii_case(word)))
            {
                return Err(Clash {
                    word: word.to_owned(),
                    first: other.name,
                    second: spec.name,
                });
            }
        }
        self.commands.push((spec, handler));
        Ok(())
    }

    /// Takes out the command called `name`; gives whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.commands.len();
        self.commands
            .retain(|(spec, _)| !spec.name.eq_ignore_ascii_case(name));
        self.commands.len() != before
    }

    /// The commands without their handlers.
    pub fn specs(&self) -> Registry<()> {
        Registry {
            commands: self
                .commands
                .iter()
                .map(|(spec, _)| (spec.clone(), ()))
                .collect(),
        }
    }

    /// Every command's name, in the order registered.
    #[cfg(test)]
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.commands.iter().map(|(spec, _)| spec.name)
    }

    /// Splits `line` into the command word and the rest: a one-character
    /// alias like `"` or `:` may be followed directly by its text.
    pub fn split<'l>(&self, line: &'l str) -> Option<Typed<'l>> {
        let line = line.trim();
        let first = line.chars().next()?;
        if !first.is_alphanumeric() && self.is_symbol(first) {
            let (verb, rest) = line.split_at(first.len_utf8());
            return Some(Typed {
                verb,
                rest: rest.trim(),
            });
        }
        Some(match line.split_once(char::is_whitespace) {
            Some((verb, rest)) => Typed {
                verb,
                rest: rest.trim(),
            },
            None => Typed {
                verb: line,
                rest: "",
            },
        })
    }

    fn is_symbol(&self, c: char) -> bool {
        self.commands
            .iter()
            .flat_map(|(spec, _)| spec.aliases.iter())
            .any(|alias| alias.chars().eq(std::iter::once(c)))
    }

    /// The command `verb` means for a session at `level`, in play or not.
    pub fn find(&self, verb: &str, playing: bool, level: Level) -> Found<'_, H> {
        let allowed = |spec: &Spec| spec.level <= level;
        let visible = |spec: &Spec| allowed(spec) && spec.place.admits(playing);
        let exact = |spec: &Spec| words(spec).any(|w| w.eq_ignore_ascii_case(verb));
        if let Some((spec, handler)) = self.commands.iter().find(|(s, _)| visible(s) && exact(s)) {
            return Found::Command(spec, handler);
        }
        if let Some((spec, _)) = self.commands.iter().find(|(s, _)| allowed(s) && exact(s)) {
            return Found::Elsewhere(spec);
        }
        let matches: Vec<&(Spec, H)> = self
            .commands
            .iter()
            .filter(|(s, _)| visible(s) && could_name(s, verb))
            .collect();
        match matches.as_slice() {
            [] => Found::Unknown,
            [(spec, handler)] => Found::Command(spec, handler),
            many => {
                let mut names: Vec<&'static str> = many.iter().map(|(s, _)| s.name).collect();
                names.sort_unstable();
                names.dedup();
                Found::Ambiguous(names)
            }
        }
    }

    /// Every command a session may run here, by category, one per line.
    pub fn listing(&self, playing: bool, level: Level) -> String {
        let visible: Vec<&Spec> = self
            .commands
            .iter()
            .map(|(spec, _)| spec)
            .filter(|s| s.level <= level && s.place.admits(playing))
            .collect();
        // In order of first appearance.
        let mut categories: Vec<&str> = Vec::new();
        for spec in &visible {
            if !categories.contains(&spec.category) {
                categories.push(spec.category);
            }
        }
        let width = visible.iter().map(|s| s.usage.len()).max().unwrap_or(0);
        let mut out = String::new();
        for category in categories {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(category);
            out.push(':');
            for spec in visible.iter().filter(|s| s.category == category) {
                out.push_str(&format!("\n  {:width$}  {}", spec.usage, spec.help));
            }
        }
        out.push_str("\nType help COMMAND for more.");
        out
    }

    /// `help TOPIC`: the usage, help and aliases of the command it names.
    pub fn help_for(&self, topic: &str, playing: bool, level: Level) -> Option<String> {
        let spec = match self.find(topic, playing, level) {
            Found::Command(spec, _) | Found::Elsewhere(spec) => spec,
            Found::Ambiguous(_) | Found::Unknown => return None,
        };
        let mut text = format!("{}\n  {}", spec.usage, spec.help);
        if !spec.aliases.is_empty() {
            text.push_str(&format!("\n  Also: {}", spec.aliases.join(", ")));
        }
        match spec.place {
            Place::Login => text.push_str("\n  At the login screen only."),
            Place::Playing | Place::Anywhere => {}
        }
        Some(text)
    }

    /// A line a session typed as a log may show it: nothing of it if it
    /// answers a password prompt, else as [`Registry::loggable`] says.
    pub fn loggable_input(&self, line: &str, answers_secret: bool) -> String {
        if answers_secret {
            "<secret>".to_owned()
        } else {
            self.loggable(line)
        }
    }

    /// `line` as a log may show it: the secret words of whichever command
    /// it could name, at any stage or level, replaced. A line that names
    /// none is cut to 200 characters and stripped of controls.
    pub fn loggable(&self, line: &str) -> String {
        let printable =
            |text: &str| -> String { text.chars().filter(|c| !c.is_control()).take(200).collect() };
        let Some(typed) = self.split(line) else {
            return String::new();
        };
        let mut named = self
            .commands
            .iter()
            .map(|(spec, _)| spec)
            .filter(|spec| could_name(spec, typed.verb))
            .peekable();
        if named.peek().is_none() {
            // A mistyped `conect NAME PASSWORD` names no command: its words
            // could be anything, so only the word typed is shown.
            let more = if typed.rest.is_empty() { "" } else { " …" };
            return format!("{}{more}", printable(typed.verb));
        }
        match named.filter_map(|spec| spec.secret_from).min() {
            None => printable(line.trim()),
            Some(from) => {
                let shown: Vec<&str> = typed.rest.split_whitespace().take(from).collect();
                let hidden = typed.rest.split_whitespace().count() > from;
                let mut text = printable(typed.verb);
                for word in shown {
                    text.push(' ');
                    text.push_str(&printable(word));
                }
                if hidden {
                    text.push_str(" <secret>");
                }
                text
            }
        }
    }
}

/// Whether `verb` is the start of one of `spec`'s words, in any case.
fn could_name(spec: &Spec, verb: &str) -> bool {
    words(spec).any(|w| {
        w.len() >= verb.len() && w.as_bytes()[..verb.len()].eq_ignore_ascii_case(verb.as_bytes())
    })
}

/// A command's name and aliases.
fn words(spec: &Spec) -> impl Iterator<Item = &'static str> + '_ {
    std::iter::once(spec.name).chain(spec.aliases.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry<u8> {
        let mut r = Registry::default();
        let add = |r: &mut Registry<u8>, spec: Spec, h: u8| r.add(spec, h).unwrap();
        add(
            &mut r,
            Spec {
                place: Place::Login,
                category: "Account",
                secret_from: Some(1),
                ..Spec::new("connect", "connect NAME PASSWORD", "Play your character.")
            },
            1,
        );
        add(
            &mut r,
            Spec {
                place: Place::Login,
                category: "Account",
                secret_from: Some(1),
                ..Spec::new("create", "create NAME PASSWORD", "Make a character.")
            },
            2,
        );
        add(&mut r, Spec::new("look", "look", "Look around."), 3);
        add(
            &mut r,
            Spec {
                aliases: &["\"", "'"],
                ..Spec::new("say", "say TEXT", "Speak to the room.")
            },
            4,
        );
        add(
            &mut r,
            Spec {
                place: Place::Anywhere,
                ..Spec::new("quit", "quit", "Leave.")
            },
            5,
        );
        add(
            &mut r,
            Spec {
                level: Level::Admin,
                category: "Admin",
                ..Spec::new("shutdown", "shutdown", "Stop the game.")
            },
            6,
        );
        add(
            &mut r,
            Spec {
                level: Level::Builder,
                category: "Building",
                ..Spec::new("lock", "lock EXIT", "Lock an exit.")
            },
            7,
        );
        r
    }

    fn handler(found: Found<'_, u8>) -> Option<u8> {
        match found {
            Found::Command(_, h) => Some(*h),
            _ => None,
        }
    }

    #[test]
    fn exact_names_and_aliases_any_case_then_unique_prefixes() {
        let r = registry();
        let p = Level::Player;
        assert_eq!(handler(r.find("look", true, p)), Some(3));
        assert_eq!(handler(r.find("LOOK", true, p)), Some(3));
        assert_eq!(handler(r.find("loo", true, p)), Some(3));
        assert_eq!(handler(r.find("\"", true, p)), Some(4));
        assert_eq!(handler(r.find("s", true, p)), Some(4), "shutdown is hidden");
        assert_eq!(handler(r.find("q", false, p)), Some(5));
        assert_eq!(r.find("xyzzy", true, p), Found::Unknown);
    }

    #[test]
    fn an_ambiguous_prefix_names_the_candidates() {
        let r = registry();
        assert_eq!(
            r.find("c", false, Level::Player),
            Found::Ambiguous(vec!["connect", "create"])
        );
        // A builder also sees lock.
        assert_eq!(
            r.find("lo", true, Level::Builder),
            Found::Ambiguous(vec!["lock", "look"])
        );
        assert_eq!(handler(r.find("lo", true, Level::Player)), Some(3));
    }

    #[test]
    fn commands_above_a_level_read_as_unknown_and_wrong_place_is_said() {
        let r = registry();
        assert_eq!(r.find("shutdown", true, Level::Player), Found::Unknown);
        assert_eq!(r.find("shutdown", true, Level::Builder), Found::Unknown);
        assert_eq!(handler(r.find("shutdown", true, Level::Admin)), Some(6));
        assert!(matches!(
            r.find("look", false, Level::Player),
            Found::Elsewhere(spec) if spec.name == "look"
        ));
        assert!(matches!(
            r.find("connect", true, Level::Player),
            Found::Elsewhere(spec) if spec.name == "connect"
        ));
    }

    #[test]
    fn a_clash_is_refused_at_registration() {
        let mut r = registry();
        let clash = r
            .add(
                Spec {
                    aliases: &["LOOK"],
                    ..Spec::new("glance", "glance", "Look quickly.")
                },
                9,
            )
            .unwrap_err();
        assert_eq!(clash.first, "look");
        assert_eq!(clash.second, "glance");
    }

    #[test]
    fn symbols_need_no_space_words_do() {
        let r = registry();
        assert_eq!(
            r.split("\"hello there"),
            Some(Typed {
                verb: "\"",
                rest: "hello there"
            })
        );
        assert_eq!(
            r.split("  say   hi  "),
            Some(Typed {
                verb: "say",
                rest: "hi"
            })
        );
        assert_eq!(
            r.split("look"),
            Some(Typed {
                verb: "look",
                rest: ""
            })
        );
        assert_eq!(r.split("   "), None);
        // `:` is no alias here: it is a word like any other.
        assert_eq!(r.split(":waves").map(|t| t.verb), Some(":waves"));
    }

    #[test]
    fn the_listing_follows_level_and_place() {
        let r = registry();
        let login = r.listing(false, Level::Player);
        assert!(login.contains("create NAME PASSWORD"), "{login}");
        assert!(login.contains("quit"), "{login}");
        assert!(!login.contains("look"), "{login}");
        let player = r.listing(true, Level::Player);
        assert!(player.starts_with("General:"), "{player}");
        assert!(
            !player.contains("shutdown") && !player.contains("lock"),
            "{player}"
        );
        let admin = r.listing(true, Level::Admin);
        assert!(admin.contains("Admin:\n  shutdown"), "{admin}");
        assert!(admin.contains("Building:\n  lock EXIT"), "{admin}");
        let help = r.help_for("\"", true, Level::Player).unwrap();
        assert!(
            help.contains("say TEXT") && help.contains("Also: \", '"),
            "{help}"
        );
        assert_eq!(r.help_for("shutdown", true, Level::Player), None);
    }

    #[test]
    fn secrets_never_reach_a_log_whatever_the_case_or_prefix() {
        let r = registry();
        for line in [
            "connect Alice hunter2",
            "CONNECT Alice hunter2",
            "conn Alice hunter2",
            "create Alice hunter2",
            "  create   Alice   hunter2 extra",
        ] {
            let shown = r.loggable(line);
            assert!(!shown.contains("hunter2"), "{line:?} logged as {shown:?}");
            assert!(
                shown.contains("Alice <secret>"),
                "{line:?} logged as {shown:?}"
            );
        }
        // `c` could be connect or create: both hide the password.
        assert_eq!(r.loggable("c Alice hunter2"), "c Alice <secret>");
        assert_eq!(r.loggable("say hello"), "say hello");
        assert_eq!(r.loggable("connect"), "connect");
        assert_eq!(r.loggable("look\u{1b}[2J"), "look[2J");
        // A typo names no command: only its first word is shown.
        assert_eq!(r.loggable("conect Alice hunter2"), "conect …");
    }

    #[test]
    fn levels_round_trip_and_parse() {
        for level in [Level::Player, Level::Builder, Level::Admin] {
            assert_eq!(Level::from_i64(level.as_i64()), level);
            assert_eq!(Level::parse(level.name()), Some(level));
        }
        assert_eq!(Level::parse("ADMIN"), Some(Level::Admin));
        assert_eq!(Level::parse("god"), None);
        assert_eq!(Level::from_i64(99), Level::Player);
    }
}
