//! Black-box tests: each spawns the real evctl, supervisor, portal and server
//! in its own temp game directory and talks telnet to it. `cargo test
//! --workspace` builds every binary first; the harness finds them beside evctl.

// A test that fails should say where: unwrap, expect and panic are how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

mod suite {
    // Game texts over telnet: accounts, look/say/who/ping, quit, bad input; evctl init and config errors.
    mod basics;
    // evctl start / status / stop / reload and the processes behind them.
    mod lifecycle;
    // Reloads under load: 50 pinging clients, nothing lost, doubled or logged out.
    mod reload;
    // Crash safety (issue 3): kill -9 of the server, portal or supervisor under load,
    // failpoints, kills during a reload, crash loops, poison input, hung servers.
    mod crash;
    // A rebuilt server binary is picked up; broken builds fail the reload, not the game.
    mod builds;
    // Sessions on the server follow connections on the portal, across reloads too.
    mod session_sync;
    // MCCP2 compressed output, on and off, with released compressors.
    mod mccp;
    // evctl backup under load, evctl restore into a fresh game.
    mod backup;
    // Logs rotated under their limit; evctl logs -f.
    mod logs;
    // systemd's notify socket and watchdog, played by the test.
    mod systemd;
    // Telnet negotiation byte for byte: offers, answers, TTYPE/MTTS, NAWS,
    // CHARSET to the server and across a reload, MSSP, keepalive, line ends.
    mod negotiation;
    // Logins under attack: bounded password work, failures per address, creation limits.
    mod login;
    // Storage faults stall the game, not crash it; reloads onto bad storage fail; the file shrinks.
    mod storage;
    // A real third-party telnet client (Python telnetlib3) plays a short session.
    mod third_party;
    // Limits for an exposed game (issue 9): output bytes, command rates,
    // login and idle timeouts, half-closed clients, a silent server.
    mod limits;
    // A game's timers fire exactly once across a reload and a crash after
    // their commit; a password asked for never reaches a log.
    mod game_api;
    // The webclient (issue 15): the page over HTTP, ev's WebSocket protocol
    // (resume, numbered inputs, bad frames, origins, limits, takeover), the
    // terminal subprotocol, and the page itself in headless Chromium.
    mod web;
    // The webclient's transport: wss from the telnet TLS settings,
    // X-Forwarded-For from listed proxies, json.mudstandards.org, Python's
    // websockets on terminal.mudstandards.org, every address in evctl status.
    mod web_transport;
    // Prometheus metrics served by the supervisor: a command, a reload and a
    // kill -9 each move theirs; off by default; bad requests answered.
    mod metrics;
    // Telnet over TLS through openssl s_client: play, reload, a renewed
    // certificate, a refused one, a handshake that never comes.
    mod tls;
    // `evctl new` (issue 12): a game crate made, built, started, edited and
    // rebuilt under a connected player, who sees the change after the reload.
    mod new_game;
}
