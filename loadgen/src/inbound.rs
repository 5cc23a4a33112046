//! What the game sends, bytes in → lines out, sans IO: telnet, and MCCP2's
//! zlib stream when the game compresses.
//!
//! The inflater exists only while the game compresses (it costs tens of KiB,
//! more than the rest of a session), and inflates into a fixed-size chunk, so
//! however well a burst compresses, a session never holds more than one chunk
//! of inflated bytes at a time besides its partial line.

use std::io;

use flate2::{Decompress, FlushDecompress, Status};

use crate::telnet::{Decoder, Fed, Lines};

/// Inflated bytes decoded at a time.
const CHUNK: usize = 4096;

pub struct Inbound {
    plain: Plain,
    inflate: Option<Inflate>,
}

/// The telnet half: the decoder, its text, and the lines cut from it.
struct Plain {
    decoder: Decoder,
    lines: Lines,
    text: Vec<u8>,
}

struct Inflate {
    zlib: Decompress,
    chunk: Box<[u8]>,
}

impl Inbound {
    /// Refuses every telnet option, or all but MCCP2; or, `everything`,
    /// agrees to every one.
    pub fn new(accept_mccp2: bool, everything: bool) -> Inbound {
        Inbound {
            plain: Plain {
                decoder: if everything {
                    Decoder::everything()
                } else {
                    Decoder::new(accept_mccp2)
                },
                lines: Lines::default(),
                text: Vec::new(),
            },
            inflate: None,
        }
    }

    /// Appends every line completed by `input` to `out` and the telnet answers
    /// owed to the game to `replies`. Err (InvalidData) on a corrupt stream.
    pub fn push(
        &mut self,
        mut input: &[u8],
        out: &mut impl Extend<String>,
        replies: &mut Vec<u8>,
    ) -> io::Result<()> {
        loop {
            let Some(inflate) = &mut self.inflate else {
                match self.plain.feed(input, out, replies) {
                    Fed::All => return Ok(()),
                    Fed::CompressedFrom(n) => {
                        input = &input[n..];
                        self.inflate = Some(Inflate::new());
                        continue;
                    }
                }
            };
            let step = inflate.step(input)?;
            input = &input[step.used..];
            self.plain
                .feed_compressed(&inflate.chunk[..step.made], out, replies);
            if step.ended {
                // What follows the stream is plain telnet again.
                self.inflate = None;
            } else if step.made < CHUNK {
                // Room was left, so the inflater took all the input it could.
                if input.is_empty() {
                    return Ok(());
                }
                if step.used == 0 {
                    return Err(corrupt("the inflater stopped taking input"));
                }
            }
        }
    }
}

impl Plain {
    fn feed(&mut self, input: &[u8], out: &mut impl Extend<String>, replies: &mut Vec<u8>) -> Fed {
        self.text.clear();
        let fed = self.decoder.feed(input, &mut self.text, replies);
        self.lines.push(&self.text, out);
        fed
    }

    /// Inflated bytes: a start of compression inside them means nothing (the
    /// game already compresses), so it is passed over.
    fn feed_compressed(
        &mut self,
        mut input: &[u8],
        out: &mut impl Extend<String>,
        replies: &mut Vec<u8>,
    ) {
        while let Fed::CompressedFrom(n) = self.feed(input, out, replies) {
            input = &input[n..];
        }
    }
}

struct Step {
    used: usize,
    made: usize,
    ended: bool,
}

impl Inflate {
    fn new() -> Inflate {
        Inflate {
            zlib: Decompress::new(true),
            chunk: vec![0; CHUNK].into_boxed_slice(),
        }
    }

    /// Inflates what fits of `input` into the chunk.
    fn step(&mut self, input: &[u8]) -> io::Result<Step> {
        let (in_before, out_before) = (self.zlib.total_in(), self.zlib.total_out());
        let status = self
            .zlib
            .decompress(input, &mut self.chunk, FlushDecompress::None)
            .map_err(|e| corrupt(&e.to_string()))?;
        // Both are bounded by the slices just passed, so they fit a usize.
        let used = (self.zlib.total_in() - in_before) as usize;
        let made = (self.zlib.total_out() - out_before) as usize;
        Ok(Step {
            used,
            made,
            ended: status == Status::StreamEnd,
        })
    }
}

fn corrupt(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the game's MCCP2 (compressed) stream is corrupt: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telnet::{DO, DONT, IAC, MCCP2, SB, SE, WILL};
    use flate2::{Compress, Compression, FlushCompress};

    /// A zlib stream of `bursts`, each ended by a sync flush as a game sends
    /// them, and then finished or left open.
    fn zlib(bursts: &[&[u8]], finish: bool) -> Vec<u8> {
        let mut z = Compress::new(Compression::default(), true);
        let mut out = Vec::new();
        for (i, burst) in bursts.iter().enumerate() {
            let flush = if finish && i + 1 == bursts.len() {
                FlushCompress::Finish
            } else {
                FlushCompress::Sync
            };
            let before = z.total_in();
            // Room for the worst case, so one call takes the whole burst.
            out.reserve(burst.len() * 2 + 64);
            z.compress_vec(burst, &mut out, flush).unwrap();
            assert_eq!(z.total_in() - before, burst.len() as u64);
        }
        out
    }

    const START: [u8; 5] = [IAC, SB, MCCP2, IAC, SE];

    /// What a game sends to a client that accepts MCCP2: plain text, a
    /// compressed stream (with a negotiation and a line across bursts), plain
    /// text after its end, and a second stream restarted with WILL.
    fn game_bytes() -> Vec<u8> {
        let mut bytes = vec![IAC, WILL, MCCP2];
        bytes.extend_from_slice(b"Welcome to fake!\r\n");
        bytes.extend_from_slice(&START);
        bytes.extend(zlib(
            &[
                b"line one\r\nline t",
                &[
                    b'w', b'o', b'\r', b'\n', IAC, WILL, 1, IAC, IAC, b'\r', b'\n',
                ],
                b"last compressed\r\n",
            ],
            true,
        ));
        bytes.extend_from_slice(b"plain again\r\n");
        bytes.extend_from_slice(&[IAC, WILL, MCCP2]);
        bytes.extend_from_slice(&START);
        bytes.extend(zlib(&[b"second ", b"stream\r\n"], true));
        bytes.extend_from_slice(b"the end\r\n");
        bytes
    }

    const LINES: [&str; 7] = [
        "Welcome to fake!",
        "line one",
        "line two",
        "\u{fffd}",
        "last compressed",
        "plain again",
        "second stream",
    ];

    fn push_pieces(mccp2: bool, pieces: &[&[u8]]) -> io::Result<(Vec<String>, Vec<u8>)> {
        let mut inbound = Inbound::new(mccp2, false);
        let (mut lines, mut replies) = (Vec::new(), Vec::new());
        for piece in pieces {
            inbound.push(piece, &mut lines, &mut replies)?;
        }
        Ok((lines, replies))
    }

    #[test]
    fn compressed_streams_give_the_lines_for_every_split() {
        let bytes = game_bytes();
        let mut expected: Vec<String> = LINES.iter().map(|l| l.to_string()).collect();
        expected.push("the end".into());
        let replies = [IAC, DO, MCCP2, IAC, DONT, 1, IAC, DO, MCCP2];
        for cut in 0..=bytes.len() {
            let got = push_pieces(true, &[&bytes[..cut], &bytes[cut..]]).unwrap();
            assert_eq!(got, (expected.clone(), replies.to_vec()), "split at {cut}");
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        let got = push_pieces(true, &one_by_one).unwrap();
        assert_eq!(got, (expected, replies.to_vec()));
    }

    #[test]
    fn without_mccp2_it_is_refused_and_nothing_is_inflated() {
        let mut bytes = vec![IAC, WILL, MCCP2];
        bytes.extend_from_slice(b"hi\r\n");
        let (lines, replies) = push_pieces(false, &[&bytes]).unwrap();
        assert_eq!(
            (lines, replies),
            (vec!["hi".to_string()], vec![IAC, DONT, MCCP2])
        );
    }

    #[test]
    fn a_corrupt_stream_is_an_error() {
        let mut bytes = vec![IAC, WILL, MCCP2];
        bytes.extend_from_slice(&START);
        bytes.extend_from_slice(b"this is not zlib\r\n");
        let err = push_pieces(true, &[&bytes]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("MCCP2"), "{err}");
    }

    #[test]
    fn a_large_burst_is_inflated_a_chunk_at_a_time() {
        let line = [b'a'; 99];
        let mut text = Vec::new();
        for _ in 0..10_000 {
            text.extend_from_slice(&line);
            text.extend_from_slice(b"\r\n");
        }
        let mut bytes = vec![IAC, WILL, MCCP2];
        bytes.extend_from_slice(&START);
        // Left open: the inflater stays, as while a game keeps compressing.
        bytes.extend(zlib(&[&text], false));
        let mut inbound = Inbound::new(true, false);
        let (mut lines, mut replies) = (Vec::new(), Vec::new());
        inbound.push(&bytes, &mut lines, &mut replies).unwrap();
        assert_eq!(lines.len(), 10_000);
        assert!(lines.iter().all(|l| l.len() == 99));
        assert!(inbound.inflate.is_some());
        assert!(inbound.plain.text.capacity() <= CHUNK);
    }

    #[test]
    fn the_inflater_is_made_only_when_compression_starts_and_dropped_at_its_end() {
        let mut inbound = Inbound::new(true, false);
        let (mut lines, mut replies) = (Vec::<String>::new(), Vec::new());
        inbound
            .push(&[IAC, WILL, MCCP2], &mut lines, &mut replies)
            .unwrap();
        assert!(inbound.inflate.is_none());
        inbound.push(&START, &mut lines, &mut replies).unwrap();
        assert!(inbound.inflate.is_some());
        inbound
            .push(&zlib(&[b"x\r\n"], true), &mut lines, &mut replies)
            .unwrap();
        assert!(inbound.inflate.is_none());
        assert_eq!(lines, ["x"]);
    }
}
