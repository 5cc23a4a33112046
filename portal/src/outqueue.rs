//! One session's output queue, bounded in messages (`portal.output_queue`)
//! and in bytes (`portal.output_queue_bytes`).
//!
//! The player's colour setting travels in the same queue, so it takes effect
//! exactly between the lines the game sent before and after it: the
//! receiving end keeps it ([`OutReceiver::colours`]) and, for a player who
//! chose plain text, strips the colours from the game's markup before any
//! session (telnet or web) sees it.
//!
//! The hub only ever `try_send`s: a client too far behind is refused and
//! disconnected, never waited for. Counting messages alone let 4,000-byte
//! lines pile up to 16 MB for each player who did not read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::hub::api::Outbound;
use ev::link::ColourChoice;
use ev::markup::{self, Colours};

/// What goes through the queue: output, or a change of the colour setting.
#[derive(Debug)]
enum Queued {
    Out(Outbound),
    Colours(ColourChoice),
}

/// A queue that held this much and drained gives its memory back.
const TRIM_AFTER: usize = 256 * 1024;
/// An emptied queue that grew past this many messages lets its buffer go:
/// a burst (a crowded room's arrivals) must not stay in every session.
const KEEP_EMPTY: usize = 16;

pub fn channel(messages: usize, bytes: usize) -> (OutSender, OutReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bytes: 0,
            peak: 0,
            senders: 1,
            receiving: true,
        }),
        ready: Notify::new(),
    });
    (
        OutSender {
            shared: shared.clone(),
            messages: messages.max(1),
            limit: bytes,
        },
        OutReceiver {
            shared,
            colours: ColourChoice::Auto,
        },
    )
}

/// A queue of its own rather than a channel's: an idle session holds no
/// buffer at all (a channel keeps a block of 32 slots per session, 1.5 KiB
/// at 10,000 players), and the byte count lives beside the messages.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Something was queued, or the last sender went.
    ready: Notify,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Queued>,
    /// Bytes of text queued.
    bytes: usize,
    /// Most bytes queued since the queue was last empty.
    peak: usize,
    senders: usize,
    receiving: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The queue stays meaningful whatever panicked while holding it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn size(message: &Queued) -> usize {
    match message {
        Queued::Out(Outbound::Notice(text) | Outbound::Output { text, .. }) => text.len(),
        Queued::Out(Outbound::Oob(oob)) => oob.name.len() + oob.data.len(),
        Queued::Out(Outbound::Close(_) | Outbound::LoggedIn(_)) | Queued::Colours(_) => 0,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Over the message or byte limit: the client stopped reading.
    Full,
    /// The connection is gone.
    Closed,
}

#[derive(Debug)]
pub struct OutSender {
    shared: Arc<Shared>,
    messages: usize,
    limit: usize,
}

impl Clone for OutSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        OutSender {
            shared: self.shared.clone(),
            messages: self.messages,
            limit: self.limit,
        }
    }
}

impl Drop for OutSender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl OutSender {
    pub fn try_send(&self, message: Outbound) -> Result<(), Refused> {
        self.queue(Queued::Out(message))
    }

    /// The player's colour setting, for everything queued after it.
    pub fn try_set_colours(&self, colours: ColourChoice) -> Result<(), Refused> {
        self.queue(Queued::Colours(colours))
    }

    fn queue(&self, message: Queued) -> Result<(), Refused> {
        let n = size(&message);
        {
            let mut state = self.shared.lock();
            if !state.receiving {
                return Err(Refused::Closed);
            }
            // One line longer than the limit still goes to a client that
            // has read everything else.
            if state.queue.len() >= self.messages
                || (state.bytes > 0 && state.bytes + n > self.limit)
            {
                return Err(Refused::Full);
            }
            state.queue.push_back(message);
            state.bytes += n;
            state.peak = state.peak.max(state.bytes);
        }
        self.shared.ready.notify_one();
        Ok(())
    }
}

#[derive(Debug)]
pub struct OutReceiver {
    shared: Arc<Shared>,
    /// The player's colour setting as of the last message taken.
    colours: ColourChoice,
}

impl Drop for OutReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiving = false;
        state.queue = VecDeque::new();
        state.bytes = 0;
    }
}

impl OutReceiver {
    /// The next output; None once every sender is gone and the queue is
    /// empty. Cancel-safe: nothing is taken across an await.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            match self.pop() {
                Ok(out) => return Some(out),
                Err(Empty::Closed) => return None,
                // A permit left by a send since the check ends this at once.
                Err(Empty::Open) => self.shared.ready.notified().await,
            }
        }
    }

    /// The next output if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.pop().ok()
    }

    /// The player's colour setting for the output last taken.
    pub fn colours(&self) -> ColourChoice {
        self.colours
    }

    fn pop(&mut self) -> Result<Outbound, Empty> {
        loop {
            let message = {
                let mut state = self.shared.lock();
                let Some(message) = state.queue.pop_front() else {
                    return Err(if state.senders == 0 {
                        Empty::Closed
                    } else {
                        Empty::Open
                    });
                };
                state.bytes -= size(&message);
                if state.queue.is_empty() {
                    if state.peak >= TRIM_AFTER {
                        crate::trim::freed();
                    }
                    state.peak = 0;
                    if state.queue.capacity() > KEEP_EMPTY {
                        state.queue = VecDeque::new();
                    }
                }
                message
            };
            if let Some(out) = self.took(message) {
                return Ok(out);
            }
        }
    }

    fn took(&mut self, message: Queued) -> Option<Outbound> {
        match message {
            Queued::Colours(colours) => {
                self.colours = colours;
                None
            }
            Queued::Out(Outbound::Output { text, form })
                if form.markup && self.colours == ColourChoice::Fixed(Colours::None) =>
            {
                Some(Outbound::Output {
                    text: markup::escape(&markup::plain(&text)),
                    form,
                })
            }
            Queued::Out(out) => Some(out),
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.lock().bytes
    }
}

enum Empty {
    Open,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Outbound {
        Outbound::Notice("x".repeat(n))
    }

    #[test]
    fn refused_past_the_byte_limit_and_accepted_once_read() {
        let (tx, mut rx) = channel(100, 10);
        tx.try_send(text(6)).unwrap();
        tx.try_send(text(4)).unwrap();
        assert_eq!(tx.try_send(text(1)), Err(Refused::Full));
        assert_eq!(rx.queued(), 10, "a refused line is not counted");
        rx.try_recv().unwrap();
        tx.try_send(text(5)).unwrap();
        assert_eq!(rx.queued(), 9);
    }

    #[test]
    fn refused_past_the_message_limit() {
        let (tx, _rx) = channel(2, 1000);
        tx.try_send(text(1)).unwrap();
        tx.try_send(Outbound::Close("bye".into())).unwrap();
        assert_eq!(tx.try_send(text(1)), Err(Refused::Full));
    }

    #[test]
    fn one_long_line_goes_to_a_client_that_keeps_up() {
        let (tx, mut rx) = channel(10, 10);
        tx.try_send(text(50)).unwrap();
        assert_eq!(tx.try_send(text(1)), Err(Refused::Full));
        rx.try_recv().unwrap();
        assert_eq!(rx.queued(), 0);
        tx.try_send(text(50)).unwrap();
    }

    #[test]
    fn a_colour_setting_applies_from_its_place_in_the_queue() {
        use ev::link::Form;
        let line = |text: &str| Outbound::Output {
            text: text.into(),
            form: Form::LINE,
        };
        let (tx, mut rx) = channel(10, 1000);
        tx.try_send(line("{red}before{/}")).unwrap();
        tx.try_set_colours(ColourChoice::Fixed(Colours::None))
            .unwrap();
        tx.try_send(line("{red}after{/} {{braces}")).unwrap();
        tx.try_set_colours(ColourChoice::Auto).unwrap();
        tx.try_send(line("{red}again{/}")).unwrap();
        let text = |m: Outbound| match m {
            Outbound::Output { text, .. } => text,
            other => panic!("not output: {other:?}"),
        };
        assert_eq!(text(rx.try_recv().unwrap()), "{red}before{/}");
        assert_eq!(rx.colours(), ColourChoice::Auto);
        let after = text(rx.try_recv().unwrap());
        assert_eq!(rx.colours(), ColourChoice::Fixed(Colours::None));
        assert_eq!(
            markup::render(&after, Colours::Truecolour),
            "after {braces}",
            "plain: no colour whoever renders it, the text itself kept"
        );
        assert_eq!(text(rx.try_recv().unwrap()), "{red}again{/}");
        assert_eq!(rx.colours(), ColourChoice::Auto);
        assert_eq!(rx.queued(), 0);
    }

    #[tokio::test]
    async fn the_receiver_sees_the_end_after_what_was_queued_and_keeps_no_burst() {
        let (tx, mut rx) = channel(100, usize::MAX);
        let second = tx.clone();
        for _ in 0..50 {
            second.try_send(text(1)).unwrap();
        }
        drop(second);
        tx.try_send(Outbound::LoggedIn(true)).unwrap();
        for _ in 0..50 {
            assert!(matches!(rx.recv().await, Some(Outbound::Notice(_))));
        }
        assert!(matches!(rx.recv().await, Some(Outbound::LoggedIn(true))));
        assert_eq!(
            rx.shared.lock().queue.capacity(),
            0,
            "an emptied queue let its burst go"
        );
        drop(tx);
        assert!(rx.recv().await.is_none(), "every sender gone");
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_send() {
        let (tx, mut rx) = channel(10, 100);
        let waiting = tokio::spawn(async move { rx.recv().await.is_some() });
        tokio::task::yield_now().await;
        tx.try_send(text(3)).unwrap();
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn a_closed_connection_is_not_full() {
        let (tx, rx) = channel(10, 10);
        drop(rx);
        assert_eq!(tx.try_send(text(1)), Err(Refused::Closed));
    }
}
