//! The sub-commands. Each reads its inputs, calls the pipelines, and reports; no storage or
//! archive logic lives here.

#[cfg(feature = "http")]
pub mod agent;
pub mod artifact_delete;
pub mod artifact_plugin;
pub mod data;
pub mod emissary;
pub mod init;
pub mod kill;
pub mod resource;
pub mod serve;
pub mod supervisor;
pub mod wait;

use crate::cli;
pub use crate::cli::{ArtifactCommand, Cli, Command};

use tracing::Instrument;

use crate::report::ApiOptions;
use crate::telemetry::trace;
use argoexec::contract::Roots;
use argoexec::storage::Secrets;
use argoexec::transfer::TransferConfig;

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A failure of the executor, exit code 64. `message` is Argo's text, word for word: it
    /// goes to the termination log, which becomes the node's message that users match in
    /// `retryStrategy.expression` and alerts. `detail` is our own context (artifact, key,
    /// endpoint, attempts, causes): it goes to the log lines only.
    #[error("{message}")]
    Failed {
        message: String,
        detail: Option<String>,
    },
    /// The wrapped user process exited with this code: the container exits with it too.
    #[error("exit status {0}")]
    Exited(i32),
}

impl CommandError {
    pub fn failed(msg: impl std::fmt::Display) -> Self {
        Self::Failed {
            message: msg.to_string(),
            detail: None,
        }
    }

    /// A failure whose termination message is `message` (Argo's text) and whose log line
    /// also carries `detail` (ours), when it says more than the message.
    pub fn with_detail(message: impl Into<String>, detail: impl Into<String>) -> Self {
        let (message, detail) = (message.into(), detail.into());
        Self::Failed {
            detail: (detail != message).then_some(detail),
            message,
        }
    }

    /// The process exit code: the child's for [`CommandError::Exited`], else 64.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Failed { .. } => 64,
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
            transfer: TransferConfig::from_lookup_within(
                |k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()),
                crate::pod::memory_limit::current(),
            ),
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

// The command futures are boxed under their root spans: deep enough already, the wrapped
// types would pass the compiler's layout depth limit.

/// Names a trace's root span with the workflow and its namespace (`--namespace`, else the
/// service account's, as Argo's executor reports them); looked up only when it is exported.
fn identified(root: tracing::Span, pod: &Pod, globals: &cli::Globals) -> tracing::Span {
    if !root.is_disabled() {
        let workflow = std::env::var(argoexec::contract::env::WORKFLOW_NAME).unwrap_or_default();
        let namespace = globals.namespace.clone().unwrap_or_else(|| {
            let file = pod
                .roots
                .path("/var/run/secrets/kubernetes.io/serviceaccount/namespace");
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .trim()
                .to_string()
        });
        root.record("name", workflow);
        root.record("namespace", namespace);
    }
    root
}

/// `argoexec version`, in the shape of Argo's (`--short`: the first line only).
pub fn print_version(short: bool) {
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
        Command::Init => {
            let root = identified(trace::run_init_container(), &pod, &cli.globals);
            Box::pin(init::run(&pod)).instrument(root).await
        }
        Command::Wait => {
            let root = identified(trace::run_wait_container(), &pod, &cli.globals);
            Box::pin(wait::run(&pod, &api_options(&cli.globals)))
                .instrument(root)
                .await
        }
        Command::Emissary { args } => {
            let root = identified(trace::run_main_container(), &pod, &cli.globals);
            Box::pin(emissary::run(&pod, args)).instrument(root).await
        }
        Command::Kill { signal, pid } => kill::run(signal, pid),
        Command::Version { short } => {
            print_version(short);
            Ok(())
        }
        Command::Artifact(ArtifactCommand::Delete) => {
            artifact_delete::run(&pod, &api_options(&cli.globals)).await
        }
        Command::Serve(args) => serve::run(&pod, &args).await,
        Command::Data { .. } => data::run(&pod, &api_options(&cli.globals)).await,
        Command::Resource { action } => {
            resource::run(&pod, &api_options(&cli.globals), &action).await
        }
        #[cfg(feature = "http")]
        Command::Agent(cli::AgentCommand::Init) => agent::init(&pod),
        #[cfg(feature = "http")]
        Command::Agent(cli::AgentCommand::Main) => {
            agent::main(&pod, &api_options(&cli.globals)).await
        }
        #[cfg(not(feature = "http"))]
        Command::Agent(_) => Err(CommandError::failed(
            "argoexec-rs was built without the `http` feature, which the agent needs",
        )),
        Command::Supervisor => {
            let root = identified(trace::run_supervisor_container(), &pod, &cli.globals);
            Box::pin(supervisor::run(&pod, &api_options(&cli.globals)))
                .instrument(root)
                .await
        }
        Command::ArtifactPluginInit { plugin_name, args } => {
            Box::pin(artifact_plugin::init(&pod, &plugin_name, args)).await
        }
        Command::ArtifactPluginSidecar { args } => artifact_plugin::sidecar(&pod, args).await,
    }
}
