//! The object cache: every object of the game in memory, written through
//! to the store in the transaction of the command that changed it.
//!
//! Loaded once, by the first transaction of the server that serves (never by
//! a standby, which must not read a world the active server still changes).
//! A commit that fails on storage is retried with the same writes (see
//! `store::outage`), so the cache never runs ahead of what will be stored.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::store::{StoreError, Tx, WorldChanges, WorldSnapshot};

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
    pub kind: String,
    pub name: String,
    pub location: Option<ObjectId>,
    pub attributes: Attributes,
}

/// An object's attributes: a few per object, so a list searched in order
/// (a map's node took some 600 bytes per object at 100,000 objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attributes(Vec<(String, serde_json::Value)>);

impl Attributes {
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: String, value: serde_json::Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<serde_json::Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(i).1)
    }

    /// In key order, for a test to compare.
    #[cfg(test)]
    fn sorted(&self) -> Vec<&(String, serde_json::Value)> {
        let mut all: Vec<_> = self.0.iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[derive(Debug, Default)]
pub(crate) struct Objects {
    all: HashMap<ObjectId, Object>,
    /// What each object holds, in id order (so listings are stable).
    contents: HashMap<ObjectId, BTreeSet<ObjectId>>,
    by_kind: HashMap<String, BTreeSet<ObjectId>>,
}

impl Objects {
    pub fn load(tx: &Tx) -> Result<Objects, StoreError> {
        Ok(Objects::from_snapshot(WorldSnapshot {
            rev: tx.world_rev()?,
            objects: tx.load_objects()?,
            attributes: tx.load_attributes()?,
        }))
    }

    pub fn from_snapshot(world: WorldSnapshot) -> Objects {
        let mut objects = Objects::default();
        for row in world.objects {
            objects.upsert(row.id, row.kind, row.name, row.location);
        }
        for (id, key, value) in world.attributes {
            objects.set_stored(id, key, &value);
        }
        objects
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
            self.upsert(row.id, row.kind, row.name, row.location);
        }
        for (id, key, value) in changes.attributes {
            self.set_stored(id, key, &value);
        }
    }

    /// An object as stored: added, or its kind, name and place updated.
    fn upsert(&mut self, id: i64, kind: String, name: String, location: Option<i64>) {
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
    fn set_stored(&mut self, id: i64, key: String, value: &str) {
        let Some(object) = self.all.get_mut(&ObjectId(id)) else {
            return;
        };
        match serde_json::from_str(value) {
            Ok(value) => {
                object.attributes.insert(key, value);
            }
            Err(e) => tracing::error!(object = id, key, "unreadable attribute skipped: {e}"),
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

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn get(&self, id: ObjectId) -> Option<&Object> {
        self.all.get(&id)
    }

    pub fn insert(&mut self, id: ObjectId, object: Object) {
        if let Some(at) = object.location {
            self.contents.entry(at).or_default().insert(id);
        }
        self.by_kind
            .entry(object.kind.clone())
            .or_default()
            .insert(id);
        self.all.insert(id, object);
    }

    pub fn contents(&self, id: ObjectId) -> impl Iterator<Item = ObjectId> + '_ {
        self.contents.get(&id).into_iter().flatten().copied()
    }

    /// How many objects `id` holds.
    pub fn count_in(&self, id: ObjectId) -> usize {
        self.contents.get(&id).map_or(0, BTreeSet::len)
    }

    pub fn of_kind(&self, kind: &str) -> impl Iterator<Item = ObjectId> + '_ {
        self.by_kind.get(kind).into_iter().flatten().copied()
    }

    pub fn set_location(&mut self, id: ObjectId, to: Option<ObjectId>) {
        let Some(object) = self.all.get_mut(&id) else {
            return;
        };
        if let Some(from) = object.location.take()
            && let Some(set) = self.contents.get_mut(&from)
        {
            set.remove(&id);
            if set.is_empty() {
                self.contents.remove(&from);
            }
        }
        object.location = to;
        if let Some(to) = to {
            self.contents.entry(to).or_default().insert(id);
        }
    }

    pub fn get_mut(&mut self, id: ObjectId) -> Option<&mut Object> {
        self.all.get_mut(&id)
    }

    /// Takes an object out; what it held is left nowhere.
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
