//! `evctl logs [supervisor|portal|server] [-n N] [-f]`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{EXIT_OK, Failure, Outcome, say};
use crate::gamedir::GameDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Process {
    Supervisor,
    Portal,
    Server,
}

impl Process {
    fn name(self) -> &'static str {
        match self {
            Process::Supervisor => "supervisor",
            Process::Portal => "portal",
            Process::Server => "server",
        }
    }
}

/// How often `-f` looks for new lines.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

pub fn run(game: &GameDir, process: Option<Process>, n: usize, follow: bool) -> Outcome {
    let all = [Process::Supervisor, Process::Portal, Process::Server];
    let chosen: Vec<Process> = match process {
        Some(p) => vec![p],
        None => all.to_vec(),
    };
    // Where following starts, taken before the tail is printed: a line
    // written meanwhile is shown by one or the other, never by neither.
    let paths: Vec<_> = chosen.iter().map(|p| game.log_path(p.name())).collect();
    let offsets: Vec<u64> = paths.iter().map(|p| size(p)).collect();
    let mut shown = 0;
    for p in &chosen {
        let path = game.log_path(p.name());
        let lines = match last_lines(&path, n) {
            Ok(lines) => lines,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Failure::new(format!("reading {}: {e}", path.display()))),
        };
        if chosen.len() > 1 {
            if shown > 0 {
                say("")?;
            }
            say(format!("==> {} <==", path.display()))?;
        }
        for line in lines {
            say(line)?;
        }
        shown += 1;
    }
    if shown == 0 {
        let what = match process {
            Some(p) => game.log_path(p.name()).display().to_string(),
            None => format!("no logs in {}", game.logs_dir().display()),
        };
        return Err(Failure::new(match process {
            Some(_) => format!("no log at {what}"),
            None => what,
        }));
    }
    if follow {
        return follow_logs(&paths, offsets);
    }
    Ok(EXIT_OK)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Prints what is appended to `paths` past `offsets`, until stdout closes or
/// the process is interrupted. A log that shrank was rotated: it is read
/// again from its start.
fn follow_logs(paths: &[std::path::PathBuf], mut offsets: Vec<u64>) -> Outcome {
    let mut last_shown = None;
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        for (i, path) in paths.iter().enumerate() {
            let now = size(path);
            if now < offsets[i] {
                offsets[i] = 0;
            }
            if now == offsets[i] {
                continue;
            }
            let mut file = match std::fs::File::open(path) {
                Ok(file) => file,
                Err(_) => continue,
            };
            let mut new = Vec::new();
            if file.seek(SeekFrom::Start(offsets[i])).is_err()
                || file.take(now - offsets[i]).read_to_end(&mut new).is_err()
            {
                continue;
            }
            // Only whole lines; the rest waits for its end.
            let Some(end) = new.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            offsets[i] += end as u64 + 1;
            if paths.len() > 1 && last_shown != Some(i) {
                say(format!("==> {} <==", path.display()))?;
                last_shown = Some(i);
            }
            say(String::from_utf8_lossy(&new[..end]))?;
        }
    }
}

/// The last `n` lines of a file, reading backwards from its end so a large
/// log costs only what is shown.
pub fn last_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // One newline more than lines wanted, or the start of the file.
    while start > 0 && buf.iter().filter(|&&b| b == b'\n').count() <= n {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    // A line cut by the block boundary is dropped unless the file starts there.
    let skip_partial = usize::from(start > 0);
    let lines = &lines[skip_partial.min(lines.len())..];
    Ok(lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(last_lines(&path, 2).unwrap(), ["b", "c"]);
        assert_eq!(last_lines(&path, 10).unwrap(), ["a", "b", "c"]);
        assert!(last_lines(&path, 0).unwrap().is_empty());

        let big: String = (0..50_000).map(|i| format!("line number {i}\n")).collect();
        std::fs::write(&path, &big).unwrap();
        let tail = last_lines(&path, 3).unwrap();
        assert_eq!(
            tail,
            [
                "line number 49997",
                "line number 49998",
                "line number 49999"
            ]
        );
        let many = last_lines(&path, 10_000).unwrap();
        assert_eq!(many.len(), 10_000);
        assert_eq!(many[0], "line number 40000");
    }

    #[test]
    fn missing_log_is_not_found() {
        let err = last_lines(Path::new("/nonexistent/x.log"), 5).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
