//! Command rate limits for one connection, whatever its protocol: its own
//! bucket (`portal.commands_per_second`, `portal.command_burst`) and its
//! address's, shared with the address's other connections.
//!
//! A command over the limit is not dropped: the connection holds it, reads
//! nothing more from its socket, and sends it when [`Throttle::admit`] says
//! so. The player is told once per flood, not once per held command.

use tokio::time::Instant;

use crate::address::Slot;
use crate::bucket::Bucket;

pub const TOO_FAST: &str = "[ev] You are sending commands too fast; slow down.";

#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

pub struct Throttle {
    own: Bucket,
    address: Slot,
    /// The player was told, and has not sent a command on time since.
    told: bool,
    /// The last verdict was Hold.
    holding: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Hold the command until then; `tell`: say [`TOO_FAST`] now.
    Hold {
        until: Instant,
        tell: bool,
    },
}

impl Throttle {
    pub fn new(rate: Rate, address: Slot, now: Instant) -> Throttle {
        Throttle {
            own: Bucket::new(rate.per_second, rate.burst, now),
            address,
            told: false,
            holding: false,
        }
    }

    /// May a command go now? Takes its tokens if so.
    pub fn admit(&mut self, now: Instant) -> Verdict {
        match self.address.take_command(&mut self.own, now) {
            Ok(()) => {
                // A command that was not held: the flood, if any, is over.
                if !std::mem::replace(&mut self.holding, false) {
                    self.told = false;
                }
                Verdict::Go
            }
            Err(wait) => {
                self.holding = true;
                Verdict::Hold {
                    until: now + wait,
                    tell: !std::mem::replace(&mut self.told, true),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::address::{AddressLimits, Addresses};

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_told_once_and_held_not_dropped() {
        let addresses = Addresses::new(AddressLimits {
            per_ip: 10,
            total: 10,
            commands_per_second: 1000,
            command_burst: 1000,
        });
        let slot = addresses.admit([127, 0, 0, 1].into()).unwrap();
        let mut t = Throttle::new(
            Rate {
                per_second: 10,
                burst: 2,
            },
            slot,
            Instant::now(),
        );
        let mut told = 0;
        let mut sent = 0;
        // What a connection does: hold the command until told, then retry.
        while sent < 12 {
            match t.admit(Instant::now()) {
                Verdict::Go => sent += 1,
                Verdict::Hold { until, tell } => {
                    told += usize::from(tell);
                    tokio::time::sleep_until(until).await;
                }
            }
        }
        assert_eq!(told, 1);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(t.admit(Instant::now()), Verdict::Go);
        assert_eq!(t.admit(Instant::now()), Verdict::Go);
        assert!(
            matches!(t.admit(Instant::now()), Verdict::Hold { tell: true, .. }),
            "a new flood is told again"
        );
    }
}
