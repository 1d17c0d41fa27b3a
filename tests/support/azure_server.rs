//! Azurite's blob service (npm `azurite`, installed by `scripts/setup-test-tools.sh`) on
//! 127.0.0.1, in memory, with its fixed development account.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};

use super::process::{ServerProcess, tool};

/// Azurite's development account and its well-known key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service; stopped by PID when dropped.
pub struct Azurite {
    pub server: ServerProcess,
}

impl Azurite {
    pub async fn start() -> Self {
        let bin = tool("ARGOEXEC_AZURITE");
        let server = ServerProcess::start(
            "azurite-blob",
            &bin,
            |port| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                ]
                .map(String::from)
                .to_vec()
            },
            &format!("/{ACCOUNT}?comp=list"),
        )
        .await;
        Self { server }
    }

    /// The endpoint as an Argo `azure:` location names it (path-style, account first).
    pub fn endpoint(&self) -> String {
        format!("{}/{ACCOUNT}", self.server.url())
    }

    /// `<endpoint>/<container>[/<blob>]?<account SAS>`.
    fn url(&self, container: &str, blob: Option<&str>) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.endpoint()).expect("url");
        {
            let mut segments = url.path_segments_mut().expect("base");
            segments.push(container);
            if let Some(b) = blob {
                segments.extend(b.split('/'));
            }
        }
        url.set_query(Some(&account_sas()));
        url
    }

    pub async fn create_container(&self, name: &str) {
        let mut url = self.url(name, None);
        url.query_pairs_mut().append_pair("restype", "container");
        let response = reqwest::Client::new()
            .put(url)
            .header("x-ms-version", "2022-11-02")
            .header("content-length", "0")
            .send()
            .await
            .expect("create container");
        assert!(
            response.status().is_success(),
            "create container {name}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }

    /// Writes a blob directly (empty directory markers and other fixtures).
    pub async fn put(&self, container: &str, blob: &str, body: Vec<u8>, metadata: &[(&str, &str)]) {
        let mut request = reqwest::Client::new()
            .put(self.url(container, Some(blob)))
            .header("x-ms-version", "2022-11-02")
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-length", body.len().to_string());
        for (k, v) in metadata {
            request = request.header(format!("x-ms-meta-{k}"), *v);
        }
        let response = request.body(body).send().await.expect("put blob");
        assert!(
            response.status().is_success(),
            "put {blob}: {}",
            response.status()
        );
    }

    /// The bytes of a blob, `None` when it does not exist.
    pub async fn get(&self, container: &str, blob: &str) -> Option<Vec<u8>> {
        let response = reqwest::Client::new()
            .get(self.url(container, Some(blob)))
            .header("x-ms-version", "2022-11-02")
            .send()
            .await
            .expect("get blob");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "get {blob}: {}",
            response.status()
        );
        Some(response.bytes().await.expect("body").to_vec())
    }

    /// The blob names below `prefix`, sorted.
    pub async fn names(&self, container: &str, prefix: &str) -> Vec<String> {
        let mut url = self.url(container, None);
        url.query_pairs_mut()
            .append_pair("restype", "container")
            .append_pair("comp", "list")
            .append_pair("prefix", prefix);
        let xml = reqwest::Client::new()
            .get(url)
            .header("x-ms-version", "2022-11-02")
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("listing");
        let mut names: Vec<String> = xml
            .split("<Name>")
            .skip(1)
            .filter_map(|s| s.split("</Name>").next().map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

/// An account SAS for the development account (everything, for a day): what the tests use to
/// create containers and inspect blobs behind the driver's back.
pub fn account_sas() -> String {
    let expiry = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (version, permissions, services, types) = ("2022-11-02", "racwdl", "b", "sco");
    // The account SAS string-to-sign (2020-12-06 and later) ends with a newline.
    let to_sign =
        format!("{ACCOUNT}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n\n{version}\n\n");
    let key = B64.decode(ACCOUNT_KEY).expect("key");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(to_sign.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", version)
        .append_pair("ss", services)
        .append_pair("srt", types)
        .append_pair("sp", permissions)
        .append_pair("se", &expiry)
        .append_pair("sig", &sig)
        .finish()
}
