//! HTTP(S) and Artifactory artifacts on `reqwest` (rustls with aws-lc, no OpenSSL).
//!
//! Load is a GET, save a PUT, and the key is the URL's path (Argo's `GetKey`/`SetKey` for these
//! locations). Where Argo reads the whole body in one GET, this driver first asks for one byte
//! (`Range: bytes=0-0`): a `206` tells the size and that ranges work, so the download pipeline
//! fetches large files in concurrent ranges; a `200` means the server ignores ranges, and that
//! very response is kept and handed out as the single stream, so nothing is requested twice.
//! HEAD is not used: presigned URLs are signed for GET only, and some servers refuse HEAD.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode, header};

use super::timeouts::Timeouts;
use super::{ByteStream, Driver, Error, ErrorKind, GetStream, ListPage, ObjectMeta, PutOptions};
use super::{Result, Secrets, StorageConfig};
use crate::model::{ArtifactoryArtifact, HttpArtifact};

mod config;
mod error;

use config::{Settings, TokenSource};

/// What the first, one-byte GET of a key told.
#[derive(Debug)]
enum Probe {
    /// The server answers ranges.
    Ranged,
    /// The server sent the whole object; this response is the body to use.
    Whole(reqwest::Response),
}

/// One HTTP location (`http:` or `artifactory:`).
#[derive(Debug)]
pub struct HttpDriver {
    name: &'static str,
    settings: Settings,
    client: reqwest::Client,
    token: Option<TokenSource>,
    probes: Mutex<HashMap<String, Probe>>,
}

impl HttpDriver {
    /// An `http:` location, with `storage_config`'s timeouts.
    pub fn http(
        loc: &HttpArtifact,
        secrets: &Secrets,
        storage_config: &StorageConfig,
    ) -> Result<Self> {
        Self::new("http", Settings::from_http(loc, secrets)?, storage_config)
    }

    /// An `artifactory:` location, with `storage_config`'s timeouts.
    pub fn artifactory(
        loc: &ArtifactoryArtifact,
        secrets: &Secrets,
        storage_config: &StorageConfig,
    ) -> Result<Self> {
        let settings = Settings::from_artifactory(loc, secrets)?;
        Self::new("artifactory", settings, storage_config)
    }

    fn new(name: &'static str, settings: Settings, storage_config: &StorageConfig) -> Result<Self> {
        let timeouts = storage_config.timeouts.over(Timeouts::HTTP);
        let client = settings.client(timeouts)?;
        let token = settings.oauth2.clone().map(TokenSource::new);
        Ok(Self {
            name,
            settings,
            client,
            token,
            probes: Mutex::new(HashMap::new()),
        })
    }

    /// The URL of `key`: the location's URL with its path replaced by the key (query kept).
    fn url(&self, key: &str) -> url::Url {
        let mut url = self.settings.url.clone();
        if url.path().trim_start_matches('/') != key {
            url.set_path(key);
        }
        url
    }

    /// A request with the location's headers and credentials.
    async fn request(&self, method: Method, url: &url::Url) -> Result<reqwest::RequestBuilder> {
        let mut req = self.client.request(method, url.clone());
        for (name, value) in &self.settings.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, token.header(&self.client).await?);
        } else if let Some(b) = &self.settings.basic {
            req = req.basic_auth(b.username.expose(), Some(b.password.expose()));
        }
        Ok(req)
    }

    /// Sends a GET of `key`, with a `Range` header when `range` is given.
    async fn send_get(&self, key: &str, range: Option<&str>) -> Result<reqwest::Response> {
        let url = self.url(key);
        let mut req = self.request(Method::GET, &url).await?;
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        let res = req
            .send()
            .await
            .map_err(|e| error::transport(self.name, "GET", &url, &e))?;
        if !res.status().is_success() && res.status() != StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(error::load_status(self.name, key, &url, res.status()));
        }
        Ok(res)
    }

    fn remember(&self, key: &str, probe: Probe) {
        if let Ok(mut probes) = self.probes.lock() {
            probes.insert(key.to_string(), probe);
        }
    }

    fn take_whole(&self, key: &str) -> Option<reqwest::Response> {
        let mut probes = self.probes.lock().ok()?;
        match probes.remove(key) {
            Some(Probe::Whole(res)) => Some(res),
            Some(other) => {
                probes.insert(key.to_string(), other);
                None
            }
            None => None,
        }
    }

    fn body(&self, key: &str, res: reqwest::Response) -> ByteStream {
        let name = self.name;
        let key = key.to_string();
        res.bytes_stream()
            .map_err(move |e| {
                Error::backend(
                    name,
                    crate::storage::classify_reqwest(&e),
                    format!("reading {key} failed: {}", crate::storage::cause_chain(&e)),
                )
            })
            .boxed()
    }

    /// PUTs `body` to `key`; `None` length = chunked transfer encoding.
    async fn send_put(&self, key: &str, body: reqwest::Body, len: Option<u64>) -> Result<()> {
        let url = self.url(key);
        let mut req = self.request(Method::PUT, &url).await?.body(body);
        if let Some(n) = len {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        let res = req
            .send()
            .await
            .map_err(|e| error::transport(self.name, "PUT", &url, &e))?;
        if !res.status().is_success() {
            return Err(error::save_status(self.name, key, &url, res.status()));
        }
        Ok(())
    }

    /// `saveStreamViaFile`: the stream goes to a temporary file first, then up with a length,
    /// re-read from the file when the server redirects the PUT (webHDFS does), as Argo's
    /// `GetBody` reopens the file.
    async fn put_via_file(&self, key: &str, mut body: ByteStream) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let tmp = tempfile::NamedTempFile::with_prefix("http-upload-")
            .map_err(|e| Error::io("creating a temporary file for the upload", e))?;
        let path = tmp.path().to_path_buf();
        let io_err = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |e| Error::io(what, e)
        };
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err("opening"))?;
        while let Some(chunk) = body.try_next().await? {
            file.write_all(&chunk).await.map_err(io_err("writing"))?;
        }
        file.flush().await.map_err(io_err("writing"))?;
        let len = file.metadata().await.map_err(io_err("reading"))?.len();
        drop(file);
        let mut url = self.url(key);
        for _ in 0..=MAX_REDIRECTS {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(io_err("reading"))?;
            let stream = tokio_util::io::ReaderStream::new(file);
            let res = self
                .request(Method::PUT, &url)
                .await?
                .header(header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map_err(|e| error::transport(self.name, "PUT", &url, &e))?;
            let status = res.status();
            let next = (status == StatusCode::TEMPORARY_REDIRECT
                || status == StatusCode::PERMANENT_REDIRECT)
                .then(|| res.headers().get(header::LOCATION)?.to_str().ok())
                .flatten()
                .and_then(|loc| url.join(loc).ok());
            match next {
                Some(next) => url = next,
                None if status.is_success() => return Ok(()),
                None => return Err(error::save_status(self.name, key, &url, status)),
            }
        }
        Err(Error::backend(
            self.name,
            ErrorKind::Request,
            format!("saving file {key}: more than {MAX_REDIRECTS} redirects"),
        ))
    }
}

/// Redirects followed, as Go's HTTP client does.
const MAX_REDIRECTS: usize = 10;

/// `bytes a-b/total` of a Content-Range header: the total size, when known.
fn total_of_content_range(res: &reqwest::Response) -> Option<u64> {
    res.headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .rsplit('/')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[async_trait]
impl Driver for HttpDriver {
    fn name(&self) -> &'static str {
        self.name
    }

    fn describe(&self) -> String {
        let mut url = self.settings.url.clone();
        url.set_path("");
        url.set_query(None);
        error::shown(&url).trim_end_matches('/').to_string()
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let res = self.send_get(key, Some("bytes=0-0")).await?;
        let etag = res
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim_matches('"').to_string());
        let size = match res.status() {
            // Ranges are served, and a zero-byte object has no byte 0.
            StatusCode::RANGE_NOT_SATISFIABLE => {
                self.remember(key, Probe::Ranged);
                0
            }
            StatusCode::PARTIAL_CONTENT => match total_of_content_range(&res) {
                Some(total) => {
                    self.remember(key, Probe::Ranged);
                    total
                }
                // `bytes 0-0/*`: ranges without a known size; read it whole.
                None => 0,
            },
            _ => {
                let size = res.content_length().unwrap_or(0);
                self.remember(key, Probe::Whole(res));
                size
            }
        };
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag,
            ..Default::default()
        })
    }

    fn serves_ranges(&self, key: &str) -> bool {
        self.probes
            .lock()
            .map(|p| matches!(p.get(key), Some(Probe::Ranged)))
            .unwrap_or(false)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        let meta = |size| ObjectMeta {
            key: key.to_string(),
            size,
            ..Default::default()
        };
        match range {
            None => {
                let res = match self.take_whole(key) {
                    Some(res) => res,
                    None => self.send_get(key, None).await?,
                };
                let size = res.content_length().unwrap_or(0);
                Ok(GetStream {
                    meta: meta(size),
                    body: self.body(key, res),
                })
            }
            Some(r) if r.is_empty() => Ok(GetStream {
                meta: meta(0),
                body: futures::stream::empty().boxed(),
            }),
            Some(r) => {
                let header = format!("bytes={}-{}", r.start, r.end - 1);
                let res = self.send_get(key, Some(&header)).await?;
                if res.status() != StatusCode::PARTIAL_CONTENT {
                    // A whole body for a range: this server does not serve ranges.
                    return Err(Error::not_supported(
                        self.name,
                        format!(
                            "the server answered {} to a request for bytes {}..{} of {key}",
                            res.status(),
                            r.start,
                            r.end
                        ),
                    ));
                }
                let size = total_of_content_range(&res).unwrap_or(r.end);
                Ok(GetStream {
                    meta: meta(size),
                    body: self.body(key, res),
                })
            }
        }
    }

    async fn put(&self, key: &str, data: Bytes, _opts: &PutOptions) -> Result<()> {
        let len = data.len() as u64;
        self.send_put(key, reqwest::Body::from(data), Some(len))
            .await
    }

    async fn put_stream(&self, key: &str, body: ByteStream, _opts: &PutOptions) -> Result<()> {
        if self.settings.save_via_file {
            return self.put_via_file(key, body).await;
        }
        self.send_put(key, reqwest::Body::wrap_stream(body), None)
            .await
    }

    async fn list(&self, _prefix: &str, _page: Option<String>) -> Result<ListPage> {
        Err(Error::not_supported(self.name, super::LIST_NOT_SUPPORTED))
    }

    async fn delete(&self, _key: &str) -> Result<()> {
        Err(Error::not_supported(self.name, super::DELETE_NOT_SUPPORTED))
    }
}
