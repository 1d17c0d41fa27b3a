//! The `argoexec` binary: parse the command line, set up logging, run the command.

use clap::Parser;

use argoexec::commands::{self, Cli, CommandError};
use argoexec::contract::Roots;

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli.globals.loglevel, &cli.globals.log_format);
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
    if let CommandError::Failed(msg) = e {
        tracing::error!("{msg}");
        commands::write_termination_log(&Roots::from_env(), msg);
    }
    std::process::exit(e.exit_code())
}

fn init_tracing(level: &str, format: &str) {
    // `--loglevel debug|trace` is for our own logs: client libraries stay at info, because the
    // AWS SDK prints credential identities (access key ids) at debug. `ARGOEXEC_LOG` (an
    // EnvFilter directive) overrides this for deliberate debugging of a library.
    let directive = match level {
        "debug" | "trace" => format!("info,argoexec={level}"),
        other => other.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARGOEXEC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directive));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
