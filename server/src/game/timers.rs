//! Timers: work a game schedules for later, kept in the database with the
//! transaction that scheduled it.
//!
//! A due timer is an event like an input: the engine fires it in a
//! transaction, and the timer's row is deleted (or moved to its next due
//! time) in that same transaction as the handler's effects. So a timer fires
//! exactly once per due time across reloads and `kill -9`; one that fell due
//! while no server ran fires as soon as one serves.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::objects::ObjectId;
use crate::store::{StoreError, TimerRow, Tx};

/// What an interval timer does about due times it missed (the server was
/// down, or stalled): said where the timer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Fire once for all of them, then go on from the next due time after
    /// now (a bell that rings on the hour rings once, not nine times).
    Once,
    /// Fire once for each missed due time, in order (a tax collected per
    /// day is collected for every day).
    CatchUp,
}

/// A timer to schedule with [`Context::schedule`](crate::Context::schedule).
///
/// ```
/// use std::time::Duration;
/// use ev_server::{Missed, Timer};
/// let bell = Timer::every(Duration::from_secs(3600), "bell", Missed::Once);
/// let nap = Timer::after(Duration::from_secs(30), "wake");
/// # let _ = (bell, nap);
/// ```
#[derive(Debug, Clone)]
pub struct Timer {
    pub(crate) name: String,
    pub(crate) delay: Duration,
    pub(crate) every: Option<(Duration, Missed)>,
    pub(crate) object: Option<ObjectId>,
    pub(crate) data: serde_json::Value,
}

impl Timer {
    /// Fires once, `delay` from now, to the handler registered as `name`.
    pub fn after(delay: Duration, name: &str) -> Timer {
        Timer {
            name: name.to_owned(),
            delay,
            every: None,
            object: None,
            data: serde_json::Value::Null,
        }
    }

    /// Fires every `every`, the first time `every` from now.
    pub fn every(every: Duration, name: &str, missed: Missed) -> Timer {
        Timer {
            every: Some((every.max(Duration::from_millis(1)), missed)),
            ..Timer::after(every, name)
        }
    }

    /// The first time is `delay` from now instead.
    pub fn first_after(mut self, delay: Duration) -> Timer {
        self.delay = delay;
        self
    }

    /// The object it is about (handed back when it fires; destroying the
    /// object cancels the timer).
    pub fn on(mut self, object: ObjectId) -> Timer {
        self.object = Some(object);
        self
    }

    /// Data handed back when it fires.
    pub fn with<T: Serialize>(mut self, data: &T) -> Result<Timer, serde_json::Error> {
        self.data = serde_json::to_value(data)?;
        Ok(self)
    }
}

/// A timer firing, as its handler gets it.
#[derive(Debug, Clone)]
pub struct Fired {
    pub name: String,
    pub object: Option<ObjectId>,
    pub data: serde_json::Value,
    /// When it was due (now or, after an outage, earlier).
    pub due: SystemTime,
}

/// Milliseconds since 1970, as the timers table keeps times.
pub(crate) fn to_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The scheduled timers, in memory, ordered by due time, and found by name
/// and by object without a walk over all of them (a game may keep one per
/// object of thousands).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    rows: HashMap<i64, TimerRow>,
    due: BTreeSet<(i64, i64)>,
    by_name: HashMap<String, BTreeSet<i64>>,
    by_object: HashMap<i64, BTreeSet<i64>>,
}

impl Timers {
    pub fn load(tx: &Tx) -> Result<Timers, StoreError> {
        let mut timers = Timers::default();
        for row in tx.load_timers()? {
            timers.insert(row);
        }
        Ok(timers)
    }

    fn insert(&mut self, row: TimerRow) {
        self.due.insert((row.due_ms, row.id));
        self.by_name
            .entry(row.name.clone())
            .or_default()
            .insert(row.id);
        if let Some(object) = row.object {
            self.by_object.entry(object).or_default().insert(row.id);
        }
        self.rows.insert(row.id, row);
    }

    /// The ids of the timers named `name` (about `object`, if given).
    fn named(&self, name: &str, object: Option<ObjectId>) -> impl Iterator<Item = i64> + '_ {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |id| {
                object.is_none()
                    || self
                        .rows
                        .get(id)
                        .is_some_and(|r| r.object == object.map(|o| o.0))
            })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// How many timers of this name are scheduled.
    #[cfg(any(test, feature = "test-build"))]
    pub fn count(&self, name: &str) -> usize {
        self.by_name.get(name).map_or(0, BTreeSet::len)
    }

    /// Whether a timer of this name (about `object`, if given) is scheduled.
    pub fn has(&self, name: &str, object: Option<ObjectId>) -> bool {
        self.named(name, object).next().is_some()
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.due.first().map(|(ms, _)| from_ms(*ms))
    }

    /// Schedules `timer` at `now` + its delay, in `tx`.
    pub fn schedule(&mut self, tx: &Tx, timer: Timer, now: SystemTime) -> Result<(), StoreError> {
        let data = serde_json::to_string(&timer.data).unwrap_or_else(|_| "null".into());
        let mut row = TimerRow {
            id: 0,
            name: timer.name,
            due_ms: to_ms(now + timer.delay),
            every_ms: timer
                .every
                .map(|(every, _)| i64::try_from(every.as_millis()).unwrap_or(i64::MAX)),
            catch_up: matches!(timer.every, Some((_, Missed::CatchUp))),
            object: timer.object.map(|o| o.0),
            data,
        };
        row.id = tx.schedule(&row)?;
        self.insert(row);
        Ok(())
    }

    /// Cancels the timers named `name` (about `object`, if given); gives
    /// how many.
    pub fn cancel(
        &mut self,
        tx: &Tx,
        name: &str,
        object: Option<ObjectId>,
    ) -> Result<usize, StoreError> {
        let ids: Vec<i64> = self.named(name, object).collect();
        for &id in &ids {
            tx.cancel_timer(id)?;
            self.remove(id);
        }
        Ok(ids.len())
    }

    /// Forgets the timers of a destroyed object (the store deleted them).
    pub fn forget_object(&mut self, object: ObjectId) {
        let ids = self.by_object.remove(&object.0).unwrap_or_default();
        for id in ids {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: i64) -> Option<TimerRow> {
        let row = self.rows.remove(&id)?;
        self.due.remove(&(row.due_ms, id));
        if let Some(ids) = self.by_name.get_mut(&row.name) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_name.remove(&row.name);
            }
        }
        if let Some(object) = row.object
            && let Some(ids) = self.by_object.get_mut(&object)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_object.remove(&object);
            }
        }
        Some(row)
    }

    /// Takes the next timer due at or before `now`, and in `tx` deletes it
    /// or moves it to its next due time (by its [`Missed`] policy).
    pub fn take_due(&mut self, tx: &Tx, now: SystemTime) -> Result<Option<Fired>, StoreError> {
        let now_ms = to_ms(now);
        let Some(&(due_ms, id)) = self.due.first() else {
            return Ok(None);
        };
        if due_ms > now_ms {
            return Ok(None);
        }
        let Some(mut row) = self.remove(id) else {
            return Ok(None);
        };
        let fired = Fired {
            name: row.name.clone(),
            object: row.object.map(ObjectId),
            data: serde_json::from_str(&row.data).unwrap_or(serde_json::Value::Null),
            due: from_ms(due_ms),
        };
        match row.every_ms {
            None => tx.cancel_timer(id)?,
            Some(every) => {
                let every = every.max(1);
                let next = if row.catch_up {
                    due_ms.saturating_add(every)
                } else {
                    // The first due time after now on the timer's cadence.
                    let missed = (now_ms - due_ms) / every + 1;
                    due_ms.saturating_add(missed.saturating_mul(every))
                };
                tx.reschedule(id, next)?;
                row.due_ms = next;
                self.insert(row);
            }
        }
        Ok(Some(fired))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn timers_are_found_by_name_and_object_and_forgotten_with_their_object() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            Store::open(&dir.path().join("game.db"), ev::config::Synchronous::Normal).unwrap();
        store.migrate().unwrap();
        let tx = store.begin().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut timers = Timers::default();
        let (a, b) = (ObjectId(1), ObjectId(2));
        for (name, on) in [
            ("bell", Some(a)),
            ("bell", Some(b)),
            ("rain", Some(a)),
            ("tide", None),
        ] {
            let mut timer = Timer::after(Duration::from_secs(5), name);
            if let Some(object) = on {
                timer = timer.on(object);
            }
            timers.schedule(&tx, timer, now).unwrap();
        }
        assert_eq!(timers.count("bell"), 2);
        assert!(timers.has("bell", Some(b)));
        assert!(!timers.has("tide", Some(a)));
        assert!(timers.has("tide", None));
        assert_eq!(timers.cancel(&tx, "bell", Some(a)).unwrap(), 1);
        assert!(!timers.has("bell", Some(a)) && timers.has("bell", None));
        timers.forget_object(a);
        assert!(!timers.has("rain", None));
        assert_eq!(timers.len(), 2);
        // What is left still fires in order of due time.
        let later = now + Duration::from_secs(10);
        let fired: Vec<String> = std::iter::from_fn(|| timers.take_due(&tx, later).unwrap())
            .map(|f| f.name)
            .collect();
        assert_eq!(fired, ["bell", "tide"]);
        assert_eq!((timers.len(), timers.count("bell")), (0, 0));
    }
}
