//! The Link's limits, and the one [`Batcher`] both sides cut their events
//! into messages with.
//!
//! Every message after the hellos is a batch of events, so a busy game sends
//! few frames; a batch is bounded in events and in (estimated) bytes, so a
//! burst (a `say` heard by ten thousand players, a Sync) goes out in several
//! messages, each far below what a decoder accepts.

use super::{ToPortal, ToServer};

/// The most events in one Link message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 512;

/// The most bytes the batcher puts in one message, by its estimate
/// ([`Batchable::approximate_size`]). Only a single event can go past it,
/// alone in its message.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The largest Link message either side's decoder accepts. It follows from
/// the batching: a message of several events stays about under
/// [`MAX_BATCH_BYTES`] (the estimate counts 32 bytes an event for its
/// framing and numbers, what protobuf spends on real session ids and seqs),
/// so only one event alone can be much larger: a line of `portal.max_line_bytes` (4 KiB by default), a
/// Sync chunk of `portal.sync_chunk` snapshots (1,000 of some hundred bytes
/// by default), a long output. Four batches' worth leaves room for those,
/// and is tonic's default limit, which the portal always had.
pub const MAX_MESSAGE_BYTES: usize = 4 * MAX_BATCH_BYTES;

/// An event the [`Batcher`] can weigh.
pub trait Batchable {
    /// Roughly the bytes it takes in a message: its text, plus 32 for the
    /// rest (kind, session, seq).
    fn approximate_size(&self) -> usize;
}

impl Batchable for ToServer {
    fn approximate_size(&self) -> usize {
        match self {
            ToServer::Input { text, .. } => 32 + text.len(),
            ToServer::Oob { oob, .. } => 32 + oob.name.len() + oob.data.len(),
            ToServer::StaffNotice { text } => 32 + text.len(),
            ToServer::Sync { sessions, .. } => 32 + 128 * sessions.len(),
            _ => 32,
        }
    }
}

impl Batchable for ToPortal {
    fn approximate_size(&self) -> usize {
        match self {
            ToPortal::Output { text, .. } => 32 + text.len(),
            ToPortal::Oob { oob, .. } => 32 + oob.name.len() + oob.data.len(),
            ToPortal::Disconnect { reason, .. } => 32 + reason.len(),
            _ => 32,
        }
    }
}

/// Cuts a stream of events, in order, into messages of at most
/// [`MAX_EVENTS_PER_MESSAGE`] events and [`MAX_BATCH_BYTES`] estimated
/// bytes (an event larger than that goes alone).
#[derive(Debug)]
pub struct Batcher<E> {
    events: Vec<E>,
    bytes: usize,
}

impl<E> Default for Batcher<E> {
    fn default() -> Self {
        Batcher {
            events: Vec::new(),
            bytes: 0,
        }
    }
}

impl<E: Batchable> Batcher<E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `event` to the message being filled. Returns that message, to
    /// be sent now, if `event` did not fit in it (`event` then starts the
    /// next one).
    #[must_use = "a full message must be sent"]
    pub fn push(&mut self, event: E) -> Option<Vec<E>> {
        let size = event.approximate_size();
        let full = !self.events.is_empty()
            && (self.events.len() >= MAX_EVENTS_PER_MESSAGE || self.bytes + size > MAX_BATCH_BYTES);
        let done = if full { self.flush() } else { None };
        self.bytes += size;
        self.events.push(event);
        done
    }

    /// The message being filled, if it holds anything: for when nothing
    /// more is coming for now.
    #[must_use = "a message must be sent"]
    pub fn flush(&mut self) -> Option<Vec<E>> {
        if self.events.is_empty() {
            return None;
        }
        self.bytes = 0;
        Some(std::mem::take(&mut self.events))
    }

    /// All of `events`, in order, cut into messages.
    pub fn split(events: impl IntoIterator<Item = E>) -> Vec<Vec<E>> {
        let mut batcher = Batcher::new();
        let mut messages: Vec<Vec<E>> =
            events.into_iter().filter_map(|e| batcher.push(e)).collect();
        messages.extend(batcher.flush());
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::SessionId;

    fn output(session: u64, len: usize) -> ToPortal {
        ToPortal::Output {
            session: SessionId(session),
            seq: 1,
            text: "x".repeat(len),
            form: crate::link::Form::LINE,
        }
    }

    fn bytes(message: &[ToPortal]) -> usize {
        message.iter().map(Batchable::approximate_size).sum()
    }

    #[test]
    fn a_broadcast_to_many_goes_out_in_messages_under_the_limits() {
        let events: Vec<ToPortal> = (0..10_000).map(|i| output(i, 4_000)).collect();
        let messages = Batcher::split(events.clone());
        for message in &messages {
            assert!(!message.is_empty() && message.len() <= MAX_EVENTS_PER_MESSAGE);
            assert!(bytes(message) <= MAX_BATCH_BYTES, "{}", bytes(message));
        }
        // Nothing lost, nothing reordered.
        assert_eq!(messages.concat(), events);
        // Bytes bound them here (4,032 an event), not the count.
        assert_eq!(messages[0].len(), MAX_BATCH_BYTES / 4_032);
    }

    #[test]
    fn small_events_are_bounded_by_count() {
        let events: Vec<ToServer> = (0..1_025)
            .map(|nonce| ToServer::Heartbeat {
                nonce,
                reply: false,
            })
            .collect();
        let lens: Vec<usize> = Batcher::split(events).iter().map(Vec::len).collect();
        assert_eq!(lens, [512, 512, 1]);
    }

    #[test]
    fn one_huge_event_still_goes_alone() {
        let messages =
            Batcher::split([output(1, 10), output(2, 2 * MAX_BATCH_BYTES), output(3, 10)]);
        let lens: Vec<usize> = messages.iter().map(Vec::len).collect();
        assert_eq!(lens, [1, 1, 1]);
        assert_eq!(messages[1], [output(2, 2 * MAX_BATCH_BYTES)]);
    }

    #[test]
    fn push_hands_back_a_message_only_when_the_next_event_does_not_fit() {
        let mut batcher = Batcher::new();
        for i in 0..MAX_EVENTS_PER_MESSAGE as u64 {
            assert_eq!(batcher.push(output(i, 0)), None);
        }
        let full = batcher.push(output(999, 0));
        assert_eq!(full.map(|m| m.len()), Some(MAX_EVENTS_PER_MESSAGE));
        assert_eq!(batcher.flush(), Some(vec![output(999, 0)]));
        assert_eq!(batcher.flush(), None);
    }

    #[test]
    fn a_full_batch_fits_the_decoders_limit() {
        // What MAX_MESSAGE_BYTES is derived from: the largest message of
        // several events, encoded, is under the batch limit. Session ids
        // are microseconds since 1970 (see the portal's listener).
        use crate::pb::link as pb;
        use prost::Message;
        let events: Vec<ToPortal> = (0..MAX_EVENTS_PER_MESSAGE as u64)
            .map(|i| ToPortal::Output {
                session: SessionId(1_700_000_000_000_000 + i),
                seq: 1_000_000_000,
                text: "y".repeat(MAX_BATCH_BYTES / MAX_EVENTS_PER_MESSAGE - 32),
                form: crate::link::Form {
                    markup: true,
                    kind: crate::link::TextKind::Secret,
                },
            })
            .collect();
        let messages = Batcher::split(events);
        assert_eq!(messages.len(), 1);
        let encoded = pb::ToPortal::from(messages[0].clone()).encoded_len();
        assert!(encoded <= MAX_BATCH_BYTES, "{encoded}");
        const { assert!(MAX_BATCH_BYTES < MAX_MESSAGE_BYTES) };
    }
}
