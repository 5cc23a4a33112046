//! The fuzz target's corpus, replayed on stable in `cargo test`: every
//! input in portal/fuzz/corpus/telnet_stream (the seeds, and whatever a
//! fuzzing run found worth keeping) goes through the same harness.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn every_input_in_the_fuzz_corpus_is_survived() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/telnet_stream");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        ev_portal::fuzzing::telnet_stream(&data);
        n += 1;
    }
    assert!(n >= 8, "the seed corpus is in {}", dir.display());
}
