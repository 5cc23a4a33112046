//! `evctl stop`: asks the supervisor to stop and returns once the supervisor,
//! the portal and the server are all gone.

use std::time::{Duration, Instant};

use super::{EXIT_OK, Failure, Outcome, client, config_or_default, probe, say};
use crate::gamedir::GameDir;
use crate::pb::control::StopRequest;

pub async fn run(game: &GameDir) -> Outcome {
    let Some(supervisor) = probe::supervisor(game) else {
        say("ev is not running")?;
        if let Some(note) = probe::orphan_note(game) {
            say(note)?;
        }
        return Ok(EXIT_OK);
    };
    // Read before the stop: the supervisor removes the pidfiles on its way out.
    let pids = probe::live(game);
    let config = config_or_default(game);
    match client::connect(game).await {
        Ok(mut control) => {
            if let Err(status) = control.stop(StopRequest {}).await {
                // It may have exited between the probe and the call.
                if probe::supervisor(game).is_some() {
                    return Err(client::call_failed("stop failed", &status));
                }
            }
        }
        Err(e) if probe::supervisor(game).is_some() => {
            return Err(client::unreachable(game, "stop failed", supervisor, &e));
        }
        Err(_) => {}
    }
    let timeout = Duration::from_millis(config.supervisor.stop_timeout_ms) + Duration::from_secs(5);
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<(&str, u32)> = pids
            .iter()
            .copied()
            .filter(|&(name, pid)| probe::is_ours(game, name, pid))
            .collect();
        if left.is_empty() {
            say("stopped")?;
            return Ok(EXIT_OK);
        }
        if Instant::now() >= deadline {
            let verb = if left.len() == 1 { "is" } else { "are" };
            return Err(Failure::new(format!(
                "stop timed out: {} {verb} still running after {} ms",
                probe::describe(&left),
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
