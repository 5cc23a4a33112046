//! A failed server's last log lines, picked out of logs/server.log, which
//! the old and the new server share during a reload.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// At most this many lines are reported.
pub const TAIL_LINES: usize = 20;

/// The last [`TAIL_LINES`] lines written to `path` from byte `offset` on that
/// carry `tag` or no server tag at all (a panic message, a linker error).
pub fn read(path: &Path, offset: u64, tag: &str) -> Vec<String> {
    let mut text = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut text)
    });
    match read {
        Ok(_) => filter(&String::from_utf8_lossy(&text), tag, TAIL_LINES),
        Err(_) => Vec::new(),
    }
}

/// The last `n` lines of `text` that carry `tag` or no `[server#` tag.
pub fn filter(text: &str, tag: &str, n: usize) -> Vec<String> {
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| line.contains(tag) || !line.contains("[server#"))
        .collect();
    kept[kept.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_new_servers_lines_and_untagged_ones() {
        let text = "\
1.000 [server#1/100]  INFO old server line
1.001 [server#2/200]  INFO new server starting
thread 'main' panicked at src/main.rs:3:5:
1.002 [server#1/100]  INFO old server again
1.003 [server#2/200] ERROR link refused

";
        let tail = filter(text, "[server#2/200]", 20);
        assert_eq!(
            tail,
            [
                "1.001 [server#2/200]  INFO new server starting",
                "thread 'main' panicked at src/main.rs:3:5:",
                "1.003 [server#2/200] ERROR link refused",
            ]
        );
        // A generation whose pid merely starts the same is not mixed in.
        assert!(filter("x [server#2/2000] y\n", "[server#2/200]", 20).is_empty());
    }

    #[test]
    fn keeps_only_the_last_lines() {
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let tail = filter(&text, "[server#1/1]", 20);
        assert_eq!(tail.len(), 20);
        assert_eq!(tail[0], "line 30");
        assert_eq!(tail[19], "line 49");
    }

    #[test]
    fn reads_only_from_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        std::fs::write(&path, "before the spawn\nafter\n").unwrap();
        let offset = "before the spawn\n".len() as u64;
        assert_eq!(read(&path, offset, "[server#1/1]"), ["after"]);
        assert!(read(&dir.path().join("missing"), 0, "x").is_empty());
    }
}
