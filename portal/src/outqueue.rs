//! One session's output queue, bounded in messages (`portal.output_queue`)
//! and in bytes (`portal.output_queue_bytes`).
//!
//! The hub only ever `try_send`s: a client too far behind is refused and
//! disconnected, never waited for. Counting messages alone let 4,000-byte
//! lines pile up to 16 MB for each player who did not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::hub::api::Outbound;

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
        },
    )
}

fn size(message: &Outbound) -> usize {
    match message {
        Outbound::Notice(text) | Outbound::Output { text, .. } => text.len(),
        Outbound::Oob(oob) => oob.name.len() + oob.data.len(),
        Outbound::Close(_) => 0,
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
    tx: mpsc::Sender<Outbound>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl OutSender {
    pub fn try_send(&self, message: Outbound) -> Result<(), Refused> {
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
    rx: mpsc::Receiver<Outbound>,
    queued: Arc<AtomicUsize>,
    /// Most bytes queued since the queue was last empty.
    peak: usize,
}

impl OutReceiver {
    pub async fn recv(&mut self) -> Option<Outbound> {
        let message = self.rx.recv().await;
        self.took(message.as_ref());
        message
    }

    pub fn try_recv(&mut self) -> Result<Outbound, mpsc::error::TryRecvError> {
        let message = self.rx.try_recv();
        self.took(message.as_ref().ok());
        message
    }

    fn took(&mut self, message: Option<&Outbound>) {
        let Some(message) = message else { return };
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
    fn a_closed_connection_is_not_full() {
        let (tx, rx) = channel(10, 10);
        drop(rx);
        assert_eq!(tx.try_send(text(1)), Err(Refused::Closed));
    }
}
