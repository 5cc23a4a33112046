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
    format!(
        "reloaded: server generation {} (build {}, pid {}), dark for {:.1} ms, total {} ms",
        reply.generation,
        reply.build_id,
        reply.pid,
        reply.dark_micros as f64 / 1000.0,
        reply.total_ms
    )
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
    fn errors_are_one_line_without_a_period() {
        assert_eq!(one_line("boom.\nmore"), "boom");
        assert_eq!(one_line(""), "no reason given");
    }
}
