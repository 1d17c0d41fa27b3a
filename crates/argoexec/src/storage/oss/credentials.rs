//! Alibaba Cloud's credential chain for `useSDKCreds`, the way ACK pods run it.
//!
//! Argo hands `useSDKCreds` to Alibaba's default chain (credentials-go). We follow the same
//! order for the sources a pod can have: access keys in the environment, then RRSA (ACK's
//! OIDC role: a projected token file exchanged at STS `AssumeRoleWithOIDC` for temporary keys),
//! then the ECS RAM role of the node (the instance metadata service). Temporary keys carry
//! their expiry; the S3 client's identity cache asks this provider again shortly before they
//! expire, so a long upload keeps signing with valid keys. The token file is read again on
//! every exchange, because ACK rotates it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::storage::timeouts::Timeouts;
use crate::storage::{Error, Result};

/// Environment keys of the default chain (credentials-go's names).
pub const ENV_ACCESS_KEY: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_SECRET_KEY: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
/// RRSA, injected into pods by ACK's pod-identity webhook.
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
/// The STS host (`sts-vpc.cn-hangzhou.aliyuncs.com`), or a whole URL (`http://127.0.0.1:8080`).
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
pub const ENV_VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
/// The node's RAM role name: set, it enables the ECS metadata source.
pub const ENV_ECS_ROLE: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub const ENV_ECS_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
/// Ours: where the instance metadata service answers (a proxy, or a test server).
pub const ENV_ECS_METADATA_ENDPOINT: &str = "ARGOEXEC_ALIBABA_METADATA_ENDPOINT";

const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// How long assumed keys live: an hour, as credentials-go asks (STS allows 15 min to 12 h).
const ROLE_DURATION: Duration = Duration::from_secs(3600);
/// No credential answer is larger; a bigger body is a wrong endpoint.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The variables of the chain, read once by the caller (the environment in a pod).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlibabaEnv(HashMap<&'static str, String>);

/// Says which variables are set, never their values (keys and tokens among them).
impl std::fmt::Debug for AlibabaEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl AlibabaEnv {
    const NAMES: [&'static str; 14] = [
        ENV_ACCESS_KEY,
        ENV_SECRET_KEY,
        ENV_SECURITY_TOKEN,
        ENV_ROLE_ARN,
        ENV_OIDC_PROVIDER_ARN,
        ENV_OIDC_TOKEN_FILE,
        ENV_ROLE_SESSION_NAME,
        ENV_STS_ENDPOINT,
        ENV_STS_REGION,
        ENV_VPC_ENDPOINT_ENABLED,
        ENV_ECS_ROLE,
        ENV_ECS_DISABLED,
        ENV_IMDSV1_DISABLED,
        ENV_ECS_METADATA_ENDPOINT,
    ];

    /// The chain's variables through `get`; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self(
            Self::NAMES
                .iter()
                .filter_map(|&k| get(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim())
    }

    fn is_true(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The first source of the chain that the environment configures. `security_token` is the
/// location's own `securityToken`, used with environment keys that carry none.
/// `timeouts` bound the requests to STS and to the instance metadata service.
pub fn resolve(
    env: &AlibabaEnv,
    security_token: Option<String>,
    timeouts: Timeouts,
) -> Result<SharedCredentialsProvider> {
    if let (Some(access), Some(secret)) = (env.get(ENV_ACCESS_KEY), env.get(ENV_SECRET_KEY)) {
        let token = env
            .get(ENV_SECURITY_TOKEN)
            .map(str::to_string)
            .or(security_token);
        return Ok(SharedCredentialsProvider::new(Credentials::new(
            access,
            secret,
            token,
            None,
            "alibaba-env",
        )));
    }
    if let (Some(role), Some(provider), Some(token_file)) = (
        env.get(ENV_ROLE_ARN),
        env.get(ENV_OIDC_PROVIDER_ARN),
        env.get(ENV_OIDC_TOKEN_FILE),
    ) {
        let oidc = OidcRole {
            http: HttpClient::new(timeouts)?,
            sts_url: sts_url(env),
            role_arn: role.into(),
            provider_arn: provider.into(),
            token_file: token_file.into(),
            session_name: env
                .get(ENV_ROLE_SESSION_NAME)
                .map(str::to_string)
                .unwrap_or_else(|| format!("argoexec-{}", chrono::Utc::now().timestamp_millis())),
        };
        return Ok(SharedCredentialsProvider::new(oidc));
    }
    if let Some(role) = env
        .get(ENV_ECS_ROLE)
        .filter(|_| !env.is_true(ENV_ECS_DISABLED))
    {
        let ecs = EcsRamRole {
            http: HttpClient::new(timeouts)?,
            endpoint: env
                .get(ENV_ECS_METADATA_ENDPOINT)
                .unwrap_or(DEFAULT_METADATA_ENDPOINT)
                .trim_end_matches('/')
                .to_string(),
            role: role.into(),
            imds_v1_allowed: !env.is_true(ENV_IMDSV1_DISABLED),
        };
        return Ok(SharedCredentialsProvider::new(ecs));
    }
    Err(Error::config(format!(
        "useSDKCreds for OSS found no credentials: set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, \
         or RRSA's {ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN} and {ENV_OIDC_TOKEN_FILE}, \
         or the node's RAM role in {ENV_ECS_ROLE}"
    )))
}

/// STS's URL: the endpoint variable (a host, or a URL with its scheme), else the regional
/// endpoint (its VPC form when asked), else the central one.
fn sts_url(env: &AlibabaEnv) -> String {
    if let Some(endpoint) = env.get(ENV_STS_ENDPOINT) {
        return if endpoint.contains("://") {
            endpoint.trim_end_matches('/').to_string()
        } else {
            format!("https://{endpoint}")
        };
    }
    match env.get(ENV_STS_REGION) {
        Some(region) if env.is_true(ENV_VPC_ENDPOINT_ENABLED) => {
            format!("https://sts-vpc.{region}.aliyuncs.com")
        }
        Some(region) => format!("https://sts.{region}.aliyuncs.com"),
        None => "https://sts.aliyuncs.com".to_string(),
    }
}

/// Temporary keys as STS and the metadata service spell them.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemporaryKeys {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

impl TemporaryKeys {
    fn into_credentials(self, source: &'static str) -> provider::Result {
        let expiry = chrono::DateTime::parse_from_rfc3339(&self.expiration)
            .map_err(|e| {
                CredentialsError::unhandled(format!("expiration {:?}: {e}", self.expiration))
            })?
            .with_timezone(&chrono::Utc);
        Ok(Credentials::new(
            self.access_key_id,
            self.access_key_secret,
            Some(self.security_token),
            Some(SystemTime::from(expiry)),
            source,
        ))
    }
}

/// RRSA: the pod's OIDC token exchanged for a role's keys (`AssumeRoleWithOIDC`, which is
/// not signed: the token is the proof).
#[derive(Debug)]
struct OidcRole {
    http: HttpClient,
    sts_url: String,
    role_arn: String,
    provider_arn: String,
    token_file: String,
    session_name: String,
}

impl OidcRole {
    async fn assume(&self) -> provider::Result {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                CredentialsError::invalid_configuration(format!(
                    "reading the OIDC token file {}: {e}",
                    self.token_file
                ))
            })?;
        let query = form(&[
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            (
                "Timestamp",
                &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
        ]);
        let body = form(&[
            ("RoleArn", &self.role_arn),
            ("OIDCProviderArn", &self.provider_arn),
            ("OIDCToken", token.trim()),
            ("RoleSessionName", &self.session_name),
            ("DurationSeconds", &ROLE_DURATION.as_secs().to_string()),
        ]);
        let request = http::Request::post(format!("{}/?{query}", self.sts_url))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(CredentialsError::unhandled)?;
        let answer = self.http.send(request, "STS AssumeRoleWithOIDC").await?;
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Assumed {
            credentials: TemporaryKeys,
        }
        let assumed: Assumed = serde_json::from_slice(&answer).map_err(|e| {
            CredentialsError::unhandled(format!("STS AssumeRoleWithOIDC answer: {e}"))
        })?;
        tracing::debug!(role = %self.role_arn, "assumed the RRSA role");
        assumed.credentials.into_credentials("alibaba-rrsa")
    }
}

impl ProvideCredentials for OidcRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.assume())
    }
}

/// The node's RAM role from the ECS instance metadata service (IMDSv2 token first).
#[derive(Debug)]
struct EcsRamRole {
    http: HttpClient,
    endpoint: String,
    role: String,
    imds_v1_allowed: bool,
}

impl EcsRamRole {
    async fn fetch(&self) -> provider::Result {
        let token = self.session_token().await?;
        let mut request = http::Request::get(format!(
            "{}/latest/meta-data/ram/security-credentials/{}",
            self.endpoint, self.role
        ));
        if let Some(token) = &token {
            request = request.header("X-aliyun-ecs-metadata-token", token.as_str());
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(CredentialsError::unhandled)?;
        let answer = self.http.send(request, "ECS RAM role metadata").await?;
        let keys: TemporaryKeys = serde_json::from_slice(&answer).map_err(|e| {
            CredentialsError::unhandled(format!("ECS RAM role metadata answer: {e}"))
        })?;
        keys.into_credentials("alibaba-ecs-ram-role")
    }

    /// An IMDSv2 session token; `None` where the service has none and IMDSv1 is allowed.
    async fn session_token(&self) -> std::result::Result<Option<String>, CredentialsError> {
        let request = http::Request::put(format!("{}/latest/api/token", self.endpoint))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
            .body(Full::new(Bytes::new()))
            .map_err(CredentialsError::unhandled)?;
        match self.http.send(request, "ECS metadata token").await {
            Ok(token) => Ok(Some(String::from_utf8_lossy(&token).trim().to_string())),
            Err(_) if self.imds_v1_allowed => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl ProvideCredentials for EcsRamRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.fetch())
    }
}

/// `k=v&k=v`, percent-encoded as a form.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A small HTTPS client for the credential services, bounded by the drivers' timeouts.
#[derive(Debug, Clone)]
struct HttpClient {
    client: Arc<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>>,
    timeouts: Timeouts,
}

impl HttpClient {
    fn new(timeouts: Timeouts) -> Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeouts.connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| Error::config(format!("the system's TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Arc::new(Client::builder(TokioExecutor::new()).build(https)),
            timeouts,
        })
    }

    /// The body of a 2xx answer; anything else is a credentials error naming `what`.
    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        what: &str,
    ) -> std::result::Result<Bytes, CredentialsError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| CredentialsError::provider_error(format!("{what}: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CredentialsError::unhandled(format!("{what}: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(CredentialsError::provider_error(format!(
                    "{what} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeouts.read, exchange)
            .await
            .unwrap_or_else(|_| Err(CredentialsError::provider_timed_out(self.timeouts.read)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> AlibabaEnv {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AlibabaEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn sts_endpoints_follow_credentials_go() {
        assert_eq!(sts_url(&env(&[])), "https://sts.aliyuncs.com");
        assert_eq!(
            sts_url(&env(&[(ENV_STS_REGION, "cn-hangzhou")])),
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            sts_url(&env(&[
                (ENV_STS_REGION, "cn-hangzhou"),
                (ENV_VPC_ENDPOINT_ENABLED, "true")
            ])),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            sts_url(&env(&[(
                ENV_STS_ENDPOINT,
                "sts-vpc.cn-beijing.aliyuncs.com"
            )])),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            sts_url(&env(&[(ENV_STS_ENDPOINT, "http://127.0.0.1:8080/")])),
            "http://127.0.0.1:8080"
        );
    }

    #[tokio::test]
    async fn environment_keys_come_first_and_nothing_is_an_error_naming_every_source() {
        let both = env(&[
            (ENV_ACCESS_KEY, "ak"),
            (ENV_SECRET_KEY, "sk"),
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, "/nowhere"),
        ]);
        let keys = resolve(&both, Some("tok".into()), Timeouts::OBJECT_STORE)
            .expect("env keys")
            .provide_credentials()
            .await
            .expect("static keys");
        assert_eq!(keys.access_key_id(), "ak");
        assert_eq!(keys.session_token(), Some("tok"));
        let err = resolve(&env(&[]), None, Timeouts::OBJECT_STORE).expect_err("no source");
        let text = err.to_string();
        for name in [ENV_ACCESS_KEY, ENV_ROLE_ARN, ENV_ECS_ROLE] {
            assert!(text.contains(name), "{text}");
        }
        let disabled = env(&[(ENV_ECS_ROLE, "node-role"), (ENV_ECS_DISABLED, "true")]);
        assert!(resolve(&disabled, None, Timeouts::OBJECT_STORE).is_err());
    }
}
