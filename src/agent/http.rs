//! HTTP templates, as Argo's agent runs them: one request (method, URL, headers, some from
//! secrets, body), the whole response body as `outputs.result`, success by a 2xx status or by
//! the `successCondition` expression over `request` and `response`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FAILED, NodeResult, SUCCEEDED};
use crate::expr::Program;
use argoexec::model::Outputs;

/// Timeout of a request whose template sets none (the API's documented default; Argo's code
/// sets no timeout at all, which can hold a task forever).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpTemplate {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub success_condition: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub body_from: Option<BodySource>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub value_from: Option<HeaderSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderSource {
    #[serde(default)]
    pub secret_key_ref: Option<argoexec::model::SecretKeySelector>,
}

/// `bodyFrom.bytes`: base64 in JSON, as Go encodes `[]byte`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BodySource {
    #[serde(default)]
    pub bytes: Option<String>,
}

/// Where header values from secrets come from.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    async fn secret(&self, name: &str, key: &str) -> Result<Vec<u8>, String>;
}

/// The two clients a pod needs: verifying certificates, and not (`insecureSkipVerify`).
#[derive(Debug, Clone)]
pub struct Clients {
    verifying: reqwest::Client,
    insecure: reqwest::Client,
}

impl Clients {
    pub fn new() -> Result<Self, String> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        };
        Ok(Self {
            verifying: build(false)?,
            insecure: build(true)?,
        })
    }
}

/// Runs the template: a result whatever happens (a request that cannot be made is a failed
/// node with its cause, as in Argo).
pub async fn execute(
    template: &HttpTemplate,
    clients: &Clients,
    secrets: &dyn SecretSource,
) -> NodeResult {
    match run(template, clients, secrets).await {
        Ok(result) => result,
        Err(message) => super::failed(message),
    }
}

async fn run(
    template: &HttpTemplate,
    clients: &Clients,
    secrets: &dyn SecretSource,
) -> Result<NodeResult, String> {
    let method = if template.method.is_empty() {
        reqwest::Method::GET
    } else {
        reqwest::Method::from_bytes(template.method.as_bytes())
            .map_err(|_| format!("net/http: invalid method {:?}", template.method))?
    };
    let body_bytes = template
        .body_from
        .as_ref()
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.bytes.as_deref().unwrap_or_default())
                .map_err(|e| format!("bodyFrom.bytes is not base64: {e}"))
        })
        .transpose()?;
    let body = body_bytes
        .clone()
        .unwrap_or_else(|| template.body.clone().into_bytes());
    let client = if template.insecure_skip_verify {
        &clients.insecure
    } else {
        &clients.verifying
    };
    let timeout = template
        .timeout_seconds
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let mut request = client
        .request(method.clone(), &template.url)
        .timeout(timeout)
        .body(body);
    let mut request_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for header in &template.headers {
        let value = match header
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            Some(secret) => {
                let bytes = secrets.secret(&secret.name, &secret.key).await?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            None => {
                request_headers
                    .entry(header.name.clone())
                    .or_default()
                    .push(header.value.clone());
                header.value.clone()
            }
        };
        // `Host` rewrites the request's host, as Go's `request.Host`.
        request = request.header(header.name.as_str(), value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{} {:?}: {}", method, template.url, error_chain(&e)))?;
    let status = response.status().as_u16();
    let mut response_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        response_headers
            .entry(canonical_header(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let text = response.bytes().await.map_err(|e| {
        format!(
            "reading the response of {}: {}",
            template.url,
            error_chain(&e)
        )
    })?;
    let text = String::from_utf8_lossy(&text).into_owned();

    let (phase, message) = if template.success_condition.is_empty() {
        if (200..300).contains(&status) {
            (SUCCEEDED, String::new())
        } else {
            (FAILED, format!("received non-2xx response code: {status}"))
        }
    } else {
        let scope = json!({
            "request": {
                "method": template.method,
                "url": template.url,
                "body": template.body,
                "bodyBytes": body_bytes.map(|b| b.into_iter().map(Value::from).collect::<Vec<_>>()),
                "headers": request_headers,
            },
            "response": {"statusCode": status, "body": text, "headers": response_headers},
        });
        let scope = scope.as_object().cloned().unwrap_or_default();
        let success = Program::compile(&template.success_condition)
            .and_then(|p| p.run_bool(&scope))
            .map_err(|e| e.to_string())?;
        if success {
            (SUCCEEDED, String::new())
        } else {
            (
                FAILED,
                format!(
                    "successCondition '{}' evaluated false",
                    template.success_condition
                ),
            )
        }
    };
    Ok(NodeResult {
        phase: phase.to_string(),
        message,
        outputs: Some(Outputs {
            result: Some(text),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Go's canonical MIME header form (`content-type` → `Content-Type`), as `response.headers`
/// keys appear to Argo's expressions.
pub fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// An error and its causes, for messages that say what actually failed (refused, timed out).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonical() {
        assert_eq!(canonical_header("content-type"), "Content-Type");
        assert_eq!(canonical_header("x-request-id"), "X-Request-Id");
        assert_eq!(canonical_header("etag"), "Etag");
    }
}
