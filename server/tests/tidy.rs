//! Hygiene checks on the server's own source, run as plain tests.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    assert!(out.len() > 5, "found the sources");
    out
}

/// The code of a file without its test modules. The test kit is test
/// code too: it fails a game's test by panicking, as `assert!` does.
fn non_test(path: &Path, text: &str) -> String {
    if path
        .file_name()
        .is_some_and(|n| n == "tests.rs" || n == "testkit.rs")
    {
        return String::new();
    }
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

#[test]
fn only_link_knows_the_protobuf_types() {
    for (path, text) in sources() {
        if path.ends_with("src/link.rs") {
            continue;
        }
        assert!(
            !text.contains("pb::") && !text.contains("ev::pb"),
            "{} uses protobuf types; convert them in link.rs",
            path.display()
        );
    }
}

#[test]
fn no_unwrap_outside_tests() {
    for (path, text) in sources() {
        let code = non_test(&path, &text);
        for needle in [".unwrap()", ".expect("] {
            assert!(
                !code.contains(needle),
                "{} calls {needle} outside its tests; handle the error",
                path.display()
            );
        }
    }
}
