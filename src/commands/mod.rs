//! The sub-commands. Each reads its inputs, calls the pipelines, and reports; no storage or
//! archive logic lives here.

pub mod artifact_delete;
pub mod cli;
pub mod emissary;
pub mod init;
pub mod kill;
pub mod pod;
pub mod serve;
pub mod wait;
pub mod watch;

pub use cli::{ArtifactCommand, Cli, Command};

use crate::contract::Roots;
use crate::report::ApiOptions;
use crate::storage::Secrets;
use crate::transfer::TransferConfig;

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A failure of the executor: its message goes to the termination log, exit code 64.
    #[error("{0}")]
    Failed(String),
    /// The wrapped user process exited with this code: the container exits with it too.
    #[error("exit status {0}")]
    Exited(i32),
}

impl CommandError {
    pub fn failed(msg: impl std::fmt::Display) -> Self {
        Self::Failed(msg.to_string())
    }

    /// The process exit code: the child's for [`CommandError::Exited`], else 64.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Failed(_) => 64,
            Self::Exited(code) => *code,
        }
    }
}

/// Writes a failure message to `/dev/termination-log`, as Argo's executor does. Best effort:
/// the message is also logged by the caller.
pub fn write_termination_log(roots: &Roots, message: &str) {
    let path = roots.termination_log();
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&path, message) {
        tracing::warn!(path = %path.display(), error = %e, "could not write the termination log");
    }
}

/// Everything a command needs from its environment.
#[derive(Debug, Clone)]
pub struct Pod {
    pub roots: Roots,
    pub secrets: Secrets,
    pub transfer: TransferConfig,
}

impl Pod {
    pub fn from_env() -> Self {
        let roots = Roots::from_env();
        Self {
            secrets: Secrets::new(roots.clone()),
            roots,
            transfer: TransferConfig::from_env(),
        }
    }
}

/// Where the Kubernetes API is, from the global flags.
fn api_options(globals: &cli::Globals) -> ApiOptions {
    ApiOptions {
        kubeconfig: globals.kubeconfig.clone(),
        context: globals.context.clone(),
        namespace: globals.namespace.clone(),
    }
}

/// `argoexec version`, in the shape of Argo's (`--short`: the first line only).
fn print_version(short: bool) {
    println!("argoexec: v{}", env!("CARGO_PKG_VERSION"));
    if short {
        return;
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    println!("  Implementation: argoexec-rs");
    println!("  ExecutorContract: Argo Workflows v4.1");
    println!("  Compiler: rustc");
    println!("  Platform: {}/{arch}", std::env::consts::OS);
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), CommandError> {
    let pod = Pod::from_env();
    match cli.command {
        Command::Init => init::run(&pod).await,
        Command::Wait => wait::run(&pod, &api_options(&cli.globals)).await,
        Command::Emissary { args } => emissary::run(&pod, args).await,
        Command::Kill { signal, pid } => kill::run(signal, pid),
        Command::Version { short } => {
            print_version(short);
            Ok(())
        }
        Command::Artifact(ArtifactCommand::Delete) => {
            artifact_delete::run(&pod, &api_options(&cli.globals)).await
        }
        Command::Serve(args) => serve::run(&pod, &args).await,
        Command::Resource { .. }
        | Command::Data { .. }
        | Command::Agent(_)
        | Command::Supervisor => Err(CommandError::failed(
            "this argoexec command is not supported by argoexec-rs yet",
        )),
    }
}
