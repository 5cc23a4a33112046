//! Maps and sets keyed by [`ObjectId`](super::ObjectId) or
//! [`SessionId`](crate::event::SessionId), hashed by one multiplication.
//!
//! The standard SipHash resists an attacker who picks keys to make every
//! one land in the same bucket. These keys are never a client's choice:
//! the store numbers objects, the portal numbers sessions, and a name
//! typed at the login screen is looked up in the database, not here. So
//! the engine's hottest lookups (a name, a location, who plays a
//! character: thousands per `look` in a crowd) need not pay for that.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by object or session ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A set of object or session ids.
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing: consecutive ids spread over every bucket, by the low
/// bits a table indexes by and the high bits it tags entries with.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

/// 2^64 / φ, odd: multiplying by it is a bijection, and its bits are mixed.
const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    // Only ids are hashed by it; any other key still hashes, a byte at a time.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash>(t: T) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(t)
    }

    #[test]
    fn consecutive_ids_differ_in_low_and_high_bits() {
        let low: HashSet<u64> = (0..1024i64).map(|i| hash(i) & 1023).collect();
        assert_eq!(low.len(), 1024, "every bucket of 1024 used once");
        let high: HashSet<u64> = (0..1024i64).map(|i| hash(i) >> 57).collect();
        assert!(high.len() > 100, "tags spread: {}", high.len());
    }

    #[test]
    fn maps_keyed_by_ids_work_as_any_map() {
        let mut m: IdMap<crate::game::ObjectId, &str> = IdMap::default();
        m.insert(crate::game::ObjectId(7), "seven");
        m.insert(crate::game::ObjectId(-7), "minus seven");
        assert_eq!(m.get(&crate::game::ObjectId(7)), Some(&"seven"));
        assert_eq!(m.get(&crate::game::ObjectId(-7)), Some(&"minus seven"));
        assert_eq!(m.get(&crate::game::ObjectId(8)), None);
    }
}
