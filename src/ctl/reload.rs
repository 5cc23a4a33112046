//! `evctl reload`: a new server from the binary on disk takes over.

use super::{EXIT_OK, Failure, Outcome, client, probe, say};
use crate::gamedir::GameDir;
use crate::pb::control::{ReloadReply, ReloadRequest};

pub async fn run(game: &GameDir) -> Outcome {
    let Some(pid) = probe::supervisor(game) else {
        return Err(Failure::not_running("cannot reload: ev is not running"));
    };
    let mut control = client::connect(game)
        .await
        .map_err(|e| client::unreachable(game, "reload failed", pid, &e))?;
    let reply = control
        .reload(ReloadRequest {})
        .await
        .map_err(|s| client::call_failed("reload failed", &s))?
        .into_inner();
    if reply.ok {
        say(success(&reply))?;
        Ok(EXIT_OK)
    } else {
        let details = reply.log_tail.iter().map(|l| format!("    {l}")).collect();
        Err(
            Failure::new(format!("reload failed: {}", one_line(&reply.error)))
                .with_details(details),
        )
    }
}

fn success(reply: &ReloadReply) -> String {
    let mut text = format!(
        "reloaded: server generation {} (build {}, pid {}), dark for {:.1} ms, total {} ms",
        reply.generation,
        reply.build_id,
        reply.pid,
        reply.dark_micros as f64 / 1000.0,
        reply.total_ms
    );
    if !reply.restart_needed.is_empty() {
        text.push_str("\nchanged in ev.toml, applied only by a restart (evctl stop, then start):");
        for key in &reply.restart_needed {
            text.push_str("\n    ");
            text.push_str(key);
        }
    }
    text
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim_end_matches('.');
    if line.is_empty() {
        "no reason given".into()
    } else {
        line.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_names_generation_build_pid_and_times() {
        let reply = ReloadReply {
            ok: true,
            generation: 4,
            build_id: "0123456789abcdef".into(),
            pid: 4242,
            dark_micros: 1234,
            total_ms: 87,
            ..ReloadReply::default()
        };
        assert_eq!(
            success(&reply),
            "reloaded: server generation 4 (build 0123456789abcdef, pid 4242), dark for 1.2 ms, total 87 ms"
        );
    }

    #[test]
    fn keys_a_reload_could_not_apply_are_listed_after_it() {
        let reply = ReloadReply {
            ok: true,
            generation: 2,
            build_id: "b".into(),
            pid: 7,
            restart_needed: vec!["portal.max_line_bytes (running 4096, ev.toml 100)".into()],
            ..ReloadReply::default()
        };
        let text = success(&reply);
        assert!(
            text.ends_with(
                "applied only by a restart (evctl stop, then start):\n    portal.max_line_bytes (running 4096, ev.toml 100)"
            ),
            "{text}"
        );
    }

    #[test]
    fn errors_are_one_line_without_a_period() {
        assert_eq!(one_line("boom.\nmore"), "boom");
        assert_eq!(one_line(""), "no reason given");
    }
}
