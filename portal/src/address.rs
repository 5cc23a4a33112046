//! What the portal keeps per IP address, for every protocol: how many
//! connections are open from it and the command bucket they share.
//!
//! A connection takes its [`Slot`] when it is accepted, before a byte is
//! read or written, so connections that never speak count too. An address
//! is forgotten with its last connection: the table is as large as the set
//! of connected addresses, never the set of addresses ever seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::bucket::Bucket;

#[derive(Debug, Clone, Copy)]
pub struct AddressLimits {
    /// Open connections from one address.
    pub per_ip: usize,
    /// Open connections in all.
    pub total: usize,
    /// Commands a second from one address, and its burst.
    pub commands_per_second: u32,
    pub command_burst: u32,
}

#[derive(Clone)]
pub struct Addresses {
    table: Arc<Mutex<Table>>,
    limits: AddressLimits,
}

#[derive(Debug, Default)]
struct Table {
    total: usize,
    by_ip: HashMap<IpAddr, Address>,
}

#[derive(Debug)]
struct Address {
    connections: usize,
    commands: Bucket,
}

/// One open connection from `ip`; gives its place back when dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<Mutex<Table>>,
    ip: IpAddr,
}

impl Addresses {
    pub fn new(limits: AddressLimits) -> Addresses {
        Addresses {
            table: Arc::default(),
            limits,
        }
    }

    /// A slot for a new connection from `ip`, or the refusal to send it.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut table = lock(&self.table);
        if table.total >= self.limits.total {
            return Err("The game is full; please try again later.");
        }
        let limits = self.limits;
        let address = table.by_ip.entry(ip).or_insert_with(|| Address {
            connections: 0,
            commands: Bucket::new(
                limits.commands_per_second,
                limits.command_burst,
                Instant::now(),
            ),
        });
        if address.connections >= limits.per_ip {
            return Err("Too many connections from your address.");
        }
        address.connections += 1;
        table.total += 1;
        Ok(Slot {
            table: self.table.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn known(&self) -> usize {
        lock(&self.table).by_ip.len()
    }
}

impl Slot {
    /// Takes a command token from `own` and from this address's bucket, both
    /// or neither; otherwise says how long until both have one.
    pub fn take_command(&self, own: &mut Bucket, now: Instant) -> Result<(), Duration> {
        let mut table = lock(&self.table);
        let Some(address) = table.by_ip.get_mut(&self.ip) else {
            // Unreachable while the slot lives; no limit is better than a panic.
            return Ok(());
        };
        let wait = own.wait(now).max(address.commands.wait(now));
        if !wait.is_zero() {
            return Err(wait);
        }
        own.take();
        address.commands.take();
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        table.total = table.total.saturating_sub(1);
        if let Some(address) = table.by_ip.get_mut(&self.ip) {
            address.connections = address.connections.saturating_sub(1);
            if address.connections == 0 {
                table.by_ip.remove(&self.ip);
            }
        }
    }
}

/// A panic elsewhere while holding the lock leaves counts that are still
/// right (every update is one statement), so a poisoned lock is used as is.
fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(per_ip: usize, total: usize, burst: u32) -> Addresses {
        Addresses::new(AddressLimits {
            per_ip,
            total,
            commands_per_second: 1,
            command_burst: burst,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn connections_are_limited_per_address_and_in_all() {
        let table = addresses(2, 3, 10);
        let a1 = table.admit(A).unwrap();
        let _a2 = table.admit(A).unwrap();
        assert!(table.admit(A).unwrap_err().contains("from your address"));
        let _b1 = table.admit(B).unwrap();
        assert!(table.admit(B).unwrap_err().contains("full"));
        drop(a1);
        assert!(table.admit(A).is_ok());
    }

    #[test]
    fn an_address_is_forgotten_with_its_last_connection() {
        let table = addresses(5, 100, 10);
        let slots: Vec<Slot> = (0..5).map(|_| table.admit(A).unwrap()).collect();
        let _b = table.admit(B).unwrap();
        assert_eq!(table.known(), 2);
        drop(slots);
        assert_eq!(table.known(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_from_one_address_share_its_bucket() {
        let table = addresses(5, 100, 3);
        let now = Instant::now();
        let (one, two) = (table.admit(A).unwrap(), table.admit(A).unwrap());
        let other = table.admit(B).unwrap();
        let own = || Bucket::new(100, 100, now);
        let (mut b1, mut b2, mut b3) = (own(), own(), own());
        assert!(one.take_command(&mut b1, now).is_ok());
        assert!(one.take_command(&mut b1, now).is_ok());
        assert!(two.take_command(&mut b2, now).is_ok());
        assert_eq!(
            two.take_command(&mut b2, now),
            Err(Duration::from_secs(1)),
            "the address's burst is spent across its connections"
        );
        assert!(other.take_command(&mut b3, now).is_ok(), "another address");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_command_takes_no_token_from_either_bucket() {
        let table = addresses(5, 100, 1);
        let now = Instant::now();
        let slot = table.admit(A).unwrap();
        let mut own = Bucket::new(1, 2, now);
        assert!(slot.take_command(&mut own, now).is_ok());
        assert!(slot.take_command(&mut own, now).is_err());
        assert!(own.wait(now).is_zero(), "the session's token was kept");
    }
}
