//! Where a plugin listens, and the connection to it: gRPC (HTTP/2) over its Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::error;
use crate::contract::Roots;
use crate::model::PluginArtifact;
use crate::storage::Result;

/// The directory of each plugin's socket, as the controller mounts it (one emptyDir per plugin).
pub const SOCKET_ROOT: &str = "/tmp/artifact-plugins";

/// Argo's connection timeout when the artifact gives no `connectionTimeoutSeconds`.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long Argo waits for a plugin's socket to appear: its server may still be starting.
pub const SOCKET_WAIT: Duration = Duration::from_secs(120);

/// How often the socket's appearance is checked while waiting for it.
const SOCKET_POLL: Duration = Duration::from_millis(250);

/// `/tmp/artifact-plugins/<name>`, under the roots.
pub fn socket_dir(roots: &Roots, plugin: &str) -> PathBuf {
    roots.path(format!("{SOCKET_ROOT}/{plugin}"))
}

/// `/tmp/artifact-plugins/<name>/socket`, under the roots: the path the controller appends to
/// the plugin's command line, where its server listens.
pub fn socket_path(roots: &Roots, plugin: &str) -> PathBuf {
    socket_dir(roots, plugin).join("socket")
}

/// The connection timeout of a plugin location (`connectionTimeoutSeconds`, else 5 s).
pub fn connection_timeout(location: &PluginArtifact) -> Duration {
    match location.connection_timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        _ => DEFAULT_CONNECTION_TIMEOUT,
    }
}

/// Waits (at most `wait`) for the socket to exist, as Argo does, then connects within
/// `timeout`. A socket that never appears or refuses the connection is a network error: the
/// sidecar is not serving.
pub(super) async fn connect(
    plugin: &str,
    socket: &Path,
    wait: Duration,
    timeout: Duration,
) -> Result<Channel> {
    wait_for_socket(plugin, socket, wait).await?;
    let path = socket.to_path_buf();
    // The URI is required by the HTTP/2 layer but never resolved: every connection is the socket.
    let endpoint = Endpoint::from_static("http://artifact-plugin").connect_timeout(timeout);
    let connector = tower::service_fn(move |_: http::Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(TokioIo::new) }
    });
    let channel = tokio::time::timeout(timeout, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| {
            error::unreachable(
                plugin,
                socket,
                &format!("no connection within {}s", timeout.as_secs_f32()),
            )
        })?
        .map_err(|e| error::unreachable(plugin, socket, &crate::storage::cause_chain(&e)))?;
    tracing::info!(plugin, socket = %socket.display(), "connected to the artifact plugin");
    Ok(channel)
}

async fn wait_for_socket(plugin: &str, socket: &Path, wait: Duration) -> Result<()> {
    let give_up = tokio::time::Instant::now() + wait;
    loop {
        match tokio::fs::metadata(socket).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(error::unreachable(plugin, socket, &e.to_string()));
            }
            Err(_) if tokio::time::Instant::now() >= give_up => {
                return Err(error::unreachable(
                    plugin,
                    socket,
                    &format!(
                        "the socket does not exist after waiting for {} seconds",
                        wait.as_secs()
                    ),
                ));
            }
            Err(_) => {
                tracing::debug!(plugin, socket = %socket.display(), "plugin socket not found yet");
                tokio::time::sleep(SOCKET_POLL).await;
            }
        }
    }
}
