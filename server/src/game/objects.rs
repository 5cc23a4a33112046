//! The object cache: every object of the game in memory, written through
//! to the store in the transaction of the command that changed it.
//!
//! Loaded once, by the first transaction of the server that serves (never by
//! a standby, which must not read a world the active server still changes).
//! A commit that fails on storage is retried with the same writes (see
//! `store::outage`), so the cache never runs ahead of what will be stored.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::idmap::{IdMap, IdSet};
use crate::store::{StoreError, Tx, WorldChanges, WorldReader};

/// An object of the game: a room, a thing, a character (whose id is its
/// character's). Stored in attributes as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(pub i64);

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// Shared by every object of the kind (see [`Loader`]).
    pub kind: Arc<str>,
    pub name: String,
    pub location: Option<ObjectId>,
    pub attributes: Attributes,
}

/// An object's attributes: a few per object, so a list searched in order
/// (a map's node took some 600 bytes per object at 100,000 objects). A
/// loaded world shares each key's text (see [`Loader`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attributes(Vec<(Arc<str>, serde_json::Value)>);

impl Attributes {
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| **k == *key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: Arc<str>, value: serde_json::Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// An attribute as stored (JSON text) of object `id`; one that does not
    /// parse is logged and skipped.
    fn set_stored(&mut self, id: ObjectId, key: Arc<str>, value: &str) {
        match serde_json::from_str(value) {
            Ok(value) => self.insert(key, value),
            Err(e) => tracing::error!(object = id.0, %key, "unreadable attribute skipped: {e}"),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<serde_json::Value> {
        let i = self.0.iter().position(|(k, _)| **k == *key)?;
        Some(self.0.swap_remove(i).1)
    }

    /// In key order, for a test to compare.
    #[cfg(test)]
    fn sorted(&self) -> Vec<&(Arc<str>, serde_json::Value)> {
        let mut all: Vec<_> = self.0.iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[derive(Debug, Default)]
pub(crate) struct Objects {
    all: IdMap<ObjectId, Object>,
    /// What each object holds, in id order (so listings are stable).
    contents: IdMap<ObjectId, Held>,
    by_kind: HashMap<Arc<str>, BTreeSet<ObjectId>>,
    /// The characters being played: `State::playing`'s, told here by
    /// `State` (never changed otherwise) so that every move files the
    /// mover on the right side of [`Held`].
    played: IdSet<ObjectId>,
}

/// What an object holds, the characters being played apart from the rest:
/// a room where ten thousand stand lists who is there, or what else is,
/// at what that costs, never by walking the other.
#[derive(Debug, Default)]
struct Held {
    players: BTreeSet<ObjectId>,
    rest: BTreeSet<ObjectId>,
}

/// Builds the cache from the store's rows, each object whole before it is
/// filed: the objects of a kind share its text, and so do the attributes
/// of a key, which spares a big world an allocation for each (and the
/// memory).
#[derive(Default)]
struct Loader {
    objects: Objects,
    /// The object whose attributes come now.
    building: Option<(ObjectId, Object)>,
    keys: HashSet<Arc<str>>,
}

impl Loader {
    fn file(&mut self) {
        if let Some((id, object)) = self.building.take() {
            self.objects.insert(id, object);
        }
    }

    fn finish(mut self) -> Objects {
        self.file();
        self.objects
    }
}

impl WorldReader for Loader {
    fn reserve(&mut self, objects: usize) {
        self.objects.all.reserve(objects);
    }

    fn object(&mut self, id: i64, kind: &str, name: &str, location: Option<i64>) {
        self.file();
        let object = Object {
            kind: self.objects.kind_text(kind),
            name: name.to_owned(),
            location: location.map(ObjectId),
            attributes: Attributes::default(),
        };
        self.building = Some((ObjectId(id), object));
    }

    fn attribute(&mut self, key: &str, value: &str) {
        let Some((id, object)) = &mut self.building else {
            return;
        };
        let key = match self.keys.get(key) {
            Some(key) => key.clone(),
            None => {
                let key: Arc<str> = key.into();
                self.keys.insert(key.clone());
                key
            }
        };
        object.attributes.set_stored(*id, key, value);
    }
}

impl Held {
    fn side(&mut self, played: bool) -> &mut BTreeSet<ObjectId> {
        if played {
            &mut self.players
        } else {
            &mut self.rest
        }
    }

    fn is_empty(&self) -> bool {
        self.players.is_empty() && self.rest.is_empty()
    }

    /// Both sides, merged back into id order.
    fn all(&self) -> impl Iterator<Item = ObjectId> + '_ {
        let mut players = self.players.iter().copied().peekable();
        let mut rest = self.rest.iter().copied().peekable();
        std::iter::from_fn(move || match (players.peek(), rest.peek()) {
            (Some(p), Some(r)) if r < p => rest.next(),
            (Some(_), _) => players.next(),
            (None, _) => rest.next(),
        })
    }
}

impl Objects {
    /// The world as `tx` sees it.
    pub fn load(tx: &Tx) -> Result<Objects, StoreError> {
        let mut loader = Loader::default();
        tx.read_world(&mut loader)?;
        Ok(loader.finish())
    }

    /// The world as the database holds it, read without writing (a
    /// standby's read ahead); and its revision.
    pub fn read(store: &crate::store::Store) -> Result<(Objects, i64), StoreError> {
        let mut loader = Loader::default();
        let rev = store.read_world(&mut loader)?;
        Ok((loader.finish(), rev))
    }

    /// Brings a world loaded ahead (by a standby) up to date.
    pub fn apply(&mut self, changes: WorldChanges) {
        for (id, key) in changes.deleted {
            match key {
                None => self.remove(ObjectId(id)),
                Some(key) => {
                    if let Some(o) = self.all.get_mut(&ObjectId(id)) {
                        o.attributes.remove(&key);
                    }
                }
            }
        }
        for row in changes.objects {
            let kind = self.kind_text(&row.kind);
            self.upsert(row.id, kind, row.name, row.location);
        }
        for (id, key, value) in changes.attributes {
            self.set_stored(id, key.into(), &value);
        }
    }

    /// `kind`'s text as the objects of that kind share it.
    fn kind_text(&self, kind: &str) -> Arc<str> {
        match self.by_kind.get_key_value(kind) {
            Some((text, _)) => text.clone(),
            None => kind.into(),
        }
    }

    /// An object as stored: added, or its kind, name and place updated.
    fn upsert(&mut self, id: i64, kind: Arc<str>, name: String, location: Option<i64>) {
        let id = ObjectId(id);
        let location = location.map(ObjectId);
        match self.all.get_mut(&id) {
            Some(o) => {
                if o.kind != kind {
                    if let Some(set) = self.by_kind.get_mut(&o.kind) {
                        set.remove(&id);
                    }
                    self.by_kind.entry(kind.clone()).or_default().insert(id);
                    o.kind = kind;
                }
                o.name = name;
                self.set_location(id, location);
            }
            None => self.insert(
                id,
                Object {
                    kind,
                    name,
                    location,
                    attributes: Attributes::default(),
                },
            ),
        }
    }

    /// An attribute as stored (JSON text).
    fn set_stored(&mut self, id: i64, key: Arc<str>, value: &str) {
        let id = ObjectId(id);
        if let Some(object) = self.all.get_mut(&id) {
            object.attributes.set_stored(id, key, value);
        }
    }

    /// Every object with its attributes, in id order, for a test to compare.
    #[cfg(test)]
    pub fn dump(&self) -> Vec<String> {
        let mut ids: Vec<&ObjectId> = self.all.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let o = &self.all[id];
                let held: Vec<ObjectId> = self.contents(*id).collect();
                format!(
                    "{id} {} {:?} at {:?} holds {held:?} {:?}",
                    o.kind,
                    o.name,
                    o.location,
                    o.attributes.sorted()
                )
            })
            .collect()
    }

    /// What the index of who holds what, and which of it is played, gets
    /// wrong, against one computed from scratch from every object's
    /// location and `playing`: for a test to check.
    #[cfg(test)]
    pub fn index_errors(&self, playing: impl IntoIterator<Item = ObjectId>) -> Vec<String> {
        use std::collections::BTreeMap;
        type Sides = (BTreeSet<ObjectId>, BTreeSet<ObjectId>);
        let playing: BTreeSet<ObjectId> = playing.into_iter().collect();
        let played: BTreeSet<ObjectId> = self.played.iter().copied().collect();
        let mut errors = Vec::new();
        if played != playing {
            errors.push(format!("played {played:?}, but playing {playing:?}"));
        }
        let mut expected: BTreeMap<ObjectId, Sides> = BTreeMap::new();
        for (&id, o) in &self.all {
            if let Some(at) = o.location {
                let (players, rest) = expected.entry(at).or_default();
                if playing.contains(&id) {
                    players.insert(id);
                } else {
                    rest.insert(id);
                }
            }
        }
        let indexed: BTreeMap<ObjectId, Sides> = self
            .contents
            .iter()
            .map(|(&at, held)| (at, (held.players.clone(), held.rest.clone())))
            .collect();
        for (at, sides) in &expected {
            if indexed.get(at) != Some(sides) {
                errors.push(format!(
                    "{at} holds {sides:?}, indexed {:?}",
                    indexed.get(at)
                ));
            }
        }
        for (at, sides) in &indexed {
            if !expected.contains_key(at) {
                errors.push(format!("{at} holds nothing, indexed {sides:?}"));
            }
        }
        errors
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn get(&self, id: ObjectId) -> Option<&Object> {
        self.all.get(&id)
    }

    pub fn insert(&mut self, id: ObjectId, object: Object) {
        if let Some(at) = object.location {
            let played = self.played.contains(&id);
            self.contents.entry(at).or_default().side(played).insert(id);
        }
        self.by_kind
            .entry(object.kind.clone())
            .or_default()
            .insert(id);
        self.all.insert(id, object);
    }

    /// What `id` holds, in id order.
    pub fn contents(&self, id: ObjectId) -> impl Iterator<Item = ObjectId> + '_ {
        self.contents.get(&id).into_iter().flat_map(Held::all)
    }

    /// The characters being played that `id` holds, in id order.
    pub fn players_in(&self, id: ObjectId) -> impl Iterator<Item = ObjectId> + '_ {
        self.contents
            .get(&id)
            .into_iter()
            .flat_map(|held| held.players.iter().copied())
    }

    /// How many characters being played `id` holds.
    pub fn player_count_in(&self, id: ObjectId) -> usize {
        self.contents.get(&id).map_or(0, |held| held.players.len())
    }

    /// What `id` holds besides the characters being played, in id order.
    pub fn contents_except_players(&self, id: ObjectId) -> impl Iterator<Item = ObjectId> + '_ {
        self.contents
            .get(&id)
            .into_iter()
            .flat_map(|held| held.rest.iter().copied())
    }

    /// `id` is now played, or no longer: only `State` calls this, with
    /// each change to who plays what.
    pub fn set_played(&mut self, id: ObjectId, played: bool) {
        let changed = if played {
            self.played.insert(id)
        } else {
            self.played.remove(&id)
        };
        if !changed {
            return;
        }
        let Some(at) = self.all.get(&id).and_then(|o| o.location) else {
            return;
        };
        if let Some(held) = self.contents.get_mut(&at) {
            held.side(!played).remove(&id);
            held.side(played).insert(id);
        }
    }

    pub fn of_kind(&self, kind: &str) -> impl Iterator<Item = ObjectId> + '_ {
        self.by_kind.get(kind).into_iter().flatten().copied()
    }

    pub fn set_location(&mut self, id: ObjectId, to: Option<ObjectId>) {
        let Some(object) = self.all.get_mut(&id) else {
            return;
        };
        let played = self.played.contains(&id);
        if let Some(from) = object.location.take()
            && let Some(held) = self.contents.get_mut(&from)
        {
            held.side(played).remove(&id);
            if held.is_empty() {
                self.contents.remove(&from);
            }
        }
        object.location = to;
        if let Some(to) = to {
            self.contents.entry(to).or_default().side(played).insert(id);
        }
    }

    pub fn get_mut(&mut self, id: ObjectId) -> Option<&mut Object> {
        self.all.get_mut(&id)
    }

    /// Takes an object out; what it held is left nowhere. Whether it is
    /// played stays `State`'s to say.
    pub fn remove(&mut self, id: ObjectId) {
        self.set_location(id, None);
        let held: Vec<ObjectId> = self.contents(id).collect();
        for inner in held {
            if let Some(o) = self.all.get_mut(&inner) {
                o.location = None;
            }
        }
        self.contents.remove(&id);
        if let Some(object) = self.all.remove(&id)
            && let Some(set) = self.by_kind.get_mut(&object.kind)
        {
            set.remove(&id);
        }
    }
}
