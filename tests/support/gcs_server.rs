//! fake-gcs-server (the Go emulator, installed by `scripts/setup-test-tools.sh`) on 127.0.0.1,
//! in memory, speaking the JSON API and resumable uploads over plain HTTP.

use super::process::{ServerProcess, tool};

/// A running fake-gcs-server; stopped by PID when dropped.
pub struct FakeGcs {
    pub server: ServerProcess,
}

impl FakeGcs {
    pub async fn start() -> Self {
        let bin = tool("ARGOEXEC_FAKE_GCS");
        let server = ServerProcess::start(
            "fake-gcs-server",
            &bin,
            |port| {
                [
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    // Resumable upload sessions are handed out at this URL.
                    "-external-url",
                    &format!("http://127.0.0.1:{port}"),
                    "-backend",
                    "memory",
                    "-log-level",
                    "warn",
                ]
                .map(String::from)
                .to_vec()
            },
            "/storage/v1/b",
        )
        .await;
        Self { server }
    }

    /// What `STORAGE_EMULATOR_HOST` is set to for clients of this server.
    pub fn emulator_host(&self) -> String {
        self.server.url()
    }

    pub async fn create_bucket(&self, name: &str) {
        let request = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project=test", self.server.url()))
            .json(&serde_json::json!({ "name": name }));
        succeeds(request, &format!("create bucket {name}")).await;
    }

    /// Stores `data` as the object `name`, whatever the name holds (`..`, `//`, unicode): the
    /// emulator keeps names as plain strings, as GCS does.
    pub async fn put(&self, bucket: &str, name: &str, data: Vec<u8>) {
        let mut url = reqwest::Url::parse(&self.server.url()).expect("url");
        url.path_segments_mut()
            .expect("base")
            .extend(["upload", "storage", "v1", "b", bucket, "o"]);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", name);
        let request = reqwest::Client::new().post(url).body(data);
        succeeds(request, &format!("put {name}")).await;
    }

    /// The bytes of an object, `None` when it does not exist.
    pub async fn get(&self, bucket: &str, name: &str) -> Option<Vec<u8>> {
        let mut url = reqwest::Url::parse(&self.server.url()).expect("url");
        url.path_segments_mut()
            .expect("base")
            .extend(["storage", "v1", "b", bucket, "o", name]);
        url.query_pairs_mut().append_pair("alt", "media");
        let response = reqwest::get(url).await.expect("get object");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "get {name}: {}",
            response.status()
        );
        Some(response.bytes().await.expect("body").to_vec())
    }

    /// The object names below `prefix`, sorted.
    pub async fn names(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut url = reqwest::Url::parse(&self.server.url()).expect("url");
        url.path_segments_mut()
            .expect("base")
            .extend(["storage", "v1", "b", bucket, "o"]);
        url.query_pairs_mut().append_pair("prefix", prefix);
        let listing: serde_json::Value = reqwest::get(url)
            .await
            .expect("list")
            .json()
            .await
            .expect("listing");
        let mut names: Vec<String> = listing["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Sends `request` and asserts it succeeded; `what` names it in the failure.
async fn succeeds(request: reqwest::RequestBuilder, what: &str) {
    let response = request.send().await.expect(what);
    assert!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
}
