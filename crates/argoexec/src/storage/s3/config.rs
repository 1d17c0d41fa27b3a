//! From an Argo `s3:` location and its mounted secrets to an `aws_sdk_s3::Client`.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_http_client::tls;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::model::S3Artifact;
use crate::storage::timeouts::Timeouts;
use crate::storage::{Error, Result, Secrets};

/// Where requests go and how they are signed, resolved from a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `None` = the AWS endpoint of the region.
    pub url: Option<String>,
    pub region: String,
    pub path_style: bool,
}

impl Endpoint {
    /// Whether requests go to AWS itself (no custom endpoint, or an amazonaws.com one).
    pub fn is_aws(&self) -> bool {
        self.url
            .as_deref()
            .is_none_or(|u| u.contains("amazonaws.com"))
    }

    /// Argo's endpoint is `host[:port]` with TLS unless `insecure: true`; a URL with a scheme
    /// is taken as it is. Addressing: `path` / `virtual-hosted`, or automatic: virtual-hosted
    /// for AWS endpoints, path style for everything else (MinIO, Ceph, s3s...).
    pub fn from_location(loc: &S3Artifact) -> Self {
        let url = (!loc.endpoint.is_empty()).then(|| {
            if loc.endpoint.contains("://") {
                loc.endpoint.clone()
            } else {
                let scheme = if loc.insecure.unwrap_or(false) {
                    "http"
                } else {
                    "https"
                };
                format!("{scheme}://{}", loc.endpoint)
            }
        });
        let is_aws = url.as_deref().is_none_or(|u| u.contains("amazonaws.com"));
        let path_style = match loc.addressing_style.as_str() {
            "path" => true,
            "virtual-hosted" => false,
            _ => !is_aws,
        };
        let region = if loc.region.is_empty() {
            "us-east-1".to_string()
        } else {
            loc.region.clone()
        };
        Self {
            url,
            region,
            path_style,
        }
    }
}

/// Builds the client. Credentials follow Argo's priority: access and secret key secrets (with
/// an optional session token) > `roleARN` (STS AssumeRole) > `useSDKCreds` or nothing given
/// (the AWS default chain: env, profile, web identity/IRSA, ECS, instance metadata).
pub async fn client(
    loc: &S3Artifact,
    secrets: &Secrets,
    timeouts: Timeouts,
) -> Result<aws_sdk_s3::Client> {
    let region = Region::new(Endpoint::from_location(loc).region);
    let mut builder = builder(loc, secrets, timeouts)?;

    let access = secrets.read_opt(loc.access_key_secret.as_ref())?;
    let secret = secrets.read_opt(loc.secret_key_secret.as_ref())?;
    match (access, secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => {
            let token = secrets
                .read_opt(loc.session_token_secret.as_ref())?
                .map(|t| t.expose_trimmed().to_string());
            builder = builder.credentials_provider(Credentials::new(
                a.expose_trimmed(),
                s.expose_trimmed(),
                token,
                None,
                "argo-secret",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "the S3 access key or secret key secret is empty",
            ));
        }
        _ => {
            let shared = aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .load()
                .await;
            let provider = shared.credentials_provider().ok_or_else(|| {
                Error::config("no S3 credentials: no key secrets and no AWS default credentials")
            })?;
            if loc.role_arn.is_empty() {
                builder = builder.credentials_provider(provider);
            } else {
                let assumed = aws_config::sts::AssumeRoleProvider::builder(&loc.role_arn)
                    .session_name("argoexec")
                    .configure(&shared)
                    .build()
                    .await;
                builder = builder.credentials_provider(assumed);
            }
        }
    }
    Ok(aws_sdk_s3::Client::from_conf(builder.build()))
}

/// The client configuration of a location, credentials aside: endpoint, addressing, region,
/// timeouts, TLS, and no SDK retries (ours are typed, in `storage::retry`).
pub(crate) fn builder(
    loc: &S3Artifact,
    secrets: &Secrets,
    timeouts: Timeouts,
) -> Result<aws_sdk_s3::config::Builder> {
    let endpoint = Endpoint::from_location(loc);
    let mut builder = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(endpoint.region.clone()))
        .force_path_style(endpoint.path_style)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.read)
                .build(),
        )
        .http_client(http_client(loc, secrets)?);
    if let Some(url) = &endpoint.url {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::config(format!("the S3 endpoint {url:?} is not valid: {e}")))?;
        if parsed.host().is_none() {
            return Err(Error::config(format!(
                "the S3 endpoint {url:?} has no host"
            )));
        }
        builder = builder.endpoint_url(url);
    }
    if endpoint
        .url
        .as_deref()
        .is_some_and(|u| !u.contains("amazonaws.com"))
    {
        // S3-compatible servers often reject the SDK's default aws-chunked CRC trailers; we send
        // our own per-part CRC32C header instead (see storage::verify).
        builder = builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Ok(builder)
}

/// The HTTPS client: rustls with aws-lc; `caSecret` replaces the trusted roots.
fn http_client(
    loc: &S3Artifact,
    secrets: &Secrets,
) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient> {
    let mut ctx = tls::TlsContext::builder();
    if let Some(ca) = secrets.read_opt(loc.ca_secret.as_ref())? {
        ctx = ctx.with_trust_store(
            tls::TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(ca.expose().as_bytes().to_vec()),
        );
    }
    let ctx = ctx
        .build()
        .map_err(|e| Error::config(format!("invalid S3 TLS configuration: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(ctx)
        .build_https())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(endpoint: &str, insecure: bool, style: &str) -> S3Artifact {
        S3Artifact {
            endpoint: endpoint.into(),
            insecure: Some(insecure),
            addressing_style: style.into(),
            ..Default::default()
        }
    }

    #[test]
    fn endpoints_follow_argos_rules() {
        let e = Endpoint::from_location(&loc("minio:9000", true, ""));
        assert_eq!(e.url.as_deref(), Some("http://minio:9000"));
        assert!(e.path_style);
        assert_eq!(e.region, "us-east-1");

        let e = Endpoint::from_location(&loc("s3.amazonaws.com", false, ""));
        assert_eq!(e.url.as_deref(), Some("https://s3.amazonaws.com"));
        assert!(!e.path_style);

        let e = Endpoint::from_location(&loc("s3.amazonaws.com", false, "path"));
        assert!(e.path_style);
        let e = Endpoint::from_location(&loc("minio:9000", false, "virtual-hosted"));
        assert!(!e.path_style);
    }
}
