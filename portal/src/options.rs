//! Telnet option state, per RFC 1143 ("the Q method"), sans IO.
//!
//! Each option has two sides: *ours* (we say WILL/WONT, the client DO/DONT)
//! and *the client's* (it says WILL/WONT, we DO/DONT). RFC 854's naive rule,
//! "answer every request", loops when both ends insist; the Q method keeps,
//! for each side, whether the option is off, on, or being asked for, and
//! answers only what changes a state. So a repeated DO or WILL for an option
//! already on is ignored (never answered again, never restarting anything),
//! and a WONT or DONT for an option already off is never answered.
//!
//! Only the options in [`SUPPORTED`] have state (a fixed array: a session
//! costs the same whatever the client floods it with); every other option is
//! refused statelessly, which the RFC allows because a refused option stays
//! off and a refusal of a refusal is never sent.

use crate::telnet::IAC;
pub use crate::telnet::{DO, DONT, WILL, WONT};

/// Echo (RFC 857): ours only while the client's answer is a secret.
pub const ECHO: u8 = 1;
/// Suppress Go Ahead (RFC 858).
pub const SGA: u8 = 3;
/// Terminal type (RFC 1091), cycled for MTTS.
pub const TTYPE: u8 = 24;
/// End of record (RFC 885): a prompt ends with IAC EOR.
pub const EOR: u8 = 25;
/// Negotiate About Window Size (RFC 1073).
pub const NAWS: u8 = 31;
/// Character set (RFC 2066).
pub const CHARSET: u8 = 42;
/// MUD Server Data Protocol: out-of-band variables both ways.
pub const MSDP: u8 = 69;
/// MUD Server Status Protocol.
pub const MSSP: u8 = 70;
/// MUD Client Compression Protocol, version 2.
pub const MCCP2: u8 = 86;
/// Generic MUD Communication Protocol: out-of-band JSON both ways.
pub const GMCP: u8 = 201;

/// The options with state, and which sides of each we let be turned on.
/// Ours: SGA (we never send GA), EOR (we end prompts with it), CHARSET (we
/// may ask for UTF-8), MSDP and GMCP (we send out-of-band data, and take
/// the client's), MSSP (we answer the table), MCCP2 (we compress); ECHO
/// only while a secret is asked for ([`Options::accept`]). The client's:
/// SGA (it need not send GA), TTYPE and NAWS (it tells us its terminal),
/// CHARSET (it may ask).
pub const SUPPORTED: [(u8, Accept); 10] = [
    (ECHO, Accept::NONE),
    (SGA, Accept::BOTH),
    (TTYPE, Accept::HIM),
    (EOR, Accept::US),
    (NAWS, Accept::HIM),
    (CHARSET, Accept::BOTH),
    (MSDP, Accept::US),
    (MSSP, Accept::US),
    (MCCP2, Accept::US),
    (GMCP, Accept::US),
];

/// Which sides of an option may be enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub us: bool,
    pub him: bool,
}

impl Accept {
    pub const US: Accept = Accept {
        us: true,
        him: false,
    };
    pub const HIM: Accept = Accept {
        us: false,
        him: true,
    };
    pub const BOTH: Accept = Accept {
        us: true,
        him: true,
    };
    pub const NONE: Accept = Accept {
        us: false,
        him: false,
    };
}

/// One side of an option, RFC 1143's states with the queue bit folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Q {
    #[default]
    No,
    Yes,
    /// We asked to turn it off and wait for the answer.
    WantNo,
    /// As `WantNo`, and we want it on again once the answer comes.
    WantNoOpposite,
    /// We asked to turn it on and wait for the answer.
    WantYes,
    /// As `WantYes`, and we want it off again once the answer comes.
    WantYesOpposite,
}

/// Whose side of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Ours: we WILL, the client DOes.
    Us,
    /// The client's: it WILLs, we DO.
    Him,
}

/// A side of an option that changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Now on.
    On(Side, u8),
    /// Now off, from on or from being asked for (a refusal).
    Off(Side, u8),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    option: u8,
    accept: Accept,
    us: Q,
    him: Q,
}

/// Every supported option's two sides.
#[derive(Debug, Clone)]
pub struct Options {
    slots: [Slot; SUPPORTED.len()],
}

impl Options {
    /// Options as in [`SUPPORTED`], with `refuse` taken out (e.g. MCCP2
    /// when `portal.mccp2` is off): those are refused like unknown ones.
    pub fn new(refuse: &[u8]) -> Options {
        let slots = SUPPORTED.map(|(option, accept)| Slot {
            option,
            accept: if refuse.contains(&option) {
                Accept::NONE
            } else {
                accept
            },
            us: Q::No,
            him: Q::No,
        });
        Options { slots }
    }

    fn slot(&self, option: u8) -> Option<&Slot> {
        self.slots.iter().find(|s| s.option == option)
    }

    fn slot_mut(&mut self, option: u8) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.option == option)
    }

    /// Whether `side` of `option` is on.
    pub fn enabled(&self, side: Side, option: u8) -> bool {
        self.state(side, option) == Q::Yes
    }

    pub fn state(&self, side: Side, option: u8) -> Q {
        match (self.slot(option), side) {
            (Some(s), Side::Us) => s.us,
            (Some(s), Side::Him) => s.him,
            (None, _) => Q::No,
        }
    }

    /// Handles the client's `verb` for `option`, appending any answer to
    /// `out`; returns what changed.
    pub fn receive(&mut self, verb: u8, option: u8, out: &mut Vec<u8>) -> Option<Change> {
        // WILL/WONT are about the client's side, DO/DONT about ours.
        let (side, on) = match verb {
            WILL => (Side::Him, true),
            WONT => (Side::Him, false),
            DO => (Side::Us, true),
            DONT => (Side::Us, false),
            _ => return None,
        };
        let (yes, no) = verbs(side);
        let Some(slot) = self.slot_mut(option) else {
            // Unknown: refuse a request, ignore a refusal (it is off already).
            if on {
                out.extend_from_slice(&[IAC, no, option]);
            }
            return None;
        };
        let accept = match side {
            Side::Us => slot.accept.us,
            Side::Him => slot.accept.him,
        };
        let q = match side {
            Side::Us => &mut slot.us,
            Side::Him => &mut slot.him,
        };
        let before = *q;
        if on {
            match *q {
                Q::No if accept => {
                    *q = Q::Yes;
                    out.extend_from_slice(&[IAC, yes, option]);
                }
                Q::No => out.extend_from_slice(&[IAC, no, option]),
                Q::Yes => {}
                // Our "no" answered with a "yes": the peer is wrong, and
                // the RFC settles it without another message.
                Q::WantNo => *q = Q::No,
                Q::WantNoOpposite | Q::WantYes => *q = Q::Yes,
                Q::WantYesOpposite => {
                    *q = Q::WantNo;
                    out.extend_from_slice(&[IAC, no, option]);
                }
            }
        } else {
            match *q {
                Q::No => {}
                Q::Yes => {
                    *q = Q::No;
                    out.extend_from_slice(&[IAC, no, option]);
                }
                Q::WantNo | Q::WantYes | Q::WantYesOpposite => *q = Q::No,
                Q::WantNoOpposite => {
                    if accept {
                        *q = Q::WantYes;
                        out.extend_from_slice(&[IAC, yes, option]);
                    } else {
                        *q = Q::No;
                    }
                }
            }
        }
        change(side, option, before, *q)
    }

    /// Asks for `side` of `option` to be on (we offer WILL or ask DO),
    /// appending the request to `out` if one is due. An option we do not
    /// accept on that side is never asked for.
    pub fn ask(&mut self, side: Side, option: u8, out: &mut Vec<u8>) {
        let (yes, _) = verbs(side);
        let Some(slot) = self.slot_mut(option) else {
            return;
        };
        let accept = match side {
            Side::Us => slot.accept.us,
            Side::Him => slot.accept.him,
        };
        let q = match side {
            Side::Us => &mut slot.us,
            Side::Him => &mut slot.him,
        };
        match *q {
            Q::No if accept => {
                *q = Q::WantYes;
                out.extend_from_slice(&[IAC, yes, option]);
            }
            Q::WantNo => *q = Q::WantNoOpposite,
            Q::WantYesOpposite => *q = Q::WantYes,
            _ => {}
        }
    }

    /// Whether `side` of `option` may be turned on from now on (a request
    /// for it agreed to, an [`ask`](Options::ask) sent). What is on stays on
    /// until [`stop`](Options::stop)ped: this only decides the answers.
    pub fn accept(&mut self, side: Side, option: u8, yes: bool) {
        if let Some(slot) = self.slot_mut(option) {
            match side {
                Side::Us => slot.accept.us = yes,
                Side::Him => slot.accept.him = yes,
            }
        }
    }

    /// Asks for `side` of `option` to be off, appending the request to
    /// `out` if one is due; returns the change (an option we had on is off
    /// from now on: what we send must no longer use it).
    pub fn stop(&mut self, side: Side, option: u8, out: &mut Vec<u8>) -> Option<Change> {
        let (_, no) = verbs(side);
        let slot = self.slot_mut(option)?;
        let q = match side {
            Side::Us => &mut slot.us,
            Side::Him => &mut slot.him,
        };
        match *q {
            Q::Yes => {
                *q = Q::WantNo;
                out.extend_from_slice(&[IAC, no, option]);
                return Some(Change::Off(side, option));
            }
            Q::WantNoOpposite => *q = Q::WantNo,
            Q::WantYes => *q = Q::WantYesOpposite,
            _ => {}
        }
        None
    }
}

/// The positive and negative verb we send for `side`.
fn verbs(side: Side) -> (u8, u8) {
    match side {
        Side::Us => (WILL, WONT),
        Side::Him => (DO, DONT),
    }
}

fn change(side: Side, option: u8, before: Q, after: Q) -> Option<Change> {
    match (before, after) {
        (b, Q::Yes) if b != Q::Yes => Some(Change::On(side, option)),
        // From WantNo the change was reported when we asked (`stop`).
        (Q::Yes | Q::WantYes | Q::WantYesOpposite, Q::No) => Some(Change::Off(side, option)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNKNOWN: u8 = 200;

    fn recv(o: &mut Options, verb: u8, option: u8) -> (Vec<u8>, Option<Change>) {
        let mut out = Vec::new();
        let change = o.receive(verb, option, &mut out);
        (out, change)
    }

    #[test]
    fn unknown_options_are_refused_and_refusals_not_answered() {
        let mut o = Options::new(&[]);
        assert_eq!(recv(&mut o, DO, UNKNOWN), (vec![IAC, WONT, UNKNOWN], None));
        assert_eq!(
            recv(&mut o, WILL, UNKNOWN),
            (vec![IAC, DONT, UNKNOWN], None)
        );
        assert_eq!(recv(&mut o, DONT, UNKNOWN), (vec![], None));
        assert_eq!(recv(&mut o, WONT, UNKNOWN), (vec![], None));
    }

    #[test]
    fn a_side_we_do_not_take_is_refused() {
        let mut o = Options::new(&[]);
        // NAWS is the client's to send; MSSP ours.
        assert_eq!(recv(&mut o, DO, NAWS), (vec![IAC, WONT, NAWS], None));
        assert_eq!(recv(&mut o, WILL, MSSP), (vec![IAC, DONT, MSSP], None));
        assert!(!o.enabled(Side::Us, NAWS));
    }

    #[test]
    fn refused_in_the_config_is_refused_like_an_unknown_option() {
        let mut o = Options::new(&[MCCP2]);
        let mut out = Vec::new();
        o.ask(Side::Us, MCCP2, &mut out);
        assert!(out.is_empty(), "never offered");
        assert_eq!(recv(&mut o, DO, MCCP2), (vec![IAC, WONT, MCCP2], None));
    }

    #[test]
    fn our_offer_accepted_then_repeated_do_is_ignored() {
        let mut o = Options::new(&[]);
        let mut out = Vec::new();
        o.ask(Side::Us, MCCP2, &mut out);
        assert_eq!(out, [IAC, WILL, MCCP2]);
        assert_eq!(o.state(Side::Us, MCCP2), Q::WantYes);
        // Asking again while waiting sends nothing more.
        out.clear();
        o.ask(Side::Us, MCCP2, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            recv(&mut o, DO, MCCP2),
            (vec![], Some(Change::On(Side::Us, MCCP2)))
        );
        for _ in 0..100 {
            assert_eq!(recv(&mut o, DO, MCCP2), (vec![], None));
        }
        assert!(o.enabled(Side::Us, MCCP2));
    }

    #[test]
    fn our_offer_refused_is_off_without_an_answer() {
        let mut o = Options::new(&[]);
        o.ask(Side::Us, SGA, &mut Vec::new());
        assert_eq!(
            recv(&mut o, DONT, SGA),
            (vec![], Some(Change::Off(Side::Us, SGA)))
        );
        assert_eq!(recv(&mut o, DONT, SGA), (vec![], None));
        // Asked later, we agree (we offered it).
        assert_eq!(
            recv(&mut o, DO, SGA),
            (vec![IAC, WILL, SGA], Some(Change::On(Side::Us, SGA)))
        );
    }

    #[test]
    fn dont_when_on_is_answered_once() {
        let mut o = Options::new(&[]);
        recv(&mut o, DO, MCCP2);
        assert_eq!(
            recv(&mut o, DONT, MCCP2),
            (vec![IAC, WONT, MCCP2], Some(Change::Off(Side::Us, MCCP2)))
        );
        assert_eq!(recv(&mut o, DONT, MCCP2), (vec![], None));
    }

    #[test]
    fn the_clients_side_do_and_will() {
        let mut o = Options::new(&[]);
        let mut out = Vec::new();
        o.ask(Side::Him, NAWS, &mut out);
        assert_eq!(out, [IAC, DO, NAWS]);
        assert_eq!(
            recv(&mut o, WILL, NAWS),
            (vec![], Some(Change::On(Side::Him, NAWS)))
        );
        assert_eq!(recv(&mut o, WILL, NAWS), (vec![], None));
        assert_eq!(
            recv(&mut o, WONT, NAWS),
            (vec![IAC, DONT, NAWS], Some(Change::Off(Side::Him, NAWS)))
        );
        assert_eq!(recv(&mut o, WONT, NAWS), (vec![], None));
        // Offered unasked, taken.
        assert_eq!(
            recv(&mut o, WILL, NAWS),
            (vec![IAC, DO, NAWS], Some(Change::On(Side::Him, NAWS)))
        );
    }

    #[test]
    fn stopping_and_the_queue() {
        let mut o = Options::new(&[]);
        recv(&mut o, DO, SGA);
        let mut out = Vec::new();
        assert_eq!(
            o.stop(Side::Us, SGA, &mut out),
            Some(Change::Off(Side::Us, SGA))
        );
        assert_eq!(out, [IAC, WONT, SGA]);
        assert_eq!(o.state(Side::Us, SGA), Q::WantNo);
        // Changing our mind while the answer is on its way only queues.
        out.clear();
        o.ask(Side::Us, SGA, &mut out);
        assert!(out.is_empty());
        assert_eq!(o.state(Side::Us, SGA), Q::WantNoOpposite);
        // The DONT comes: we ask again.
        assert_eq!(recv(&mut o, DONT, SGA), (vec![IAC, WILL, SGA], None));
        assert_eq!(o.state(Side::Us, SGA), Q::WantYes);
        assert_eq!(
            recv(&mut o, DO, SGA),
            (vec![], Some(Change::On(Side::Us, SGA)))
        );
    }

    #[test]
    fn the_rfc_1143_error_cases_settle_without_a_message() {
        // WantNo answered with DO: the peer erred; off, silently.
        let mut o = Options::new(&[]);
        recv(&mut o, DO, SGA);
        o.stop(Side::Us, SGA, &mut Vec::new());
        assert_eq!(recv(&mut o, DO, SGA), (vec![], None));
        assert_eq!(o.state(Side::Us, SGA), Q::No);
        // WantNoOpposite answered with DO: on.
        let mut o = Options::new(&[]);
        recv(&mut o, DO, SGA);
        o.stop(Side::Us, SGA, &mut Vec::new());
        o.ask(Side::Us, SGA, &mut Vec::new());
        assert_eq!(
            recv(&mut o, DO, SGA),
            (vec![], Some(Change::On(Side::Us, SGA)))
        );
        // WantYesOpposite answered with DO: on, and we say off at once.
        let mut o = Options::new(&[]);
        o.ask(Side::Us, SGA, &mut Vec::new());
        o.stop(Side::Us, SGA, &mut Vec::new());
        assert_eq!(o.state(Side::Us, SGA), Q::WantYesOpposite);
        assert_eq!(recv(&mut o, DO, SGA), (vec![IAC, WONT, SGA], None));
        assert_eq!(o.state(Side::Us, SGA), Q::WantNo);
        // WantYesOpposite answered with DONT: off, a refusal like any other.
        let mut o = Options::new(&[]);
        o.ask(Side::Us, SGA, &mut Vec::new());
        o.stop(Side::Us, SGA, &mut Vec::new());
        assert_eq!(
            recv(&mut o, DONT, SGA),
            (vec![], Some(Change::Off(Side::Us, SGA)))
        );
        assert_eq!(o.state(Side::Us, SGA), Q::No);
    }

    #[test]
    fn echo_is_ours_only_while_accepted() {
        let mut o = Options::new(&[]);
        // Unasked, a DO ECHO is refused: the client would type blind.
        assert_eq!(recv(&mut o, DO, ECHO), (vec![IAC, WONT, ECHO], None));
        // The client's own echo of what we send is never wanted.
        assert_eq!(recv(&mut o, WILL, ECHO), (vec![IAC, DONT, ECHO], None));
        // A secret: we offer, it agrees, once.
        o.accept(Side::Us, ECHO, true);
        let mut out = Vec::new();
        o.ask(Side::Us, ECHO, &mut out);
        assert_eq!(out, [IAC, WILL, ECHO]);
        assert_eq!(
            recv(&mut o, DO, ECHO),
            (vec![], Some(Change::On(Side::Us, ECHO)))
        );
        assert_eq!(recv(&mut o, DO, ECHO), (vec![], None));
        // The answer is in: off, and its DONT is not answered.
        out.clear();
        assert_eq!(
            o.stop(Side::Us, ECHO, &mut out),
            Some(Change::Off(Side::Us, ECHO))
        );
        o.accept(Side::Us, ECHO, false);
        assert_eq!(out, [IAC, WONT, ECHO]);
        assert_eq!(recv(&mut o, DONT, ECHO), (vec![], None));
        assert_eq!(o.state(Side::Us, ECHO), Q::No);
        // Between secrets a DO is refused again.
        assert_eq!(recv(&mut o, DO, ECHO), (vec![IAC, WONT, ECHO], None));
    }

    #[test]
    fn a_secret_asked_before_the_last_one_settled_waits_its_turn() {
        let mut o = Options::new(&[]);
        o.accept(Side::Us, ECHO, true);
        o.ask(Side::Us, ECHO, &mut Vec::new());
        recv(&mut o, DO, ECHO);
        o.stop(Side::Us, ECHO, &mut Vec::new());
        o.accept(Side::Us, ECHO, false);
        // The next secret before the client's DONT: queued, not sent.
        o.accept(Side::Us, ECHO, true);
        let mut out = Vec::new();
        o.ask(Side::Us, ECHO, &mut out);
        assert!(out.is_empty());
        // The DONT comes: now we offer again, and the DO turns it on.
        assert_eq!(recv(&mut o, DONT, ECHO), (vec![IAC, WILL, ECHO], None));
        assert_eq!(
            recv(&mut o, DO, ECHO),
            (vec![], Some(Change::On(Side::Us, ECHO)))
        );
    }

    #[test]
    fn a_flood_of_requests_is_answered_at_most_once_per_change() {
        let mut o = Options::new(&[]);
        let mut answers = 0;
        for i in 0..10_000u32 {
            let verb = [DO, WILL, WILL, DO][(i % 4) as usize];
            let (out, _) = recv(&mut o, verb, [SGA, NAWS, TTYPE, CHARSET][(i % 4) as usize]);
            answers += out.len() / 3;
        }
        // One agreement per option side asked for, then silence.
        assert_eq!(answers, 4);
    }

    #[test]
    fn every_verb_in_every_state_keeps_a_valid_state() {
        // From each reachable state, each verb: never panics, and repeating
        // it settles within two (an error case settles to off first, then
        // the repeat is a fresh request): the third is never answered.
        for setup in 0..6 {
            for verb in [WILL, WONT, DO, DONT] {
                let mut o = Options::new(&[]);
                let mut out = Vec::new();
                match setup {
                    1 => o.ask(Side::Us, SGA, &mut out),
                    2 => o.ask(Side::Him, SGA, &mut out),
                    3 => {
                        recv(&mut o, DO, SGA);
                        o.stop(Side::Us, SGA, &mut out);
                    }
                    4 => {
                        recv(&mut o, WILL, SGA);
                        o.stop(Side::Him, SGA, &mut out);
                    }
                    5 => {
                        recv(&mut o, DO, SGA);
                        recv(&mut o, WILL, SGA);
                    }
                    _ => {}
                }
                recv(&mut o, verb, SGA);
                recv(&mut o, verb, SGA);
                let (again, change) = recv(&mut o, verb, SGA);
                assert!(
                    again.is_empty() && change.is_none(),
                    "setup {setup}, verb {verb}: answered {again:?} / {change:?} twice"
                );
            }
        }
    }
}
