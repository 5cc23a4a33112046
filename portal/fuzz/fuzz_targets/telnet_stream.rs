//! Any bytes a telnet client may send, cut anywhere, through a fresh
//! session's telnet handling; see `ev_portal::fuzzing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ev_portal::fuzzing::telnet_stream(data);
});
