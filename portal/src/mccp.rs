//! MCCP2 (telnet option 86): everything the portal sends a player after
//! `IAC SB 86 IAC SE` is one zlib stream.
//!
//! A deflate compressor holds a few hundred KiB of window and hash tables,
//! forty times what the rest of a session costs, so an idle player must not
//! keep one. Every write here ends in a sync flush (the player must see each
//! line at once), and a sync flush leaves the stream byte-aligned between
//! deflate blocks with nothing pending. At that point the compressor can be
//! dropped: a fresh raw deflater's blocks continue the same stream, since a
//! block only refers back to data its own compressor produced. So the zlib
//! header is written once, the Adler-32 of everything sent is kept here (eight
//! bytes), and the compressor exists only while the player is getting output.

use std::io;

use flate2::{Compress, Compression, FlushCompress};

/// zlib header: deflate with a 32 KiB window (the raw deflater's), default level.
const HEADER: [u8; 2] = [0x78, 0x9c];
/// An empty stored block marked final: ends the deflate data from a byte boundary.
const FINAL_EMPTY_BLOCK: [u8; 5] = [0x01, 0x00, 0x00, 0xff, 0xff];
/// zlib's default trade of speed for size.
const LEVEL: u32 = 6;

/// The compressed half of a connection once MCCP2 is on.
pub struct Stream {
    deflate: Option<Compress>,
    adler: Adler32,
}

impl Stream {
    /// Starts the stream, appending its header to `out`.
    pub fn start(out: &mut Vec<u8>) -> Self {
        out.extend_from_slice(&HEADER);
        Stream {
            deflate: None,
            adler: Adler32::default(),
        }
    }

    /// Compresses `data` onto `out`, flushed so the player can decode all of it now.
    pub fn write(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.adler.update(data);
        let deflate = self
            .deflate
            .get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        let mut input = data;
        loop {
            // Room for the worst case (stored blocks) so most writes take one call.
            out.reserve(input.len() + input.len() / 16 + 64);
            let before = deflate.total_in();
            deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("MCCP2 compression failed: {e}")))?;
            let used = usize::try_from(deflate.total_in() - before).unwrap_or(input.len());
            input = &input[used..];
            // Spare room after the call means the flush is complete.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    /// Sends a few bytes (the keepalive's IAC NOP) without waking a released
    /// compressor: they go in a stored block, which needs none, so an idle
    /// player's keepalive does not cost a compressor. A live compressor
    /// takes them like any write: a block it did not make would shift what
    /// its next blocks refer back to.
    pub fn write_small(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let Ok(len) = u16::try_from(data.len()) else {
            return self.write(data, out);
        };
        if self.deflate.is_some() {
            return self.write(data, out);
        }
        self.adler.update(data);
        // BFINAL 0, BTYPE 00 (stored), padded to the byte: the stream is at a
        // byte boundary after every sync flush.
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(data);
        Ok(())
    }

    /// Gives the compressor's memory back; the next write starts a fresh one.
    pub fn release(&mut self) {
        if self.deflate.take().is_some() {
            crate::trim::freed();
        }
    }

    /// Ends the stream (the player sent DONT); what follows on the
    /// connection is plain telnet again.
    pub fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&FINAL_EMPTY_BLOCK);
        out.extend_from_slice(&self.adler.value().to_be_bytes());
    }
}

/// The zlib trailer's checksum, kept across compressors.
#[derive(Clone, Copy)]
struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Adler32 { a: 1, b: 0 }
    }
}

impl Adler32 {
    const MOD: u32 = 65521;
    /// Bytes that can be summed before `b` could overflow a u32.
    const RUN: usize = 5552;

    fn update(&mut self, data: &[u8]) {
        for run in data.chunks(Self::RUN) {
            for &byte in run {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= Self::MOD;
            self.b %= Self::MOD;
        }
    }

    fn value(self) -> u32 {
        (self.b << 16) | self.a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress, Status};

    /// Inflates a whole zlib stream, checking the trailer; returns the data
    /// and whether the stream ended.
    fn inflate(stream: &[u8]) -> (Vec<u8>, bool) {
        let mut z = Decompress::new(true);
        let mut out = Vec::with_capacity(1 << 20);
        let status = z
            .decompress_vec(stream, &mut out, FlushDecompress::Sync)
            .expect("a valid zlib stream");
        (out, status == Status::StreamEnd)
    }

    #[test]
    fn a_stream_across_released_compressors_is_one_valid_zlib_stream() {
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        let mut stream = Stream::start(&mut wire);
        for i in 0..50 {
            let line = format!("line {i}: You see a small room with a door to the north.\r\n");
            stream.write(line.as_bytes(), &mut wire).unwrap();
            sent.extend_from_slice(line.as_bytes());
            if i % 7 == 0 {
                stream.release();
                assert!(stream.deflate.is_none());
            }
        }
        // Before the end every byte written so far already decodes.
        let (so_far, ended) = inflate(&wire);
        assert_eq!(so_far, sent);
        assert!(!ended);

        stream.finish(&mut wire);
        let (all, ended) = inflate(&wire);
        assert_eq!(all, sent);
        assert!(ended, "the trailer's checksum matched and the stream ended");
    }

    #[test]
    fn small_writes_between_compressors_need_none() {
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        let mut stream = Stream::start(&mut wire);
        for i in 0..6 {
            let line = format!("line {i} of the room description\r\n");
            stream.write(line.as_bytes(), &mut wire).unwrap();
            sent.extend_from_slice(line.as_bytes());
            if i % 2 == 0 {
                stream.release();
                stream.write_small(&[255, 241], &mut wire).unwrap();
                assert!(stream.deflate.is_none(), "no compressor for a keepalive");
            } else {
                // With a live compressor it goes through it.
                stream.write_small(&[255, 241], &mut wire).unwrap();
            }
            sent.extend_from_slice(&[255, 241]);
        }
        stream.finish(&mut wire);
        let (all, ended) = inflate(&wire);
        assert_eq!(all, sent);
        assert!(ended);
    }

    #[test]
    fn large_and_binary_writes_survive() {
        let mut wire = Vec::new();
        let mut stream = Stream::start(&mut wire);
        // Incompressible and large: stored blocks, several compress calls.
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        stream.write(&data, &mut wire).unwrap();
        stream.write(&[], &mut wire).unwrap();
        stream.finish(&mut wire);
        let (all, ended) = inflate(&wire);
        assert_eq!(all, data);
        assert!(ended);
    }

    #[test]
    fn repeated_text_compresses() {
        let mut wire = Vec::new();
        let mut stream = Stream::start(&mut wire);
        let text = "The rain falls on the old stone road. ".repeat(100);
        stream.write(text.as_bytes(), &mut wire).unwrap();
        assert!(wire.len() * 10 < text.len(), "{} bytes", wire.len());
    }

    #[test]
    fn adler32_matches_the_reference_values() {
        let mut a = Adler32::default();
        a.update(b"Wikipedia");
        assert_eq!(a.value(), 0x11E6_0398);
        let mut long = Adler32::default();
        long.update(&vec![0xff; 100_000]);
        // Summed in one go with u64 as the reference.
        let (mut x, mut y) = (1u64, 0u64);
        for _ in 0..100_000 {
            x = (x + 255) % 65521;
            y = (y + x) % 65521;
        }
        assert_eq!(long.value(), ((y << 16) | x) as u32);
    }
}
