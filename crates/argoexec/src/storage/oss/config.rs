//! From an Argo `oss:` location to the S3 location and credentials of OSS's S3-compatible API.
//!
//! The rules are those of Alibaba's Go SDK, which Argo uses: an endpoint without a scheme is
//! plain `http://`; a host that is an IP address is addressed path-style, any other host
//! virtual-hosted (`<bucket>.<endpoint>`). The SigV4 region is the general region id taken
//! from the endpoint (`oss-cn-hangzhou[-internal].aliyuncs.com` -> `cn-hangzhou`).

use aws_sdk_s3::config::Credentials;

use aws_sdk_s3::config::SharedCredentialsProvider;
use aws_sdk_s3::types::BucketLifecycleConfiguration;

use crate::model::{CreateS3BucketOptions, OssArtifact, OssLifecycleRule, S3Artifact};
use crate::storage::timeouts::Timeouts;
use crate::storage::{Error, Result, Secrets, StorageConfig};

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
/// with `useSDKCreds` Alibaba's default chain (see [`super::credentials`]).
pub fn credentials(
    loc: &OssArtifact,
    secrets: &Secrets,
    settings: &StorageConfig,
) -> Result<SharedCredentialsProvider> {
    let token = (!loc.security_token.is_empty()).then(|| loc.security_token.clone());
    if loc.use_sdk_creds {
        return super::credentials::resolve(
            &settings.oss_credentials,
            token,
            settings.timeouts.over(Timeouts::OBJECT_STORE),
        );
    }
    let access = secrets.read_opt(loc.access_key_secret.as_ref())?;
    let secret = secrets.read_opt(loc.secret_key_secret.as_ref())?;
    match (access, secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => {
            Ok(SharedCredentialsProvider::new(Credentials::new(
                a.expose_trimmed(),
                s.expose_trimmed(),
                token,
                None,
                "argo-secret",
            )))
        }
        _ => Err(Error::config(
            "the OSS location needs accessKeySecret and secretKeySecret (or useSDKCreds)",
        )),
    }
}

/// Argo's check of a `lifecycleRule`, with its words.
pub fn check_lifecycle_rule(rule: &OssLifecycleRule) -> Result<()> {
    if rule.mark_infrequent_access_after_days > rule.mark_deletion_after_days {
        return Err(Error::config(
            "markInfrequentAccessAfterDays cannot be large than markDeletionAfterDays",
        ));
    }
    Ok(())
}

/// The bucket lifecycle of a `lifecycleRule` for the objects below `prefix`: move to
/// Infrequent Access after `markInfrequentAccessAfterDays`, delete after
/// `markDeletionAfterDays` (a zero leaves that action out; both zero, no rule at all, as
/// Argo). Argo's own rule passes the first number to the expiration too, deleting objects when
/// they were meant to move to IA; we do what the field names say (docs/compatibility.md).
pub fn lifecycle_configuration(
    rule: &OssLifecycleRule,
    prefix: &str,
) -> Result<Option<BucketLifecycleConfiguration>> {
    use aws_sdk_s3::types::{
        ExpirationStatus, LifecycleExpiration, LifecycleRule, Transition, TransitionStorageClass,
    };
    let (ia, deletion) = (
        rule.mark_infrequent_access_after_days,
        rule.mark_deletion_after_days,
    );
    if ia == 0 && deletion == 0 {
        return Ok(None);
    }
    let invalid = |e: aws_sdk_s3::error::BuildError| Error::config(format!("lifecycleRule: {e}"));
    // OSS takes the rule's prefix as a `Prefix` element of the rule (its own XML), which is
    // S3's older form of the filter; S3 still accepts it.
    #[allow(deprecated)]
    let mut built = LifecycleRule::builder()
        .id("argo-artifacts")
        .prefix(prefix)
        .status(ExpirationStatus::Enabled);
    if ia > 0 {
        built = built.transitions(
            Transition::builder()
                .days(ia)
                .storage_class(TransitionStorageClass::from("IA"))
                .build(),
        );
    }
    if deletion > 0 {
        built = built.expiration(LifecycleExpiration::builder().days(deletion).build());
    }
    Ok(Some(
        BucketLifecycleConfiguration::builder()
            .rules(built.build().map_err(invalid)?)
            .build()
            .map_err(invalid)?,
    ))
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
