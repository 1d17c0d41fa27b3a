//! The metadata calls (object metadata, listing, delete) on the GCS JSON API.
//!
//! The client library offers these only on its gRPC control client (`StorageControl`, the v2
//! API over HTTP/2). The JSON API is the same service over plain HTTPS, the transport the
//! library already uses for reads and uploads, so every call of the driver goes the same way:
//! through the same proxies, against the same emulators, with the same credentials.

use std::collections::BTreeMap;

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use reqwest::Method;
use url::Url;

use super::error::{from_http, from_response};
use crate::storage::timeouts::Timeouts;
use crate::storage::{Error, ErrorKind, ListPage, ObjectMeta, Result};

/// The JSON API of one bucket.
#[derive(Debug, Clone)]
pub struct JsonApi {
    http: reqwest::Client,
    base: Url,
    bucket: String,
    credentials: Credentials,
}

impl JsonApi {
    pub fn new(
        endpoint: &str,
        bucket: &str,
        credentials: Credentials,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let base = Url::parse(endpoint)
            .map_err(|e| Error::config(format!("invalid GCS endpoint {endpoint:?}: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(Error::config(format!("invalid GCS endpoint {endpoint:?}")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .build()
            .map_err(|e| Error::config(format!("cannot build the GCS HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            bucket: bucket.to_string(),
            credentials,
        })
    }

    /// `<base>/storage/v1/b/<bucket>/o[/<object>]`, each segment percent-encoded (a `/` in an
    /// object name included, as the API requires).
    fn url(&self, object: Option<&str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["storage", "v1", "b", &self.bucket, "o"]);
            if let Some(name) = object {
                segments.push(name);
            }
        }
        url
    }

    /// A request with the credentials' headers.
    pub async fn request(&self, method: Method, url: &str) -> Result<reqwest::RequestBuilder> {
        let headers = match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(e) => {
                let kind = if e.is_transient() {
                    ErrorKind::Network
                } else {
                    ErrorKind::Auth
                };
                return Err(Error::backend(
                    "gcs",
                    kind,
                    format!("cannot authenticate to GCS: {e}"),
                ));
            }
        };
        Ok(self.http.request(method, url).headers(headers))
    }

    async fn send(&self, method: Method, url: Url, key: &str) -> Result<reqwest::Response> {
        self.request(method, url.as_str())
            .await?
            .send()
            .await
            .map_err(|e| from_http(e, key))
    }

    /// Sends a request and decodes a JSON answer; a 404 is [`Error::NotFound`].
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        key: &str,
    ) -> Result<T> {
        let response = self.send(method, url, key).await?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| from_http(e, key))?;
        if !(200..300).contains(&status) {
            return Err(from_response(status, &body, key));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Error::backend(
                "gcs",
                ErrorKind::Server,
                format!("{key}: unexpected answer from GCS: {e}"),
            )
        })
    }

    /// Where resumable upload sessions for `name` are started.
    pub fn upload_url(&self, name: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["upload", "storage", "v1", "b", &self.bucket, "o"]);
        }
        url.query_pairs_mut()
            .append_pair("uploadType", "resumable")
            .append_pair("name", name);
        url
    }

    /// The metadata of one object.
    pub async fn head(&self, name: &str) -> Result<ObjectMeta> {
        let mut url = self.url(Some(name));
        url.query_pairs_mut()
            .append_pair("fields", "name,size,etag,metadata");
        let object: Object = self.json(Method::GET, url, name).await?;
        Ok(object.into_meta())
    }

    /// One page of the objects whose names start with `prefix`.
    pub async fn list(
        &self,
        prefix: &str,
        page: Option<&str>,
        page_size: Option<u32>,
    ) -> Result<ListPage> {
        let mut url = self.url(None);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("prefix", prefix)
                .append_pair("fields", "items(name,size,etag),nextPageToken");
            if let Some(token) = page {
                q.append_pair("pageToken", token);
            }
            if let Some(n) = page_size {
                q.append_pair("maxResults", &n.to_string());
            }
        }
        // A listing finds no object or some, never a missing key: its 404 is the bucket's. (A
        // read's 404 cannot tell the two apart, so key-as-directory loads, which list next,
        // still fail loudly on a missing bucket.)
        let listing: Listing = self
            .json(Method::GET, url, prefix)
            .await
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::backend(
                    "gcs",
                    ErrorKind::Request,
                    format!("the bucket {} does not exist", self.bucket),
                ),
                other => other,
            })?;
        Ok(ListPage {
            objects: listing.items.into_iter().map(Object::into_meta).collect(),
            next: listing.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// Deletes one object; an absent object is not an error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let response = self
            .send(Method::DELETE, self.url(Some(name)), name)
            .await?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) || status == 404 {
            return Ok(());
        }
        let body = response.bytes().await.map_err(|e| from_http(e, name))?;
        Err(from_response(status, &body, name))
    }
}

/// An object resource as the JSON API returns it: its metadata and its CRC32C.
pub fn parse_object(body: &[u8], key: &str) -> Result<(ObjectMeta, Option<u32>)> {
    let object: Object = serde_json::from_slice(body).map_err(|e| {
        Error::backend(
            "gcs",
            ErrorKind::Server,
            format!("{key}: unexpected answer from GCS: {e}"),
        )
    })?;
    let crc32c = object
        .crc32c
        .as_deref()
        .and_then(|c| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, c).ok())
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .map(u32::from_be_bytes);
    Ok((object.into_meta(), crc32c))
}

/// The fields of an object resource the driver reads (`size` is a decimal string).
#[derive(serde::Deserialize)]
struct Object {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Base64 of the big-endian CRC32C.
    #[serde(default)]
    crc32c: Option<String>,
}

impl Object {
    fn into_meta(self) -> ObjectMeta {
        // GCS keeps a CRC32C of every object: downloads are checked against it.
        let crc32c = self
            .crc32c
            .as_deref()
            .and_then(|c| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, c).ok()
            })
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(u32::from_be_bytes);
        ObjectMeta {
            key: self.name,
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or_default(),
            etag: self.etag,
            metadata: self
                .metadata
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            crc32c,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_one_encoded_segment() {
        let api = JsonApi::new(
            "http://127.0.0.1:4443",
            "bkt",
            google_cloud_auth::credentials::anonymous::Builder::new().build(),
            Timeouts::OBJECT_STORE,
        )
        .expect("api");
        assert_eq!(
            api.url(Some("wf/pod 1/out.tgz")).as_str(),
            "http://127.0.0.1:4443/storage/v1/b/bkt/o/wf%2Fpod%201%2Fout.tgz"
        );
        assert_eq!(
            api.url(None).as_str(),
            "http://127.0.0.1:4443/storage/v1/b/bkt/o"
        );
    }
}
