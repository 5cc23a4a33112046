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

/// `what failed: why` for a failed call.
pub fn call_failed(what: &str, status: &tonic::Status) -> Failure {
    Failure::new(format!(
        "{what}: the supervisor answered: {}",
        status.message()
    ))
}
