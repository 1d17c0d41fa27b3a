//! Artifact driver plugins (Argo 4.0+): a third-party store behind Argo's `ArtifactService`
//! gRPC protocol (`proto/artifact.proto`), served by the plugin's container on the Unix socket
//! `/tmp/artifact-plugins/<name>/socket`.
//!
//! A plugin is not an object store: it loads and saves whole artifacts, addressed by the
//! `plugin:` location (name, opaque `configuration`, `key`). The [`Driver`] operations map onto
//! its calls: [`Driver::get`] is `OpenStream`, [`Driver::put_stream`] is `SaveStream` when
//! `GetCapabilities` offers it (no copy on disk) and otherwise `Save` of a file staged where the
//! plugin's sidecar can read it (`/tmp/argo/outputs/artifacts`, shared with `wait` as in
//! Argo's pod), [`Driver::list`] is `ListObjects`, [`Driver::delete`] is `Delete`. Input
//! loading uses `Load` ([`PluginDriver::load`]), as Argo's init containers do: the plugin writes
//! the artifact (file or directory) itself. Plugins report neither sizes nor byte ranges.

mod config;
mod error;
#[allow(clippy::all, missing_debug_implementations, missing_docs)]
pub mod proto;

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio::sync::OnceCell;
use tonic::transport::Channel;

pub use config::{
    DEFAULT_CONNECTION_TIMEOUT, SOCKET_ROOT, SOCKET_WAIT, connection_timeout, socket_dir,
    socket_path,
};
use proto::artifact_service_client::ArtifactServiceClient;

use super::{ByteStream, Driver, Error, GetStream, ListPage, ObjectMeta, PutOptions, Result};
use crate::contract::Roots;
use crate::model::{Artifact, PluginArtifact};

/// The driver's name in messages and metrics.
const DRIVER: &str = "plugin";

/// The most content one `SaveStream` frame carries: well under gRPC's default 4 MiB message
/// limit (the plugin's server enforces it), as Argo's client does.
pub const SAVE_STREAM_FRAME: usize = 2 << 20;

/// Where `wait` stages a file for a plugin without `SaveStream`: the directory Argo's pod
/// shares between `wait` and the plugin sidecars (`/tmp/argo/outputs`).
pub const STAGING_DIR: &str = "/tmp/argo/outputs/artifacts";

/// A connected plugin, for one `plugin:` location.
#[derive(Debug)]
pub struct PluginDriver {
    location: PluginArtifact,
    channel: Channel,
    client: ArtifactServiceClient<Channel>,
    staging: PathBuf,
    save_stream: OnceCell<bool>,
}

impl PluginDriver {
    /// Connects to the plugin of `location` on its socket under `roots`, waiting for the socket
    /// to appear (at most [`SOCKET_WAIT`]) and for the connection (`connectionTimeoutSeconds`).
    pub async fn connect(location: &PluginArtifact, roots: &Roots) -> Result<Self> {
        Self::connect_within(location, roots, SOCKET_WAIT).await
    }

    /// [`PluginDriver::connect`], waiting at most `wait` for the socket to appear.
    pub async fn connect_within(
        location: &PluginArtifact,
        roots: &Roots,
        wait: std::time::Duration,
    ) -> Result<Self> {
        if location.name.is_empty() {
            return Err(Error::config("plugin artifact location has no plugin name"));
        }
        let socket = socket_path(roots, &location.name);
        let channel =
            config::connect(&location.name, &socket, wait, connection_timeout(location)).await?;
        Ok(Self {
            location: location.clone(),
            client: ArtifactServiceClient::new(channel.clone()),
            channel,
            staging: roots.path(STAGING_DIR),
            save_stream: OnceCell::new(),
        })
    }

    fn plugin(&self) -> &str {
        &self.location.name
    }

    /// The artifact as the protocol carries it: its fields, and the location with `key`.
    fn wire(&self, art: Option<&Artifact>, key: &str) -> proto::Artifact {
        let text = |field: &str| {
            art.and_then(|a| a.rest.get(field))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        proto::Artifact {
            name: art.map(|a| a.name.clone()).unwrap_or_default(),
            path: art.map(|a| a.path.clone()).unwrap_or_default(),
            mode: art.and_then(|a| a.mode).unwrap_or_default(),
            from: text("from"),
            plugin: Some(proto::PluginArtifact {
                name: self.location.name.clone(),
                configuration: self.location.configuration.clone(),
                connection_timeout_seconds: connection_timeout(&self.location)
                    .as_secs()
                    .try_into()
                    .unwrap_or(i32::MAX),
                key: key.to_string(),
            }),
            optional: art.is_some_and(|a| a.optional),
            sub_path: text("subPath"),
            recurse_mode: art.is_some_and(|a| a.recurse_mode),
            from_expression: text("fromExpression"),
            deleted: art.is_some_and(|a| a.deleted),
        }
    }

    /// `Load`: the plugin writes the artifact `art` (at `key`) to `path`, a file or a
    /// directory, on the volume it shares with the executor.
    pub async fn load(&self, art: &Artifact, key: &str, path: &Path) -> Result<()> {
        let reply = self
            .client
            .clone()
            .load(proto::LoadArtifactRequest {
                input_artifact: Some(self.wire(Some(art), key)),
                path: path.display().to_string(),
            })
            .await
            .map_err(|s| error::status(self.plugin(), "load", key, &s))?
            .into_inner();
        if !reply.success {
            return Err(error::refused(self.plugin(), "load", &reply.error));
        }
        Ok(())
    }

    /// `IsDirectory`: whether `key` names a directory in the plugin's store.
    pub async fn is_directory(&self, key: &str) -> Result<bool> {
        let operation = "is directory check";
        let reply = self
            .client
            .clone()
            .is_directory(proto::IsDirectoryRequest {
                artifact: Some(self.wire(None, key)),
            })
            .await
            .map_err(|s| error::status(self.plugin(), operation, key, &s))?
            .into_inner();
        if !reply.error.is_empty() {
            return Err(error::refused(self.plugin(), operation, &reply.error));
        }
        Ok(reply.is_directory)
    }

    /// Whether the plugin implements `SaveStream` (asked once). A plugin older than
    /// `GetCapabilities` answers Unimplemented: it does not.
    pub async fn supports_save_stream(&self) -> Result<bool> {
        self.save_stream
            .get_or_try_init(|| async {
                match self
                    .client
                    .clone()
                    .get_capabilities(proto::GetCapabilitiesRequest {})
                    .await
                {
                    Ok(reply) => Ok(reply.into_inner().supports_save_stream),
                    Err(s) if s.code() == tonic::Code::Unimplemented => Ok(false),
                    Err(s) => Err(error::status(self.plugin(), "get capabilities", "", &s)),
                }
            })
            .await
            .copied()
    }

    /// `SaveStream`: the metadata frame, then the body in frames of at most
    /// [`SAVE_STREAM_FRAME`] bytes. A body that fails aborts the call ([`SaveFrame::Abort`]),
    /// so the plugin never sees a truncated artifact as complete.
    async fn save_streamed(&self, key: &str, mut body: ByteStream) -> Result<()> {
        let operation = "save stream";
        let (mut frames, rx) = futures::channel::mpsc::channel(1);
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| {
            error::status(
                self.plugin(),
                operation,
                key,
                &tonic::Status::unavailable(e.to_string()),
            )
        })?;
        let call = grpc.client_streaming(
            tonic::Request::new(rx),
            http::uri::PathAndQuery::from_static(SAVE_STREAM_PATH),
            AbortableCodec,
        );
        tokio::pin!(call);
        let first = SaveFrame::Frame(Box::new(proto::SaveStreamArtifactRequest {
            output_artifact: Some(self.wire(None, key)),
            chunk: Bytes::new(),
        }));
        let feed = async move {
            if frames.send(first).await.is_err() {
                // The call ended early: its status says why.
                return Ok(());
            }
            loop {
                let mut data = match body.try_next().await {
                    Ok(Some(data)) => data,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        let _ = frames.send(SaveFrame::Abort(e.to_string())).await;
                        return Err(e);
                    }
                };
                while !data.is_empty() {
                    let chunk = data.split_to(data.len().min(SAVE_STREAM_FRAME));
                    let frame = proto::SaveStreamArtifactRequest {
                        output_artifact: None,
                        chunk,
                    };
                    if frames
                        .send(SaveFrame::Frame(Box::new(frame)))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
        };
        tokio::pin!(feed);
        let (mut fed, mut failure) = (false, None);
        // The call is driven to its end even after the body failed, so the abort reaches it.
        let reply = loop {
            tokio::select! {
                reply = &mut call => break reply,
                outcome = &mut feed, if !fed => {
                    fed = true;
                    failure = outcome.err();
                }
            }
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let reply = reply
            .map_err(|s| error::status(self.plugin(), operation, key, &s))?
            .into_inner();
        if !reply.success {
            return Err(error::refused(self.plugin(), operation, &reply.error));
        }
        Ok(())
    }

    /// `Save` of a file staged under [`STAGING_DIR`] (removed afterwards).
    async fn save_staged(&self, key: &str, mut body: ByteStream) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        tokio::fs::create_dir_all(&self.staging)
            .await
            .map_err(|e| Error::io(format!("creating {}", self.staging.display()), e))?;
        let staged = Staged(self.staging.join(format!(
            "plugin-upload-{}-{}",
            std::process::id(),
            STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )));
        let mut file = tokio::fs::File::create(&staged.0)
            .await
            .map_err(|e| Error::io(format!("creating {}", staged.0.display()), e))?;
        while let Some(data) = body.try_next().await? {
            file.write_all(&data)
                .await
                .map_err(|e| Error::io(format!("writing {}", staged.0.display()), e))?;
        }
        file.flush()
            .await
            .map_err(|e| Error::io(format!("writing {}", staged.0.display()), e))?;
        drop(file);
        let reply = self
            .client
            .clone()
            .save(proto::SaveArtifactRequest {
                path: staged.0.display().to_string(),
                output_artifact: Some(self.wire(None, key)),
            })
            .await
            .map_err(|s| error::status(self.plugin(), "save", key, &s))?
            .into_inner();
        if !reply.success {
            return Err(error::refused(self.plugin(), "save", &reply.error));
        }
        Ok(())
    }
}

/// The gRPC method of `SaveStream`.
const SAVE_STREAM_PATH: &str = "/artifact.ArtifactService/SaveStream";

/// One frame of a `SaveStream` call, or the order to abort it.
enum SaveFrame {
    Frame(Box<proto::SaveStreamArtifactRequest>),
    Abort(String),
}

/// Prost's encoding of `SaveStream` frames, where an abort is an encoding error. A client
/// stream that merely ends would look complete to the plugin; an encoding error fails the
/// request body instead, and the HTTP/2 stream is reset, which the plugin sees as the call
/// broken off.
#[derive(Debug, Clone, Copy)]
struct AbortableCodec;

#[derive(Debug, Clone, Copy)]
struct AbortableEncoder;

type ResponseCodec =
    tonic_prost::ProstCodec<proto::SaveStreamArtifactRequest, proto::SaveArtifactResponse>;

impl tonic::codec::Encoder for AbortableEncoder {
    type Item = SaveFrame;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: SaveFrame,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> std::result::Result<(), tonic::Status> {
        match item {
            SaveFrame::Frame(frame) => prost::Message::encode(frame.as_ref(), dst)
                .map_err(|e| tonic::Status::internal(e.to_string())),
            SaveFrame::Abort(why) => Err(tonic::Status::cancelled(why)),
        }
    }
}

impl tonic::codec::Codec for AbortableCodec {
    type Encode = SaveFrame;
    type Decode = proto::SaveArtifactResponse;
    type Encoder = AbortableEncoder;
    type Decoder = <ResponseCodec as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        AbortableEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut ResponseCodec::default())
    }
}

/// Numbers the staged files of this process.
static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A staged file, removed when dropped (saved or not).
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[async_trait]
impl Driver for PluginDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn describe(&self) -> String {
        format!("plugin {}", self.plugin())
    }

    /// Plugins report no sizes: the object is taken as there, of unknown (0) size, and read
    /// whole; a missing one fails when it is read.
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        Ok(ObjectMeta {
            key: key.to_string(),
            ..Default::default()
        })
    }

    fn serves_ranges(&self, _key: &str) -> bool {
        false
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetStream> {
        if range.is_some() {
            return Err(Error::not_supported(
                DRIVER,
                "artifact plugins serve whole artifacts, not byte ranges",
            ));
        }
        let operation = "open stream";
        let replies = self
            .client
            .clone()
            .open_stream(proto::OpenStreamRequest {
                artifact: Some(self.wire(None, key)),
            })
            .await
            .map_err(|s| error::status(self.plugin(), operation, key, &s))?
            .into_inner();
        let plugin = self.plugin().to_string();
        let key_owned = key.to_string();
        let body = futures::stream::try_unfold(Some(replies), move |replies| {
            let (plugin, key) = (plugin.clone(), key_owned.clone());
            async move {
                let Some(mut replies) = replies else {
                    return Ok(None);
                };
                loop {
                    let reply = replies
                        .message()
                        .await
                        .map_err(|s| error::status(&plugin, "stream receive", &key, &s))?;
                    match reply {
                        None => return Ok(None),
                        Some(r) if !r.error.is_empty() => {
                            return Err(error::refused(&plugin, "stream", &r.error));
                        }
                        Some(r) if !r.data.is_empty() => {
                            let next = (!r.is_end).then_some(replies);
                            return Ok(Some((r.data, next)));
                        }
                        Some(r) if r.is_end => return Ok(None),
                        Some(_) => {}
                    }
                }
            }
        })
        .boxed();
        Ok(GetStream {
            meta: ObjectMeta {
                key: key.to_string(),
                ..Default::default()
            },
            body,
        })
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<()> {
        let body = futures::stream::once(async move { Ok(data) }).boxed();
        self.put_stream(key, body, opts).await
    }

    async fn put_stream(&self, key: &str, body: ByteStream, _opts: &PutOptions) -> Result<()> {
        if self.supports_save_stream().await? {
            self.save_streamed(key, body).await
        } else {
            self.save_staged(key, body).await
        }
    }

    /// `ListObjects` of `prefix`: the plugin's keys, in one page, without sizes.
    async fn list(&self, prefix: &str, _page: Option<String>) -> Result<ListPage> {
        let operation = "list objects";
        let reply = self
            .client
            .clone()
            .list_objects(proto::ListObjectsRequest {
                artifact: Some(self.wire(None, prefix)),
            })
            .await
            .map_err(|s| error::status(self.plugin(), operation, prefix, &s))?
            .into_inner();
        if !reply.error.is_empty() {
            return Err(error::refused(self.plugin(), operation, &reply.error));
        }
        Ok(ListPage {
            objects: reply
                .objects
                .into_iter()
                .map(|key| ObjectMeta {
                    key,
                    ..Default::default()
                })
                .collect(),
            next: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let reply = self
            .client
            .clone()
            .delete(proto::DeleteArtifactRequest {
                artifact: Some(self.wire(None, key)),
            })
            .await
            .map_err(|s| error::status(self.plugin(), "delete", key, &s))?
            .into_inner();
        if !reply.success {
            return Err(error::refused(self.plugin(), "delete", &reply.error));
        }
        Ok(())
    }
}
