//! Passwords for `evctl init --admin` (from `EV_ADMIN_PASSWORD`) and `evctl
//! passwd` (from `EV_NEW_PASSWORD`), else typed twice on the terminal
//! without echo. There is no default password, and none is ever an argument.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};

use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

use super::Failure;

/// Where `evctl init` takes the admin password from, and `ev-server
/// create-admin` too; removed from the environment of every long-lived process.
pub const ADMIN_PASSWORD_VAR: &str = "EV_ADMIN_PASSWORD";

/// Where `evctl passwd` takes the new password from, and `ev-server
/// set-password` too; removed from the environment of every long-lived process.
pub const NEW_PASSWORD_VAR: &str = "EV_NEW_PASSWORD";

/// The variables that may hold a password: `evctl start` and the supervisor
/// remove them from every process they start.
pub const PASSWORD_VARS: [&str; 2] = [ADMIN_PASSWORD_VAR, NEW_PASSWORD_VAR];

pub fn admin_password(name: &str) -> Result<String, Failure> {
    password_from(ADMIN_PASSWORD_VAR, name, "create the admin account")
}

pub fn new_password(name: &str) -> Result<String, Failure> {
    password_from(NEW_PASSWORD_VAR, name, "set the password of")
}

/// The password in `var`, else asked for twice on the terminal; `doing`
/// and `name` say what for when there is neither.
fn password_from(var: &str, name: &str, doing: &str) -> Result<String, Failure> {
    if let Ok(password) = std::env::var(var) {
        if password.is_empty() {
            return Err(Failure::new(format!("{var} is empty")));
        }
        return Ok(password);
    }
    let no_terminal = || {
        Failure::new(format!(
            "cannot {doing} {name}: no terminal to ask for a password on; set {var}"
        ))
    };
    // The controlling terminal, even when stdin or stdout are redirected.
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_terminal())?;
    if tcgetattr(&tty).is_err() {
        return Err(no_terminal());
    }
    let first = prompt(&tty, &format!("Password for {name}: "))?;
    if first.is_empty() {
        return Err(Failure::new("the password is empty"));
    }
    let second = prompt(&tty, "Again: ")?;
    if first != second {
        return Err(Failure::new("the passwords do not match"));
    }
    Ok(first)
}

/// Reads one line with echo off, restoring the terminal afterwards.
fn prompt(tty: &File, text: &str) -> Result<String, Failure> {
    let io = |e: std::io::Error| Failure::new(format!("reading the password: {e}"));
    let mut out = tty;
    out.write_all(text.as_bytes()).map_err(io)?;
    out.flush().map_err(io)?;
    let saved = tcgetattr(tty).map_err(|e| io(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| io(e.into()))?;
    let mut line = String::new();
    let read = BufReader::new(tty).read_line(&mut line);
    let restored = tcsetattr(tty, SetArg::TCSAFLUSH, &saved);
    read.map_err(io)?;
    restored.map_err(|e| io(e.into()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
