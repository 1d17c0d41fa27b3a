//! The `argoexec` binary: parse the command line, set up logging, run the command.

use clap::Parser;

use argoexec::commands::{self, Cli, CommandError};
use argoexec::contract::Roots;
use argoexec::telemetry;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&CommandError::failed(format!(
            "cannot start the runtime: {e}"
        ))),
    };
    // Inside the runtime: a gRPC trace exporter starts its connection task on it.
    let trace = telemetry::TraceSettings::from_lookup(|name| std::env::var(name).ok());
    let logging = runtime.block_on(async {
        telemetry::init_logging(&cli.globals.loglevel, &cli.globals.log_format, &trace)
    });
    let trace = match logging {
        Ok(guard) => guard,
        Err(e) => {
            // Argo refuses the same flags; nothing is logged yet, so say it plainly.
            eprintln!("{e}");
            fail(&CommandError::failed(e));
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // The process exits right after: the batched spans go now, while the runtime still runs.
    trace.flush();
    if let Err(e) = result {
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
