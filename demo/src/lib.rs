//! The ev demo: a small town on the `ev-server` game API, using nothing but
//! its public items. It is what `scripts/demo` and `evctl start` run by
//! default (the `ev-server` binary), and the first example of a game.
//!
//! Seven rooms joined by exits, things to pick up, `look`, `say`, `pose`,
//! movement, `inventory`, `get` and `drop`, `brief` (a per-session setting
//! that survives reloads), a bell that tolls on the hour and a cat that
//! wanders on a timer, and a `Room.Info` out-of-band message (GMCP) at
//! each room change for clients that draw maps. The exits line's
//! directions are send-links (`{send:north}north{/}`): the webclient makes
//! them clickable, a telnet client shows the words. Walking tires: each
//! step costs one of [`MAX_MOVES`] moves, `rest` gives them back, and the
//! count goes out as GMCP `Char.Vitals` (`mv`, `maxmv`), which the
//! webclient shows as a gauge. `route` finds the way to a place as
//! deferred work, off the game's thread.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use ev_server::markup::{escape, send_link};
use ev_server::{
    Context, Fired, Game, Login, Migration, Missed, ObjectId, Result, Setup, Spec, Timer,
    name_list, sort_names,
};
use serde::{Deserialize, Serialize};

/// The directions exits can lead, with their one-letter aliases.
const DIRECTIONS: [(&str, &str); 6] = [
    ("north", "n"),
    ("south", "s"),
    ("east", "e"),
    ("west", "w"),
    ("up", "u"),
    ("down", "d"),
];

/// How many steps a character walks before it must rest.
pub const MAX_MOVES: i64 = 20;

/// The attribute that keeps where a character was when its player left.
const LEFT_FROM: &str = "left_from";

/// How often the cat moves on.
const CAT_WANDERS: Duration = Duration::from_secs(120);
const HOUR: Duration = Duration::from_secs(3600);

/// A room's exits: direction → room.
type Exits = BTreeMap<String, ObjectId>;

/// What `route` asks of [`find_route`]: the whole map, since deferred work
/// sees nothing but its input.
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteAsked {
    pub from: i64,
    pub to: i64,
    pub to_name: String,
    /// Each room's exits: direction → room.
    pub map: BTreeMap<i64, BTreeMap<String, i64>>,
}

/// The directions to walk, None if there is no way.
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteFound {
    pub to_name: String,
    pub steps: Option<Vec<String>>,
}

/// The shortest walk on the map: a breadth-first search, run as deferred
/// work (on a big map it takes a while; here it is the example).
pub fn find_route(ask: RouteAsked) -> RouteFound {
    let mut came_from: BTreeMap<i64, (i64, &str)> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([ask.from]);
    while let Some(room) = queue.pop_front() {
        if room == ask.to {
            break;
        }
        for (dir, &next) in ask.map.get(&room).into_iter().flatten() {
            if next != ask.from && !came_from.contains_key(&next) {
                came_from.insert(next, (room, dir));
                queue.push_back(next);
            }
        }
    }
    let mut steps = Vec::new();
    let mut at = ask.to;
    while at != ask.from {
        let Some(&(prev, dir)) = came_from.get(&at) else {
            return RouteFound {
                to_name: ask.to_name,
                steps: None,
            };
        };
        steps.push(dir.to_owned());
        at = prev;
    }
    steps.reverse();
    RouteFound {
        to_name: ask.to_name,
        steps: Some(steps),
    }
}

/// The demo. It keeps nothing in memory that the database does not have:
/// the start room is found again at each start.
#[derive(Default)]
pub struct Demo {
    start: Option<ObjectId>,
}

/// What `Room.Info` carries, as GMCP mappers (Mudlet's) expect it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RoomInfo {
    pub num: i64,
    pub name: String,
    pub area: String,
    pub exits: BTreeMap<String, i64>,
}

impl Game for Demo {
    fn setup(setup: &mut Setup<Self>) {
        setup
            .command(
                Spec::new(
                    "look",
                    "look [THING]",
                    "See where you are, or look at something.",
                )
                .aliases(&["l"]),
                Demo::look,
            )
            .command(
                Spec::new("say", "say TEXT", "Talk to everyone here (or 'TEXT).")
                    .aliases(&["'", "\""]),
                Demo::say,
            )
            .command(
                Spec::new(
                    "pose",
                    "pose ACTION",
                    "Act: pose waves becomes \"Alice waves\" (or :ACTION).",
                )
                .aliases(&[":", "emote"]),
                Demo::pose,
            )
            .command(
                Spec::new(
                    "go",
                    "go DIRECTION",
                    "Walk out by an exit (or just north, n, ...).",
                ),
                |demo, cx, dir| demo.go(cx, dir),
            )
            .command(
                Spec::new("inventory", "inventory", "What you carry.").aliases(&["i", "inv"]),
                Demo::inventory,
            )
            .command(
                Spec::new("get", "get THING", "Pick something up.").aliases(&["take"]),
                Demo::get,
            )
            .command(
                Spec::new("drop", "drop THING", "Put something down."),
                Demo::drop,
            )
            .command(
                Spec::new("rest", "rest", "Sit a while: walking tires you."),
                Demo::rest,
            )
            .command(
                Spec::new(
                    "brief",
                    "brief",
                    "Short room descriptions on or off (kept across reloads).",
                ),
                Demo::brief,
            )
            .command(
                Spec::new(
                    "route",
                    "route PLACE",
                    "The way from here to a place, by its name.",
                ),
                Demo::route,
            )
            .work("route", find_route, Demo::route_found)
            .timer("bell", Demo::bell)
            .timer("cat", Demo::cat);
        // One command per direction; a fn pointer each, so one per line.
        let walks: [(&str, &'static [&'static str], ev_server::CommandFn<Demo>); 6] = [
            ("north", &["n"], |d, cx, _| d.go(cx, "north")),
            ("south", &["s"], |d, cx, _| d.go(cx, "south")),
            ("east", &["e"], |d, cx, _| d.go(cx, "east")),
            ("west", &["w"], |d, cx, _| d.go(cx, "west")),
            ("up", &["u"], |d, cx, _| d.go(cx, "up")),
            ("down", &["d"], |d, cx, _| d.go(cx, "down")),
        ];
        for (name, aliases, run) in walks {
            setup.command(
                Spec::new(name, name, "Walk that way.")
                    .aliases(aliases)
                    .category("Movement"),
                run,
            );
        }
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            name: "rooms have an area",
            // Rooms built before areas existed belong to the town.
            sql: "INSERT OR IGNORE INTO attributes (object, key, value)
                  SELECT id, 'area', '\"Ev Town\"' FROM objects WHERE kind = 'room'",
        }]
    }

    fn on_start(&mut self, cx: &mut Context) -> Result<()> {
        self.start = match cx.all_of_kind("room").first() {
            Some(&first) => Some(first),
            None => Some(build(cx)?),
        };
        // Scheduled once, in the database: a reload finds them there.
        if !cx.scheduled("bell", None) {
            let since_hour = cx
                .now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                % HOUR.as_secs();
            let to_next = HOUR - Duration::from_secs(since_hour);
            cx.schedule(Timer::every(HOUR, "bell", Missed::Once).first_after(to_next))?;
        }
        if !cx.scheduled("cat", None) {
            cx.schedule(Timer::every(CAT_WANDERS, "cat", Missed::Once))?;
        }
        Ok(())
    }

    fn start_location(&self, _: &Context) -> Option<ObjectId> {
        self.start
    }

    fn on_login(&mut self, cx: &mut Context) -> Result<()> {
        // Back where it was when it left (the runtime has put a character
        // that is nowhere at the start meanwhile).
        if let Some(me) = cx.character()
            && let Some(room) = cx.get::<ObjectId>(me, LEFT_FROM)?
        {
            if cx.exists(room) {
                cx.move_to(me, Some(room))?;
            }
            cx.unset(me, LEFT_FROM)?;
        }
        self.show_room(cx)?;
        send_vitals(cx)?;
        if cx.login() != Some(Login::Takeover) {
            announce(cx, "has arrived.");
        }
        Ok(())
    }

    fn on_logout(&mut self, cx: &mut Context) -> Result<()> {
        announce(cx, "has left.");
        // Out of the world while away, as Evennia does with a character no
        // one plays: a room holds who is there, not everyone who ever
        // stopped in it, so listing a room stays as cheap as its company.
        if let Some(me) = cx.character()
            && let Some(room) = cx.location(me)
        {
            cx.set(me, LEFT_FROM, &room)?;
            cx.move_to(me, None)?;
        }
        Ok(())
    }
}

/// The moves `me` has left: all of them until it first walks.
fn moves_left(cx: &Context, me: ObjectId) -> Result<i64> {
    Ok(cx.get(me, "moves")?.unwrap_or(MAX_MOVES))
}

/// GMCP `Char.Vitals` for the typing session: what a client's gauges show.
fn send_vitals(cx: &mut Context) -> Result<()> {
    let (Some(me), Some(session)) = (cx.character(), cx.session()) else {
        return Ok(());
    };
    let mv = moves_left(cx, me)?;
    cx.oob(
        session,
        "Char.Vitals",
        &serde_json::json!({"mv": mv, "maxmv": MAX_MOVES}),
    )
}

/// Builds the world: Limbo, where new characters start, above a small
/// town. Gives Limbo.
fn build(cx: &mut Context) -> Result<ObjectId> {
    let room = |cx: &mut Context, name: &str, desc: &str| -> Result<ObjectId> {
        let id = cx.create("room", name, None)?;
        cx.set(id, "desc", desc)?;
        cx.set(id, "area", "Ev Town")?;
        Ok(id)
    };
    let limbo = room(
        cx,
        "Limbo",
        "A quiet grey space where new arrivals gather. Far below, through a shimmer of light, lies a town.",
    )?;
    let square = room(
        cx,
        "Town Square",
        "Cobbles worn smooth by many feet. A bell tower rises to the north, a market street runs east, an inn stands to the west and a garden gate opens to the south.",
    )?;
    let tower = room(
        cx,
        "Bell Tower",
        "A narrow stone room. A rope hangs from the bell high above, and stairs wind up into the dark.",
    )?;
    let belfry = room(
        cx,
        "Belfry",
        "Wind whistles around a great bronze bell. The whole town lies below.",
    )?;
    let market = room(
        cx,
        "Market Street",
        "Stalls lean together under striped awnings, smelling of bread and apples.",
    )?;
    let garden = room(
        cx,
        "Walled Garden",
        "Roses climb old brick walls around a sundial and a quiet pond.",
    )?;
    let inn = room(
        cx,
        "The Sleeping Cat Inn",
        "A low beamed room with a fire in the hearth and a cushion by it, much sat on.",
    )?;
    let link =
        |cx: &mut Context, from: ObjectId, dir: &str, to: ObjectId, back: &str| -> Result<()> {
            for (a, d, b) in [(from, dir, to), (to, back, from)] {
                let mut exits: Exits = cx.get(a, "exits")?.unwrap_or_default();
                exits.insert(d.to_owned(), b);
                cx.set(a, "exits", &exits)?;
            }
            Ok(())
        };
    link(cx, limbo, "down", square, "up")?;
    link(cx, square, "north", tower, "south")?;
    link(cx, tower, "up", belfry, "down")?;
    link(cx, square, "east", market, "west")?;
    link(cx, square, "south", garden, "north")?;
    link(cx, square, "west", inn, "east")?;
    let thing =
        |cx: &mut Context, kind: &str, name: &str, at: ObjectId, desc: &str| -> Result<ObjectId> {
            let id = cx.create(kind, name, Some(at))?;
            cx.set(id, "desc", desc)?;
            Ok(id)
        };
    thing(
        cx,
        "thing",
        "brass lantern",
        inn,
        "A dented brass lantern, still warm.",
    )?;
    thing(
        cx,
        "thing",
        "red apple",
        market,
        "Shiny, and only a little bruised.",
    )?;
    thing(
        cx,
        "thing",
        "iron key",
        garden,
        "Heavy and old. What does it open?",
    )?;
    thing(
        cx,
        "creature",
        "grey cat",
        inn,
        "A grey cat with one torn ear. It ignores you magnificently.",
    )?;
    Ok(limbo)
}

impl Demo {
    fn look(&mut self, cx: &mut Context, what: &str) -> Result<()> {
        if what.is_empty() {
            return self.show_room(cx);
        }
        let Some(me) = cx.character() else {
            return Ok(());
        };
        let here = cx.location(me);
        let found = here
            .map(|room| cx.find_in(room, what))
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| cx.find_in(me, what));
        match found.first() {
            Some(&thing) if cx.kind(thing) == "character" => {
                let text = if thing == me {
                    "You look yourself over. Presentable enough.".to_owned()
                } else {
                    format!("{} is here, looking back at you.", cx.name(thing))
                };
                cx.reply(&text);
            }
            Some(&thing) => {
                let desc: String = cx.get(thing, "desc")?.unwrap_or_default();
                let text = format!("{{bold}}{}{{/}}\n{}", escape(cx.name(thing)), escape(&desc));
                cx.reply(&text);
            }
            None => cx.reply(&format!("You see no '{}' here.", escape(what))),
        }
        Ok(())
    }

    /// The room, as `look` shows it, and its `Room.Info` for mappers.
    fn show_room(&mut self, cx: &mut Context) -> Result<()> {
        let Some(me) = cx.character() else {
            return Ok(());
        };
        let Some(room) = cx.location(me) else {
            cx.reply("You are nowhere at all.");
            return Ok(());
        };
        let brief: bool = cx.session_value("brief")?.unwrap_or(false);
        let exits: Exits = cx.get(room, "exits")?.unwrap_or_default();
        let mut lines = vec![format!(
            "{{bold}}{{cyan}}{}{{/}}{{/}}",
            escape(cx.name(room))
        )];
        if !brief {
            let desc: String = cx.get(room, "desc")?.unwrap_or_default();
            lines.push(escape(&desc));
        }
        // The runtime keeps the players apart: listing the things walks
        // what is not being played, not a crowd standing among them.
        let things: Vec<String> = cx
            .contents_except_players(room)
            .into_iter()
            .filter(|&o| cx.kind(o) != "character")
            .map(|o| format!("a {}", escape(cx.name(o))))
            .collect();
        if !things.is_empty() {
            lines.push(format!("You see {}.", things.join(", ")));
        }
        let dirs: Vec<String> = exits.keys().map(|d| send_link(d, d)).collect();
        lines.push(if dirs.is_empty() {
            "There is no way out.".to_owned()
        } else {
            format!("{{green}}Exits: {}{{/}}", dirs.join(", "))
        });
        let others = cx.players_in(room);
        let mut names: Vec<&str> = others
            .iter()
            .filter(|&&c| c != me)
            .map(|&c| cx.name(c))
            .collect();
        sort_names(&mut names, cx.crowd_size());
        lines.push(if names.is_empty() {
            "You are alone here.".to_owned()
        } else {
            format!("Here: {}", name_list(&names, cx.crowd_size()))
        });
        cx.reply(&lines.join("\n"));
        let info = RoomInfo {
            num: room.0,
            name: cx.name(room).to_owned(),
            area: cx.get(room, "area")?.unwrap_or_default(),
            exits: exits.iter().map(|(d, r)| (d.clone(), r.0)).collect(),
        };
        if let Some(session) = cx.session() {
            cx.oob(session, "Room.Info", &info)?;
        }
        Ok(())
    }

    fn rest(&mut self, cx: &mut Context, _: &str) -> Result<()> {
        let Some(me) = cx.character() else {
            return Ok(());
        };
        if moves_left(cx, me)? >= MAX_MOVES {
            cx.reply("You are rested already.");
        } else {
            cx.set(me, "moves", &MAX_MOVES)?;
            cx.reply("You sit a while and rest your feet. You could walk for miles.");
        }
        send_vitals(cx)
    }

    fn say(&mut self, cx: &mut Context, text: &str) -> Result<()> {
        let text = text.trim();
        let (Some(me), false) = (cx.character(), text.is_empty()) else {
            cx.reply("Say what?");
            return Ok(());
        };
        let text = escape(text);
        cx.reply(&format!("You say, \"{text}\""));
        if let Some(room) = cx.location(me) {
            let heard = format!("{} says, \"{text}\"", cx.name(me));
            cx.tell_room(room, &[me], &heard);
        }
        Ok(())
    }

    fn pose(&mut self, cx: &mut Context, action: &str) -> Result<()> {
        let action = action.trim();
        let (Some(me), false) = (cx.character(), action.is_empty()) else {
            cx.reply("Pose what? Try: pose waves.");
            return Ok(());
        };
        let seen = format!("{} {}", cx.name(me), escape(action));
        cx.reply(&seen);
        if let Some(room) = cx.location(me) {
            cx.tell_room(room, &[me], &seen);
        }
        Ok(())
    }

    fn go(&mut self, cx: &mut Context, dir: &str) -> Result<()> {
        let Some(me) = cx.character() else {
            return Ok(());
        };
        let dir = dir.trim().to_lowercase();
        let dir = DIRECTIONS
            .iter()
            .find(|(name, short)| *name == dir || *short == dir)
            .map_or(dir.as_str(), |(name, _)| name);
        let Some(from) = cx.location(me) else {
            cx.reply("You are nowhere; there is nowhere to go.");
            return Ok(());
        };
        let exits: Exits = cx.get(from, "exits")?.unwrap_or_default();
        let Some(&to) = exits.get(dir) else {
            cx.reply("You can't go that way.");
            return Ok(());
        };
        let moves = moves_left(cx, me)?;
        if moves <= 0 {
            cx.reply("You are too tired to walk on. Rest a while first.");
            return Ok(());
        }
        cx.set(me, "moves", &(moves - 1))?;
        send_vitals(cx)?;
        let name = cx.name(me).to_owned();
        let crowd = cx.crowd_size();
        if cx.player_count_in(from) <= crowd {
            cx.tell_room(from, &[me], &format!("{name} leaves {dir}."));
        }
        cx.move_to(me, Some(to))?;
        if cx.player_count_in(to) <= crowd {
            cx.tell_room(to, &[me], &format!("{name} arrives."));
        }
        self.show_room(cx)
    }

    /// `route PLACE`: the map goes to [`find_route`] as deferred work, so a
    /// search over a big world never holds up anyone's commands.
    fn route(&mut self, cx: &mut Context, place: &str) -> Result<()> {
        let place = place.trim().to_lowercase();
        let (Some(me), false) = (cx.character(), place.is_empty()) else {
            cx.reply("Route to where? Try: route market.");
            return Ok(());
        };
        let Some(from) = cx.location(me) else {
            cx.reply("You are nowhere; there is no way from here.");
            return Ok(());
        };
        let rooms = cx.all_of_kind("room");
        let Some(&to) = rooms
            .iter()
            .find(|&&r| cx.name(r).to_lowercase().contains(&place))
        else {
            cx.reply(&format!(
                "You know of no place called '{}'.",
                escape(&place)
            ));
            return Ok(());
        };
        let mut map = BTreeMap::new();
        for room in rooms {
            let exits: Exits = cx.get(room, "exits")?.unwrap_or_default();
            map.insert(room.0, exits.into_iter().map(|(d, r)| (d, r.0)).collect());
        }
        let ask = RouteAsked {
            from: from.0,
            to: to.0,
            to_name: cx.name(to).to_owned(),
            map,
        };
        cx.defer("route", &ask)
    }

    fn route_found(&mut self, cx: &mut Context, found: &ev_server::Finished) -> Result<()> {
        let found: RouteFound = found.output()?;
        let to = escape(&found.to_name);
        cx.reply(&match found.steps {
            None => format!("You know of no way to {to} from here."),
            Some(steps) if steps.is_empty() => format!("You are at {to}."),
            Some(steps) => format!("The way to {to}: {}.", steps.join(", ")),
        });
        Ok(())
    }

    fn inventory(&mut self, cx: &mut Context, _: &str) -> Result<()> {
        let Some(me) = cx.character() else {
            return Ok(());
        };
        let held: Vec<String> = cx
            .contents(me)
            .into_iter()
            .map(|o| format!("  a {}", escape(cx.name(o))))
            .collect();
        if held.is_empty() {
            cx.reply("You carry nothing.");
        } else {
            cx.reply(&format!("You carry:\n{}", held.join("\n")));
        }
        Ok(())
    }

    fn get(&mut self, cx: &mut Context, what: &str) -> Result<()> {
        let (Some(me), Some(room)) = (cx.character(), cx.character().and_then(|c| cx.location(c)))
        else {
            return Ok(());
        };
        if what.trim().is_empty() {
            cx.reply("Get what?");
            return Ok(());
        }
        let Some(&thing) = cx.find_in(room, what).first() else {
            cx.reply(&format!("You see no '{}' here.", escape(what)));
            return Ok(());
        };
        match cx.kind(thing) {
            "thing" => {
                cx.move_to(thing, Some(me))?;
                let name = escape(cx.name(thing));
                cx.reply(&format!("You pick up the {name}."));
                let seen = format!("{} picks up the {name}.", cx.name(me));
                cx.tell_room(room, &[me], &seen);
            }
            "creature" => cx.reply(&format!(
                "The {} slips out of reach.",
                escape(cx.name(thing))
            )),
            _ => cx.reply("You can't take that."),
        }
        Ok(())
    }

    fn drop(&mut self, cx: &mut Context, what: &str) -> Result<()> {
        let (Some(me), Some(room)) = (cx.character(), cx.character().and_then(|c| cx.location(c)))
        else {
            return Ok(());
        };
        let Some(&thing) = cx.find_in(me, what).first() else {
            cx.reply(&format!("You carry no '{}'.", escape(what)));
            return Ok(());
        };
        cx.move_to(thing, Some(room))?;
        let name = escape(cx.name(thing));
        cx.reply(&format!("You drop the {name}."));
        let seen = format!("{} drops the {name}.", cx.name(me));
        cx.tell_room(room, &[me], &seen);
        Ok(())
    }

    fn brief(&mut self, cx: &mut Context, _: &str) -> Result<()> {
        let brief = !cx.session_value::<bool>("brief")?.unwrap_or(false);
        cx.set_session_value("brief", &brief)?;
        cx.reply(if brief {
            "Brief mode on: room descriptions are left out."
        } else {
            "Brief mode off: rooms are described in full."
        });
        Ok(())
    }

    /// On the hour: everyone hears the bell strike the hour it is now
    /// (after hours when no server ran, once: `Missed::Once`).
    fn bell(&mut self, cx: &mut Context, _: &Fired) -> Result<()> {
        let hours = cx
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / HOUR.as_secs();
        let strokes = match hours % 12 {
            0 => 12,
            n => n,
        };
        let times = if strokes == 1 {
            "once".to_owned()
        } else {
            format!("{strokes} times")
        };
        let text = format!("{{yellow}}The bell in the tower tolls {times}.{{/}}");
        cx.tell_all(&text);
        Ok(())
    }

    /// The cat pads to a room next to where it is.
    fn cat(&mut self, cx: &mut Context, fired: &Fired) -> Result<()> {
        let Some(&cat) = cx.all_of_kind("creature").first() else {
            return Ok(());
        };
        let Some(from) = cx.location(cat).or(self.start) else {
            return Ok(());
        };
        let exits: Exits = cx.get(from, "exits")?.unwrap_or_default();
        if exits.is_empty() {
            return Ok(());
        }
        // Which way: from the due time, so a replayed firing goes the same way.
        let pick = (fired
            .due
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / CAT_WANDERS.as_secs().max(1)) as usize
            % exits.len();
        let Some((dir, &to)) = exits.iter().nth(pick) else {
            return Ok(());
        };
        let dir = dir.clone();
        cx.tell_room(from, &[], &format!("The grey cat pads away {dir}."));
        cx.move_to(cat, Some(to))?;
        cx.tell_room(to, &[], "A grey cat pads in and looks about, unimpressed.");
        Ok(())
    }
}

/// "NAME has arrived." to the rest of the room, unless it is a crowd.
fn announce(cx: &mut Context, what: &str) {
    let (Some(me), Some(room)) = (cx.character(), cx.character().and_then(|c| cx.location(c)))
    else {
        return;
    };
    let others = cx.player_count_in(room).saturating_sub(1);
    if others < cx.crowd_size() {
        let text = format!("{} {what}", cx.name(me));
        cx.tell_room(room, &[me], &text);
    }
}

#[cfg(test)]
mod tests;
