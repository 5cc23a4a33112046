//! The supervisor binary on its own. (Being an integration test also makes
//! `cargo test --workspace` build `ev-supervisor`, which the black-box suite
//! in the root package starts through evctl.)

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn a_directory_without_ev_toml_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ev-supervisor"))
        .arg("--game-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("ev.toml"), "{said}");
    // It must not have left a supervisor running or a lock behind.
    assert!(!dir.path().join("run/supervisor.pid").exists());
}
