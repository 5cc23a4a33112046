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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

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

pub fn channel(messages: usize, bytes: usize) -> (OutSender, OutReceiver) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        OutSender {
            tx,
            queued: queued.clone(),
            limit: bytes,
        },
        OutReceiver {
            rx,
            queued,
            peak: 0,
            colours: ColourChoice::Auto,
        },
    )
}

fn size(message: &Queued) -> usize {
    match message {
        Queued::Out(Outbound::Notice(text) | Outbound::Output { text, .. }) => text.len(),
        Queued::Out(Outbound::Oob(oob)) => oob.name.len() + oob.data.len(),
        Queued::Out(Outbound::Close(_)) | Queued::Colours(_) => 0,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Over the message or byte limit: the client stopped reading.
    Full,
    /// The connection is gone.
    Closed,
}

#[derive(Debug, Clone)]
pub struct OutSender {
    tx: mpsc::Sender<Queued>,
    queued: Arc<AtomicUsize>,
    limit: usize,
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
        // Counted before it is queued, so the receiver never takes off
        // bytes not yet added. One line longer than the limit still goes to
        // a client that has read everything else.
        let before = self.queued.fetch_add(n, Ordering::Relaxed);
        if before > 0 && before + n > self.limit {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            return Err(Refused::Full);
        }
        self.tx.try_send(message).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }
}

#[derive(Debug)]
pub struct OutReceiver {
    rx: mpsc::Receiver<Queued>,
    queued: Arc<AtomicUsize>,
    /// Most bytes queued since the queue was last empty.
    peak: usize,
    /// The player's colour setting as of the last message taken.
    colours: ColourChoice,
}

impl OutReceiver {
    /// The next output. Cancel-safe: a setting taken on the way is kept
    /// before the next await.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            let message = self.rx.recv().await?;
            if let Some(out) = self.took(message) {
                return Some(out);
            }
        }
    }

    pub fn try_recv(&mut self) -> Result<Outbound, mpsc::error::TryRecvError> {
        loop {
            let message = self.rx.try_recv()?;
            if let Some(out) = self.took(message) {
                return Ok(out);
            }
        }
    }

    /// The player's colour setting for the output last taken.
    pub fn colours(&self) -> ColourChoice {
        self.colours
    }

    fn took(&mut self, message: Queued) -> Option<Outbound> {
        self.count(&message);
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

    fn count(&mut self, message: &Queued) {
        let n = size(message);
        let before = self.queued.fetch_sub(n, Ordering::Relaxed);
        self.peak = self.peak.max(before);
        if before == n {
            if self.peak >= TRIM_AFTER {
                crate::trim::freed();
            }
            self.peak = 0;
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
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

    #[test]
    fn a_closed_connection_is_not_full() {
        let (tx, rx) = channel(10, 10);
        drop(rx);
        assert_eq!(tx.try_send(text(1)), Err(Refused::Closed));
    }
}
