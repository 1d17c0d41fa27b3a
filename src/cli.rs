//! The command line, shaped like Argo's so the controller's exact command lines parse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// A drop-in, streaming replacement for the Argo Workflows executor.
#[derive(Debug, Parser)]
#[command(name = "argoexec", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every sub-command accepts, anywhere on the line (the controller puts them after the
/// sub-command words).
#[derive(Debug, Clone, Args)]
pub struct Globals {
    /// Minimum level of log lines: debug, info, warn or error.
    #[arg(long, global = true, default_value = "info")]
    pub loglevel: String,
    /// Log line format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// klog verbosity of Argo's Go client (accepted for compatibility; unused).
    #[arg(long, global = true, default_value_t = 0)]
    pub gloglevel: i32,
    /// Path to a kubeconfig; in-cluster configuration is used without it.
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<String>,
    /// Namespace override for Kubernetes calls.
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    /// kubeconfig context (accepted for compatibility).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Init container: copy the binary, write the template, load input artifacts.
    Init,
    /// Wait sidecar: wait for main, save outputs, report them.
    Wait,
    /// Run a user command as PID 1 of its container: `emissary -- CMD ARGS...`.
    Emissary {
        /// The user's command and its arguments.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Send a signal to a process: `kill SIGNAL PID`.
    Kill { signal: i32, pid: i32 },
    /// Artifact commands (`artifact delete` for artifact garbage collection).
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Run a resource template action (get, create, apply, delete, patch, replace).
    Resource { action: String },
    /// Run a data template.
    Data { data: Option<String> },
    /// Agent pod commands for HTTP and plugin templates.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Init-less pod layout: pre-main work, then everything wait does.
    Supervisor,
    /// Artifact-plugin init container: start the plugin's server (`-- CMD ARGS...`), load that
    /// plugin's input artifacts through it, stop it.
    #[command(name = "artifact-plugin-init")]
    ArtifactPluginInit {
        /// The plugin whose input artifacts to load.
        #[arg(long = "plugin-name", required = true)]
        plugin_name: String,
        /// The plugin server's command and its arguments (the socket path last).
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Artifact-plugin sidecar: run the plugin's server (`-- CMD ARGS...`) for `wait`, until
    /// `wait` ends it through the signal file.
    #[command(name = "artifact-plugin-sidecar")]
    ArtifactPluginSidecar {
        /// The plugin server's command and its arguments (the socket path last).
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Serve the artifacts of one repository over HTTP, read-only (not part of Argo's
    /// executor: a local inspection tool, see docs/library.md).
    Serve(ServeArgs),
    /// Print the version.
    Version {
        /// Print only the version number.
        #[arg(long)]
        short: bool,
    },
}

/// `argoexec serve` options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The repository: a YAML or JSON file holding one repository (the shape of an
    /// `artifact-repositories` entry, e.g. `s3: {bucket: .., endpoint: ..}`), or a ConfigMap
    /// manifest holding such entries. Secrets are read from `/argo/secret/<name>/<key>` (under
    /// `ARGOEXEC_ROOT` when set).
    #[arg(long, env = "ARGOEXEC_SERVE_REPOSITORY")]
    pub repository: PathBuf,
    /// The ConfigMap entry to serve when `--repository` is a ConfigMap (default: the entry its
    /// `workflows.argoproj.io/default-artifact-repository` annotation names).
    #[arg(long)]
    pub key: Option<String>,
    /// Address to listen on. A non-loopback address needs `--token-file` or `--token-env`.
    #[arg(long, env = "ARGOEXEC_SERVE_LISTEN", default_value = "127.0.0.1:2747")]
    pub listen: SocketAddr,
    /// Serve only keys starting with this (it must lie below the repository's own prefix, the
    /// literal start of its key format).
    #[arg(long)]
    pub prefix: Option<String>,
    /// A file holding the token every request must carry (`Authorization: Bearer <token>`);
    /// surrounding whitespace is ignored.
    #[arg(long, env = "ARGOEXEC_SERVE_TOKEN_FILE", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// The name of an environment variable holding the bearer token (instead of a file).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Close a connection when no byte has moved either way for this long (Go duration): a
    /// client that stops reading, or sends nothing.
    #[arg(long, env = "ARGOEXEC_SERVE_IDLE_TIMEOUT", default_value = "60s", value_parser = go_duration)]
    pub idle_timeout: Duration,
    /// Close a connection this long after it was accepted, whatever it is doing (Go duration).
    #[arg(long, env = "ARGOEXEC_SERVE_CONNECTION_TIMEOUT", default_value = "1h", value_parser = go_duration)]
    pub connection_timeout: Duration,
    /// Connections served at once; more are answered 503.
    #[arg(long, env = "ARGOEXEC_SERVE_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Download memory one connection may hold, in MiB (default: two download chunks, 8 MiB).
    #[arg(long, env = "ARGOEXEC_SERVE_CONNECTION_BUDGET_MIB",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_budget_mib: Option<u64>,
}

/// A positive Go duration (`90s`, `1m30s`, `500ms`).
fn go_duration(s: &str) -> Result<Duration, String> {
    argoexec::contract::parse_go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive Go duration (e.g. 90s, 1m30s, 500ms)"))
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Delete the artifacts of this pod's WorkflowArtifactGCTasks.
    Delete,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    Init,
    Main,
}
