//! From an Argo `oss:` location to the S3 location and credentials of OSS's S3-compatible API.
//!
//! The rules are those of Alibaba's Go SDK, which Argo uses: an endpoint without a scheme is
//! plain `http://`; a host that is an IP address is addressed path-style, any other host
//! virtual-hosted (`<bucket>.<endpoint>`). The SigV4 region is the general region id taken
//! from the endpoint (`oss-cn-hangzhou[-internal].aliyuncs.com` -> `cn-hangzhou`).

use aws_sdk_s3::config::Credentials;

use crate::model::{CreateS3BucketOptions, OssArtifact, S3Artifact};
use crate::storage::{Error, Result, Secrets};

/// Environment variables of Alibaba's default credential chain that `useSDKCreds` reads.
const ENV_ACCESS_KEY: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
const ENV_SECRET_KEY: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// The S3 view of an OSS location.
pub fn s3_location(loc: &OssArtifact) -> Result<S3Artifact> {
    if loc.endpoint.is_empty() {
        return Err(Error::config("the OSS location has no endpoint"));
    }
    if loc.bucket.is_empty() {
        return Err(Error::config("the OSS location has no bucket"));
    }
    let with_scheme = if loc.endpoint.contains("://") {
        loc.endpoint.clone()
    } else {
        format!("http://{}", loc.endpoint)
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| Error::config(format!("invalid OSS endpoint {:?}: {e}", loc.endpoint)))?;
    let path_style = matches!(
        url.host(),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
    );
    Ok(S3Artifact {
        endpoint: with_scheme,
        bucket: loc.bucket.clone(),
        region: region_of(url.host_str().unwrap_or_default()),
        addressing_style: if path_style { "path" } else { "virtual-hosted" }.into(),
        create_bucket_if_not_present: loc
            .create_bucket_if_not_present
            .then(CreateS3BucketOptions::default),
        key: loc.key.clone(),
        ..Default::default()
    })
}

/// The general region id of an OSS endpoint host; `us-east-1` (any value signs) for others.
fn region_of(host: &str) -> String {
    host.strip_prefix("s3.")
        .unwrap_or(host)
        .split('.')
        .next()
        .and_then(|label| label.strip_prefix("oss-"))
        .filter(|_| host.ends_with(".aliyuncs.com"))
        .map(|r| r.trim_end_matches("-internal").to_string())
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// Argo's credentials: the key secrets with the optional `securityToken` (a plain field), or
/// with `useSDKCreds` the environment of Alibaba's default chain.
pub fn credentials(loc: &OssArtifact, secrets: &Secrets) -> Result<Credentials> {
    let token = (!loc.security_token.is_empty()).then(|| loc.security_token.clone());
    if loc.use_sdk_creds {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        return match (var(ENV_ACCESS_KEY), var(ENV_SECRET_KEY)) {
            (Some(a), Some(s)) => Ok(Credentials::new(
                a,
                s,
                var(ENV_SECURITY_TOKEN).or(token),
                None,
                "alibaba-env",
            )),
            _ => Err(Error::not_supported(
                "oss",
                format!(
                    "useSDKCreds for OSS reads {ENV_ACCESS_KEY} and {ENV_SECRET_KEY} only; \
                     RAM roles and OIDC are not supported yet"
                ),
            )),
        };
    }
    let access = secrets.read_opt(loc.access_key_secret.as_ref())?;
    let secret = secrets.read_opt(loc.secret_key_secret.as_ref())?;
    match (access, secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok(Credentials::new(
            a.expose_trimmed(),
            s.expose_trimmed(),
            token,
            None,
            "argo-secret",
        )),
        _ => Err(Error::config(
            "the OSS location needs accessKeySecret and secretKeySecret (or useSDKCreds)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oss(endpoint: &str) -> OssArtifact {
        OssArtifact {
            endpoint: endpoint.into(),
            bucket: "b".into(),
            key: "k".into(),
            ..Default::default()
        }
    }

    #[test]
    fn endpoints_follow_the_alibaba_sdk() {
        let s = s3_location(&oss("oss-cn-hangzhou.aliyuncs.com")).expect("loc");
        assert_eq!(s.endpoint, "http://oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(s.addressing_style, "virtual-hosted");
        assert_eq!(s.region, "cn-hangzhou");

        let s = s3_location(&oss("https://oss-eu-central-1-internal.aliyuncs.com")).expect("loc");
        assert_eq!(s.endpoint, "https://oss-eu-central-1-internal.aliyuncs.com");
        assert_eq!(s.region, "eu-central-1");

        let s = s3_location(&oss("https://s3.oss-ap-southeast-1.aliyuncs.com")).expect("loc");
        assert_eq!(s.region, "ap-southeast-1");

        let s = s3_location(&oss("127.0.0.1:9000")).expect("loc");
        assert_eq!(s.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s.addressing_style, "path");
        assert_eq!(s.region, "us-east-1");

        let s = s3_location(&oss("https://oss.example.com")).expect("loc");
        assert_eq!(s.addressing_style, "virtual-hosted");
        assert!(s3_location(&oss("")).is_err());
    }
}
