//! The Control service on run/control.sock.

use tonic::transport::Channel;

use super::Failure;
use crate::gamedir::GameDir;
use crate::pb::control::control_client::ControlClient;

/// A client of the running supervisor.
pub async fn connect(game: &GameDir) -> Result<ControlClient<Channel>, tonic::transport::Error> {
    let channel = crate::uds::connect(&game.control_socket()).await?;
    Ok(ControlClient::new(channel))
}

/// What to tell an operator when the supervisor (`pid`) runs but could not
/// be reached on its socket.
pub fn unreachable(game: &GameDir, what: &str, pid: u32, error: &dyn std::fmt::Display) -> Failure {
    Failure::new(format!(
        "{what}: the supervisor (pid {pid}) is running but does not answer on {} ({error}). \
         It binds that socket again within a second if it was deleted: try again. \
         If this persists, `kill -TERM {pid}` stops the game.",
        game.control_socket().display()
    ))
}

/// `what failed: why` for a failed call.
pub fn call_failed(what: &str, status: &tonic::Status) -> Failure {
    Failure::new(format!(
        "{what}: the supervisor answered: {}",
        status.message()
    ))
}
