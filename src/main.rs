//! The `argoexec` binary: parse the command line, set up logging, run the command.

use clap::Parser;

use argoexec::commands::{self, Cli, Command, CommandError};
use argoexec::contract::Roots;
use argoexec::telemetry;

fn main() {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init_logging(&cli.globals.loglevel, &cli.globals.log_format) {
        // Argo refuses the same flags; nothing is logged yet, so say it plainly.
        eprintln!("{e}");
        fail(&CommandError::failed(e));
    }
    // `version` needs no runtime: starting one (a worker thread per core, the cgroup reads
    // that count them) would be most of what it does.
    if let Command::Version { short } = cli.command {
        commands::print_version(short);
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&CommandError::failed(format!(
            "cannot start the runtime: {e}"
        ))),
    };
    if let Err(e) = runtime.block_on(commands::run(cli)) {
        fail(&e);
    }
}

/// Exits as Argo's executor does: the child's code for a wrapped process, else 64 with the
/// message in the termination log.
fn fail(e: &CommandError) -> ! {
    if let CommandError::Failed { message, detail } = e {
        match detail {
            Some(detail) => tracing::error!(%detail, "{message}"),
            None => tracing::error!("{message}"),
        }
        commands::write_termination_log(&Roots::from_env(), message);
    }
    std::process::exit(e.exit_code())
}
