//! Executor plugins: sidecars of the agent pod answering `POST <address>/api/v1/template.execute`
//! with a bearer token, as Argo's agent calls them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::NodeResult;
use argoexec::contract::parse_go_duration;

/// Per-call timeout, as Argo's plugin client.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a plugin that is not up yet (connection refused) or says 503.
const ATTEMPTS: u32 = 5;

/// One plugin sidecar.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
    pub address: String,
    token: String,
    client: reqwest::Client,
}

#[derive(Debug, Default, Deserialize)]
struct Reply {
    #[serde(default)]
    node: Option<NodeResult>,
    /// A Go duration (`metav1.Duration`).
    #[serde(default)]
    requeue: Option<String>,
}

/// What a plugin made of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The plugin does not implement template execution (404), or did not take this template.
    Declined,
    /// The node's result, and when to ask again (0: never).
    Node(NodeResult, Duration),
}

impl Plugin {
    pub fn new(name: String, address: String, token: String) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the plugin client: {e}"))?;
        Ok(Self {
            name,
            address,
            token,
            client,
        })
    }

    /// Asks the plugin to execute `template` for the workflow `(name, namespace, uid)`.
    pub async fn execute(
        &self,
        workflow: (&str, &str, &str),
        template: &Value,
    ) -> Result<Outcome, String> {
        let (name, namespace, uid) = workflow;
        let args = json!({
            "workflow": {"metadata": {"name": name, "namespace": namespace, "uid": uid}},
            "template": template,
        });
        let url = format!(
            "{}/api/v1/template.execute",
            self.address.trim_end_matches('/')
        );
        let mut delay = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .post(&url)
                .bearer_auth(&self.token)
                .json(&args)
                .send()
                .await;
            let retry = match sent {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    match status.as_u16() {
                        200 => {
                            let reply: Reply = serde_json::from_str(&text)
                                .map_err(|e| format!("plugin {}: invalid reply: {e}", self.name))?;
                            return Ok(match reply.node {
                                None => Outcome::Declined,
                                Some(node) => {
                                    let requeue = reply
                                        .requeue
                                        .as_deref()
                                        .and_then(parse_go_duration)
                                        .unwrap_or_default();
                                    Outcome::Node(node, requeue)
                                }
                            });
                        }
                        404 => return Ok(Outcome::Declined),
                        503 => format!("{status}: {text}"),
                        _ => return Err(format!("{status}: {text}")),
                    }
                }
                Err(e) if e.is_connect() || e.is_timeout() => e.to_string(),
                Err(e) => return Err(e.to_string()),
            };
            if attempt >= ATTEMPTS {
                return Err(retry);
            }
            tracing::debug!(
                plugin = self.name,
                error = retry,
                "plugin not ready, retrying"
            );
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}
