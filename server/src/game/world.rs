//! Rooms and who is in them.

use std::collections::{BTreeSet, HashMap};

use crate::event::SessionId;

/// Where new characters start, and where a character in an unknown room goes.
pub const START_ROOM: i64 = 1;

pub struct Room {
    pub id: i64,
    pub name: &'static str,
    pub description: &'static str,
}

const ROOMS: &[Room] = &[Room {
    id: START_ROOM,
    name: "Limbo",
    description: "A quiet grey space where new arrivals gather.",
}];

/// The static rooms plus an index of the playing sessions in each.
#[derive(Default)]
pub struct World {
    here: HashMap<i64, BTreeSet<SessionId>>,
}

impl World {
    /// `id` if such a room exists, else the start room.
    pub fn resolve(&self, id: i64) -> i64 {
        if ROOMS.iter().any(|r| r.id == id) {
            id
        } else {
            START_ROOM
        }
    }

    pub fn room(&self, id: i64) -> &'static Room {
        ROOMS.iter().find(|r| r.id == id).unwrap_or(&ROOMS[0])
    }

    pub fn enter(&mut self, room: i64, session: SessionId) {
        self.here.entry(room).or_default().insert(session);
    }

    pub fn leave(&mut self, room: i64, session: SessionId) {
        if let Some(set) = self.here.get_mut(&room) {
            set.remove(&session);
            if set.is_empty() {
                self.here.remove(&room);
            }
        }
    }

    /// The sessions in `room` other than `session`.
    pub fn others(&self, room: i64, session: SessionId) -> Vec<SessionId> {
        self.here
            .get(&room)
            .map(|set| set.iter().copied().filter(|s| *s != session).collect())
            .unwrap_or_default()
    }
}
