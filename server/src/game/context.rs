//! [`Context`]: everything a game's code may do, over the transaction of
//! the input, timer or hook that runs it.

use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{Error, Result};
use super::objects::{Object, ObjectId};
use super::registry::Level;
use super::timers::Timer;
use super::{Outbox, State};
use crate::event::{Form, Oob, PortalSession, SessionId, TextKind};
use crate::store::Tx;

/// The most a session's values ([`Context::set_session_value`]) may take,
/// as JSON: they travel in every snapshot of the session.
pub const MAX_SESSION_VALUES_BYTES: usize = 16 * 1024;

/// What a game's code works with. Text it sends is ev markup
/// ([`crate::markup`]): escape what players typed with
/// [`markup::escape`](crate::markup::escape) before putting it in.
///
/// Everything below happens in the transaction of the input (or timer, or
/// hook) being run: if it is not committed, none of it happened.
///
/// ```
/// use ev_server::markup::escape;
/// use ev_server::{Context, ObjectId, Result};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Default)]
/// struct Vitals {
///     hp: u32,
///     max: u32,
/// }
///
/// /// `drink`: the player's potion heals them; the room sees it.
/// fn drink(cx: &mut Context, what: &str) -> Result<()> {
///     let Some(me) = cx.character() else { return Ok(()) };
///     // Objects the character holds, found by a word of their name.
///     let Some(&potion) = cx.find_in(me, what).first() else {
///         cx.reply(&format!("You have no '{}'.", escape(what)));
///         return Ok(());
///     };
///     // Typed attributes: any serde type, stored as JSON.
///     let mut vitals: Vitals = cx.get(me, "vitals")?.unwrap_or_default();
///     vitals.hp = (vitals.hp + 10).min(vitals.max);
///     cx.set(me, "vitals", &vitals)?;
///     cx.destroy(potion)?;
///     cx.reply("{green}You feel better.{/}");
///     if let Some(room) = cx.location(me) {
///         let seen = format!("{} drinks a potion.", cx.name(me));
///         cx.tell_room(room, &[me], &seen);
///     }
///     // The same numbers for the client's gauges (GMCP Char.Vitals).
///     if let Some(session) = cx.session() {
///         cx.oob(session, "Char.Vitals", &vitals)?;
///     }
///     // Kept with this session across reloads, no table needed.
///     cx.set_session_value("last_drink", what)?;
///     Ok(())
/// }
/// # let _: fn(&mut Context, &str) -> Result<()> = drink;
/// # let _ = ObjectId(0);
/// ```
pub struct Context<'a> {
    pub(crate) state: &'a mut State,
    pub(crate) tx: &'a Tx<'a>,
    pub(crate) out: &'a mut Outbox,
    pub(crate) actor: Option<SessionId>,
    /// In `on_login`: how the session came to play.
    pub(crate) login: Option<super::Login>,
}

impl<'a> Context<'a> {
    // === who ===

    /// The session whose input (or login, or logout) this is; None in a
    /// timer or `on_start`.
    pub fn session(&self) -> Option<SessionId> {
        self.actor
    }

    /// In [`Game::on_login`](crate::Game::on_login): how the session came
    /// to play (a new account, a returning one, a takeover).
    pub fn login(&self) -> Option<super::Login> {
        self.login
    }

    /// The character the session plays, if it plays one.
    pub fn character(&self) -> Option<ObjectId> {
        self.character_of(self.actor?)
    }

    /// The character a session plays.
    pub fn character_of(&self, session: SessionId) -> Option<ObjectId> {
        let ch = self.state.sessions.get(&session)?.character.as_ref()?;
        Some(ObjectId(ch.id))
    }

    /// The account of the session, if logged in.
    pub fn account(&self) -> Option<i64> {
        let ch = self.state.sessions.get(&self.actor?)?.character.as_ref()?;
        Some(ch.account_id)
    }

    /// The permission level of the session (Player when not logged in).
    pub fn level(&self) -> Level {
        self.actor
            .and_then(|id| self.state.sessions.get(&id))
            .map_or(Level::Player, |s| s.level)
    }

    /// What the portal knows of the session's client: its name, window
    /// size, character set, capabilities.
    pub fn client(&self) -> Option<&PortalSession> {
        Some(&self.state.sessions.get(&self.actor?)?.client)
    }

    /// The session playing `character`, if it is online.
    pub fn session_of(&self, character: ObjectId) -> Option<SessionId> {
        self.state.playing.get(&character).copied()
    }

    /// Every playing session and its character, in no order.
    pub fn online(&self) -> impl Iterator<Item = (SessionId, ObjectId)> + '_ {
        self.state.playing.iter().map(|(ch, s)| (*s, *ch))
    }

    /// How many sessions play.
    pub fn online_count(&self) -> usize {
        self.state.playing.len()
    }

    /// The characters in `place` whose players are online, in id order.
    /// The runtime keeps them apart from what else the place holds, so this
    /// costs what they do, however many others are there.
    pub fn players_in(&self, place: ObjectId) -> Vec<ObjectId> {
        self.state.objects.players_in(place).collect()
    }

    /// How many characters in `place` have their players online: what
    /// [`players_in`](Self::players_in) would list, counted without
    /// listing them, so a crowd check costs the same in any crowd.
    ///
    /// ```
    /// # use ev_server::{Context, ObjectId};
    /// /// "NAME has arrived." to the room, unless it is a crowd.
    /// fn arrive(cx: &mut Context, me: ObjectId, room: ObjectId) {
    ///     let others = cx.player_count_in(room).saturating_sub(1);
    ///     if others < cx.crowd_size() {
    ///         let text = format!("{} has arrived.", cx.name(me));
    ///         cx.tell_room(room, &[me], &text);
    ///     }
    /// }
    /// # let _: fn(&mut Context, ObjectId, ObjectId) = arrive;
    /// ```
    pub fn player_count_in(&self, place: ObjectId) -> usize {
        self.state.objects.player_count_in(place)
    }

    /// What `place` holds besides the characters whose players are online
    /// (its things, creatures, and characters whose players are away), in
    /// id order: what a room shows as its things, found without walking
    /// a crowd. With [`players_in`](Self::players_in) it makes up
    /// [`contents`](Self::contents).
    ///
    /// ```
    /// # use ev_server::{Context, ObjectId};
    /// /// "You see a lantern, a cat." and who is here, for `look`.
    /// fn describe(cx: &Context, room: ObjectId) -> String {
    ///     let things: Vec<String> = cx
    ///         .contents_except_players(room)
    ///         .into_iter()
    ///         .map(|o| format!("a {}", cx.name(o)))
    ///         .collect();
    ///     let players = cx.player_count_in(room);
    ///     format!("You see {}. {players} here.", things.join(", "))
    /// }
    /// # let _: fn(&Context, ObjectId) -> String = describe;
    /// ```
    pub fn contents_except_players(&self, place: ObjectId) -> Vec<ObjectId> {
        self.state.objects.contents_except_players(place).collect()
    }

    /// `game.crowd_size`: past it, a game should stop announcing each
    /// coming and going and cut name lists short.
    pub fn crowd_size(&self) -> usize {
        self.state.crowd_size
    }

    /// Now, by the game's clock (the test kit moves it by hand).
    pub fn now(&self) -> SystemTime {
        self.state.now()
    }

    // === saying things ===

    /// A line to the session whose input this is.
    pub fn reply(&mut self, text: &str) {
        if let Some(id) = self.actor {
            self.send(id, text);
        }
    }

    /// A line to a session.
    pub fn send(&mut self, session: SessionId, text: &str) {
        self.out.text(session, text, Form::LINE);
    }

    /// A prompt (no line end) to the session whose input this is.
    pub fn prompt(&mut self, text: &str) {
        if let Some(id) = self.actor {
            self.out.text(
                id,
                text,
                Form {
                    markup: true,
                    kind: TextKind::Prompt,
                },
            );
        }
    }

    /// A prompt whose answer the client does not show (a password).
    pub fn secret_prompt(&mut self, text: &str) {
        if let Some(id) = self.actor {
            self.out.text(
                id,
                text,
                Form {
                    markup: true,
                    kind: TextKind::Secret,
                },
            );
        }
    }

    /// A line to whoever plays `character`, wherever it is; nothing if
    /// nobody does.
    pub fn tell(&mut self, character: ObjectId, text: &str) {
        if let Some(session) = self.session_of(character) {
            self.send(session, text);
        }
    }

    /// A line to every player in `place` but those in `except`.
    pub fn tell_room(&mut self, place: ObjectId, except: &[ObjectId], text: &str) {
        let state = &*self.state;
        for ch in state.objects.players_in(place) {
            if !except.contains(&ch)
                && let Some(&session) = state.playing.get(&ch)
            {
                self.out.text(session, text, Form::LINE);
            }
        }
    }

    /// A line to every playing session.
    pub fn tell_all(&mut self, text: &str) {
        let sessions: Vec<SessionId> = self.state.playing.values().copied().collect();
        for session in sessions {
            self.send(session, text);
        }
    }

    /// Out-of-band data to a session, beside its text (telnet clients get
    /// it as GMCP or MSDP): a name like "Char.Vitals" and any serializable
    /// value.
    pub fn oob<T: Serialize>(&mut self, session: SessionId, name: &str, data: &T) -> Result<()> {
        let data = serde_json::to_string(data).map_err(|source| Error::Value {
            key: name.to_owned(),
            source,
        })?;
        self.out.oob(
            session,
            Oob {
                name: name.to_owned(),
                data,
            },
        );
        Ok(())
    }

    // === objects ===

    /// Makes an object; `kind` is the game's to choose ("room", "thing").
    pub fn create(
        &mut self,
        kind: &str,
        name: &str,
        location: Option<ObjectId>,
    ) -> Result<ObjectId> {
        let id = ObjectId(self.tx.create_object(kind, name, location.map(|l| l.0))?);
        self.state.objects.insert(
            id,
            Object {
                kind: kind.into(),
                name: name.to_owned(),
                location,
                attributes: Default::default(),
            },
        );
        Ok(id)
    }

    pub fn exists(&self, id: ObjectId) -> bool {
        self.state.objects.get(id).is_some()
    }

    /// Its name; "" if there is no such object.
    pub fn name(&self, id: ObjectId) -> &str {
        self.state.objects.get(id).map_or("", |o| o.name.as_str())
    }

    /// Its kind; "" if there is no such object.
    pub fn kind(&self, id: ObjectId) -> &str {
        self.state.objects.get(id).map_or("", |o| &o.kind)
    }

    pub fn location(&self, id: ObjectId) -> Option<ObjectId> {
        self.state.objects.get(id)?.location
    }

    /// What `id` holds, in id order.
    pub fn contents(&self, id: ObjectId) -> Vec<ObjectId> {
        self.state.objects.contents(id).collect()
    }

    /// Every object of a kind, in id order.
    pub fn all_of_kind(&self, kind: &str) -> Vec<ObjectId> {
        self.state.objects.of_kind(kind).collect()
    }

    /// The objects in `place` whose name starts with `word` (any case),
    /// exact names first.
    pub fn find_in(&self, place: ObjectId, word: &str) -> Vec<ObjectId> {
        let word = word.trim().to_lowercase();
        if word.is_empty() {
            return Vec::new();
        }
        let mut exact = Vec::new();
        let mut prefix = Vec::new();
        for id in self.state.objects.contents(place) {
            let name = self.name(id).to_lowercase();
            if name == word {
                exact.push(id);
            } else if name.starts_with(&word) || name.split(' ').any(|w| w.starts_with(&word)) {
                prefix.push(id);
            }
        }
        if exact.is_empty() { prefix } else { exact }
    }

    /// Moves an object (a character too) into `to`, or nowhere.
    pub fn move_to(&mut self, id: ObjectId, to: Option<ObjectId>) -> Result<()> {
        if !self.exists(id) {
            return Err(Error::NoObject(id));
        }
        self.tx.move_object(id.0, to.map(|t| t.0))?;
        self.state.objects.set_location(id, to);
        Ok(())
    }

    pub fn rename(&mut self, id: ObjectId, name: &str) -> Result<()> {
        let Some(object) = self.state.objects.get_mut(id) else {
            return Err(Error::NoObject(id));
        };
        object.name = name.to_owned();
        self.tx.rename_object(id.0, name)?;
        Ok(())
    }

    /// Destroys an object (not a character), its attributes and timers;
    /// what it held is left nowhere.
    pub fn destroy(&mut self, id: ObjectId) -> Result<()> {
        if !self.exists(id) || self.kind(id) == "character" {
            return Err(Error::NoObject(id));
        }
        self.tx.destroy_object(id.0)?;
        self.state.objects.remove(id);
        self.state.timers.forget_object(id);
        Ok(())
    }

    /// A typed attribute; None if not set.
    pub fn get<T: DeserializeOwned>(&self, id: ObjectId, key: &str) -> Result<Option<T>> {
        let Some(value) = self
            .state
            .objects
            .get(id)
            .and_then(|o| o.attributes.get(key))
        else {
            return Ok(None);
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|source| Error::Value {
                key: key.to_owned(),
                source,
            })
    }

    /// Sets an attribute to any serializable value.
    pub fn set<T: Serialize + ?Sized>(&mut self, id: ObjectId, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|source| Error::Value {
            key: key.to_owned(),
            source,
        })?;
        let Some(object) = self.state.objects.get_mut(id) else {
            return Err(Error::NoObject(id));
        };
        self.tx.set_attribute(id.0, key, &value.to_string())?;
        object.attributes.insert(key.into(), value);
        Ok(())
    }

    /// Removes an attribute.
    pub fn unset(&mut self, id: ObjectId, key: &str) -> Result<()> {
        if let Some(object) = self.state.objects.get_mut(id)
            && object.attributes.remove(key).is_some()
        {
            self.tx.unset_attribute(id.0, key)?;
        }
        Ok(())
    }

    // === timers ===

    /// Schedules a timer, in this transaction: if this input is not
    /// committed, the timer does not exist either.
    pub fn schedule(&mut self, timer: Timer) -> Result<()> {
        let now = self.now();
        self.state.timers.schedule(self.tx, timer, now)?;
        Ok(())
    }

    /// Cancels the timers of this name (about `object`, if given); gives
    /// how many there were.
    pub fn cancel(&mut self, name: &str, object: Option<ObjectId>) -> Result<usize> {
        Ok(self.state.timers.cancel(self.tx, name, object)?)
    }

    /// Whether a timer of this name is scheduled (about `object`, if given).
    pub fn scheduled(&self, name: &str, object: Option<ObjectId>) -> bool {
        self.state.timers.has(name, object)
    }

    // === deferred work ===

    /// Runs the work registered as `name` ([`Setup::work`](crate::Setup::work))
    /// on `input`, off the engine's thread, once this transaction commits;
    /// its `then` handler gets the result later, in a transaction of its
    /// own, with this session (if still connected) as its session. Nothing
    /// is deferred if this transaction is not committed.
    ///
    /// Errors when no work has that name, or when `server.max_deferred`
    /// pieces of work are already waiting.
    pub fn defer<I: Serialize + ?Sized>(&mut self, name: &str, input: &I) -> Result<()> {
        let pending = &self.state.deferred;
        if !pending.names.contains(name) {
            return Err(Error::Other(format!(
                "no work is registered as {name:?} (Setup::work)"
            )));
        }
        if pending.rows.len() >= pending.max {
            return Err(Error::Other(format!(
                "{} pieces of deferred work are waiting already (server.max_deferred)",
                pending.rows.len()
            )));
        }
        let input = serde_json::to_value(input).map_err(|source| Error::Value {
            key: format!("input of work {name}"),
            source,
        })?;
        let id = self
            .tx
            .defer(name, self.actor.map(|s| s.0 as i64), &input.to_string())?;
        self.state
            .deferred
            .rows
            .insert(id, (name.to_owned(), self.actor));
        self.out.deferred.push(super::deferred::Deferred {
            id,
            name: name.to_owned(),
            input,
        });
        Ok(())
    }

    // === per-session values ===

    /// A value kept with the session across reloads and crashes (without a
    /// table: it travels in the session's snapshot); None if not set.
    pub fn session_value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(value) = self
            .actor
            .and_then(|id| self.state.sessions.get(&id))
            .and_then(|s| s.values.get(key))
        else {
            return Ok(None);
        };
        typed(value, key)
    }

    /// Keeps a value with the session. All of a session's values together
    /// may take [`MAX_SESSION_VALUES_BYTES`] as JSON.
    pub fn set_session_value<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|source| Error::Value {
            key: key.to_owned(),
            source,
        })?;
        let Some(session) = self.actor.and_then(|id| self.state.sessions.get_mut(&id)) else {
            return Ok(());
        };
        let old = session.values.insert(key.to_owned(), value);
        let size = serde_json::to_vec(&session.values).map_or(usize::MAX, |v| v.len());
        if size > MAX_SESSION_VALUES_BYTES {
            match old {
                Some(old) => session.values.insert(key.to_owned(), old),
                None => session.values.remove(key),
            };
            return Err(Error::Other(format!(
                "session values would take {size} bytes, over {MAX_SESSION_VALUES_BYTES}"
            )));
        }
        if !session.values_changed {
            session.values_changed = true;
            if let Some(id) = self.actor {
                self.state.values_changed.push(id);
            }
        }
        Ok(())
    }
}

/// A stored value as the type asked for; the error names its key.
fn typed<T: DeserializeOwned>(value: &serde_json::Value, key: &str) -> Result<Option<T>> {
    T::deserialize(value)
        .map(Some)
        .map_err(|source| Error::Value {
            key: key.to_owned(),
            source,
        })
}
