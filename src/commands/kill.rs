//! `argoexec kill SIGNAL PID`: how the controller stops a container from outside
//! (`kubectl exec ... argoexec kill 15 1`).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::CommandError;

/// Sends `signal` (a number; 0 only checks that the process exists) to `pid`, printing the line
/// Argo's executor prints.
pub fn run(signal: i32, pid: i32) -> Result<(), CommandError> {
    let sig = match signal {
        0 => None,
        n => Some(
            Signal::try_from(n)
                .map_err(|e| CommandError::failed(format!("invalid signal {n}: {e}")))?,
        ),
    };
    println!("killing {pid} with {}", go_signal_name(signal));
    kill(Pid::from_raw(pid), sig).map_err(|e| {
        CommandError::failed(format!(
            "failed to kill {pid} with {}: {e}",
            go_signal_name(signal)
        ))
    })
}

/// The name Go prints for a signal number on Linux (`syscall.Signal.String()`).
fn go_signal_name(signal: i32) -> String {
    const NAMES: [&str; 32] = [
        "signal 0",
        "hangup",
        "interrupt",
        "quit",
        "illegal instruction",
        "trace/breakpoint trap",
        "aborted",
        "bus error",
        "floating point exception",
        "killed",
        "user defined signal 1",
        "segmentation fault",
        "user defined signal 2",
        "broken pipe",
        "alarm clock",
        "terminated",
        "stack fault",
        "child exited",
        "continued",
        "stopped (signal)",
        "stopped",
        "stopped (tty input)",
        "stopped (tty output)",
        "urgent I/O condition",
        "CPU time limit exceeded",
        "file size limit exceeded",
        "virtual timer expired",
        "profiling timer expired",
        "window changed",
        "I/O possible",
        "power failure",
        "bad system call",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("signal {signal}"), |name| (*name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_match_go() {
        assert_eq!(go_signal_name(15), "terminated");
        assert_eq!(go_signal_name(9), "killed");
        assert_eq!(go_signal_name(40), "signal 40");
        assert_eq!(go_signal_name(-1), "signal -1");
    }
}
