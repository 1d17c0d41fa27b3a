//! `argoexec kill SIGNAL PID`: how the controller stops a container from outside.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::CommandError;

pub fn run(signal: i32, pid: i32) -> Result<(), CommandError> {
    let sig = Signal::try_from(signal)
        .map_err(|e| CommandError::failed(format!("invalid signal {signal}: {e}")))?;
    println!("killing {pid} with {sig}");
    kill(Pid::from_raw(pid), sig)
        .map_err(|e| CommandError::failed(format!("failed to kill {pid} with {sig}: {e}")))
}
