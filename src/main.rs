//! The `argoexec` binary: parse the command line, set up logging, run the command.

use clap::Parser;

use argoexec::contract::Roots;
use argoexec_exec::commands::{self, Cli, Command, CommandError};
use argoexec_exec::telemetry;

fn main() {
    keep_large_allocations_mapped();
    let cli = Cli::parse();
    // `version` needs no runtime: starting one (a worker thread per core, the cgroup reads
    // that count them) would be most of what it does. It exports no trace either.
    if let Command::Version { short } = cli.command {
        let no_export = telemetry::TraceSettings::default();
        or_refuse(telemetry::init_logging(
            &cli.globals.loglevel,
            &cli.globals.log_format,
            &no_export,
        ));
        commands::print_version(short);
        return;
    }
    let runtime = runtime_or_fail(tokio::runtime::Builder::new_multi_thread().enable_all());
    let trace = telemetry::TraceSettings::from_lookup(|name| std::env::var(name).ok());
    // An exporter gets a runtime of its own (a gRPC exporter starts its connection task on
    // it), so the command's runtime can be shut down before the flush: a task still alive then
    // (a download's pump that outlived its reader) holds its span, and its parents', open.
    let exporter = trace.endpoint.is_some().then(|| {
        runtime_or_fail(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all(),
        )
    });
    let logging = exporter.as_ref().unwrap_or(&runtime).block_on(async {
        telemetry::init_logging(&cli.globals.loglevel, &cli.globals.log_format, &trace)
    });
    let trace = or_refuse(logging);
    let result = runtime.block_on(commands::run(cli));
    if exporter.is_some() {
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    }
    // The process exits right after: the batched spans go now, while the exporter still runs.
    trace.flush();
    if let Err(e) = result {
        fail(&e);
    }
}

/// A runtime from `builder`, or exit 64 saying why not.
fn runtime_or_fail(builder: &mut tokio::runtime::Builder) -> tokio::runtime::Runtime {
    builder.build().unwrap_or_else(|e| {
        fail(&CommandError::failed(format!(
            "cannot start the runtime: {e}"
        )))
    })
}

/// The logging set up, or the flags refused as Argo refuses them: nothing is logged yet, so
/// the reason goes plainly to stderr.
fn or_refuse<T, E: std::fmt::Display>(logging: Result<T, E>) -> T {
    logging.unwrap_or_else(|e| {
        eprintln!("{e}");
        fail(&CommandError::failed(e))
    })
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

/// Fixes glibc's mmap threshold at its initial 128 KiB. Left alone, glibc raises it to the
/// size of each large block freed (up to 32 MiB), after which the transfer engine's
/// short-lived blocks of 128 KiB and more (HTTP read buffers, gzip blocks) come from per-thread
/// heaps that keep their high-water mark: the 4 GiB tgz download through the benchmark link
/// peaked at 73-78 MiB of RSS with it moving, 55-58 MiB fixed, at the same speed
/// (2026-12-04). Fixed, each such block is its own mapping, returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_large_allocations_mapped() {
    // SAFETY: `mallopt` only sets an allocator parameter (under glibc's own lock); it takes
    // no pointer and runs before any thread of ours exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_allocations_mapped() {}
