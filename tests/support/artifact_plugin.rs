//! An artifact driver plugin backed by a directory: Argo's `ArtifactService` (the crate's
//! generated tonic server) served over HTTP/2 on a Unix socket, as a plugin's sidecar serves
//! it. Keys are paths below the directory. It records every call (and the largest `SaveStream`
//! frame) for the tests to check, and can leave `SaveStream` out of its capabilities, as a
//! plugin written before Argo 4.1 does.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use argoexec::storage::plugin::proto::artifact_service_server::{
    ArtifactService, ArtifactServiceServer,
};
use argoexec::storage::plugin::proto::*;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// What the plugin was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Load {
        key: String,
        path: String,
    },
    OpenStream {
        key: String,
    },
    Save {
        key: String,
        path: String,
    },
    SaveStream {
        key: String,
        bytes: usize,
    },
    /// A `SaveStream` whose client broke off (nothing stored).
    SaveStreamBroken {
        key: String,
    },
    Delete {
        key: String,
    },
    ListObjects {
        key: String,
    },
    IsDirectory {
        key: String,
    },
    GetCapabilities,
}

#[derive(Debug, Clone)]
pub struct DirPlugin {
    pub root: PathBuf,
    pub save_stream: bool,
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub largest_frame: Arc<Mutex<usize>>,
}

/// A served plugin; the server stops when dropped.
pub struct Served {
    pub plugin: DirPlugin,
    pub socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    pub fn calls(&self) -> Vec<Call> {
        self.plugin.calls.lock().expect("calls").clone()
    }
}

/// Serves a plugin storing below `root` on `socket` (its directory is created).
pub fn serve(root: &Path, socket: &Path, save_stream: bool) -> Served {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    std::fs::create_dir_all(socket.parent().expect("socket dir")).expect("socket dir");
    let listener = tokio::net::UnixListener::bind(socket).expect("bind the plugin socket");
    let plugin = DirPlugin {
        root: root.to_path_buf(),
        save_stream,
        calls: Arc::default(),
        largest_frame: Arc::default(),
    };
    let service = ArtifactServiceServer::new(plugin.clone());
    let task = tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(io), service)
                    .await;
            });
        }
    });
    Served {
        plugin,
        socket: socket.to_path_buf(),
        task,
    }
}

fn key_of(art: Option<&Artifact>) -> Result<String, Status> {
    art.and_then(|a| a.plugin.as_ref())
        .map(|p| p.key.clone())
        .ok_or_else(|| Status::invalid_argument("no plugin location"))
}

fn failed(e: std::io::Error) -> Status {
    Status::internal(e.to_string())
}

/// Copies a file or a directory tree.
fn copy_all(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_all(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).map(|_| ())
    }
}

/// Every file below `dir`, as keys joined to `prefix`.
fn files_below(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let key = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            files_below(&entry.path(), &key, out);
        } else {
            out.push(key);
        }
    }
}

impl DirPlugin {
    fn record(&self, call: Call) {
        self.calls.lock().expect("calls").push(call);
    }

    fn at(&self, key: &str) -> PathBuf {
        self.root.join(key.trim_start_matches('/'))
    }
}

type ByteReplies = Pin<Box<dyn Stream<Item = Result<OpenStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ArtifactService for DirPlugin {
    async fn load(
        &self,
        request: Request<LoadArtifactRequest>,
    ) -> Result<Response<LoadArtifactResponse>, Status> {
        let r = request.into_inner();
        let key = key_of(r.input_artifact.as_ref())?;
        self.record(Call::Load {
            key: key.clone(),
            path: r.path.clone(),
        });
        let reply = match copy_all(&self.at(&key), Path::new(&r.path)) {
            Ok(()) => LoadArtifactResponse {
                success: true,
                error: String::new(),
            },
            Err(e) => LoadArtifactResponse {
                success: false,
                error: format!("{key}: {e}"),
            },
        };
        Ok(Response::new(reply))
    }

    type OpenStreamStream = ByteReplies;

    async fn open_stream(
        &self,
        request: Request<OpenStreamRequest>,
    ) -> Result<Response<ByteReplies>, Status> {
        let key = key_of(request.into_inner().artifact.as_ref())?;
        self.record(Call::OpenStream { key: key.clone() });
        let data = std::fs::read(self.at(&key)).map_err(|e| Status::not_found(e.to_string()))?;
        let mut frames: Vec<Result<OpenStreamResponse, Status>> = data
            .chunks(64 << 10)
            .map(|c| {
                Ok(OpenStreamResponse {
                    data: Bytes::copy_from_slice(c),
                    is_end: false,
                    error: String::new(),
                })
            })
            .collect();
        frames.push(Ok(OpenStreamResponse {
            data: Bytes::new(),
            is_end: true,
            error: String::new(),
        }));
        Ok(Response::new(futures::stream::iter(frames).boxed()))
    }

    async fn save(
        &self,
        request: Request<SaveArtifactRequest>,
    ) -> Result<Response<SaveArtifactResponse>, Status> {
        let r = request.into_inner();
        let key = key_of(r.output_artifact.as_ref())?;
        self.record(Call::Save {
            key: key.clone(),
            path: r.path.clone(),
        });
        copy_all(Path::new(&r.path), &self.at(&key)).map_err(failed)?;
        Ok(Response::new(SaveArtifactResponse {
            success: true,
            error: String::new(),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteArtifactRequest>,
    ) -> Result<Response<DeleteArtifactResponse>, Status> {
        let key = key_of(request.into_inner().artifact.as_ref())?;
        self.record(Call::Delete { key: key.clone() });
        let path = self.at(&key);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
            _ => Ok(Response::new(DeleteArtifactResponse {
                success: true,
                error: String::new(),
            })),
        }
    }

    async fn list_objects(
        &self,
        request: Request<ListObjectsRequest>,
    ) -> Result<Response<ListObjectsResponse>, Status> {
        let key = key_of(request.into_inner().artifact.as_ref())?;
        self.record(Call::ListObjects { key: key.clone() });
        let mut objects = Vec::new();
        files_below(&self.at(&key), key.trim_end_matches('/'), &mut objects);
        objects.sort();
        Ok(Response::new(ListObjectsResponse {
            objects,
            error: String::new(),
        }))
    }

    async fn is_directory(
        &self,
        request: Request<IsDirectoryRequest>,
    ) -> Result<Response<IsDirectoryResponse>, Status> {
        let key = key_of(request.into_inner().artifact.as_ref())?;
        self.record(Call::IsDirectory { key: key.clone() });
        Ok(Response::new(IsDirectoryResponse {
            is_directory: self.at(&key).is_dir(),
            error: String::new(),
        }))
    }

    async fn save_stream(
        &self,
        request: Request<Streaming<SaveStreamArtifactRequest>>,
    ) -> Result<Response<SaveArtifactResponse>, Status> {
        let mut frames = request.into_inner();
        let first = frames
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no metadata frame"))?;
        let key = key_of(first.output_artifact.as_ref())?;
        // Written under a temporary name and renamed at the end: a cancelled stream stores nothing.
        let dest = self.at(&key);
        let partial = dest.with_extension("partial");
        std::fs::create_dir_all(dest.parent().expect("parent")).map_err(failed)?;
        let mut data = Vec::new();
        loop {
            match frames.message().await {
                Ok(Some(frame)) => {
                    let mut largest = self.largest_frame.lock().expect("frame");
                    *largest = (*largest).max(frame.chunk.len());
                    data.extend_from_slice(&frame.chunk);
                }
                Ok(None) => break,
                Err(status) => {
                    self.record(Call::SaveStreamBroken { key });
                    return Err(status);
                }
            }
        }
        std::fs::write(&partial, &data).map_err(failed)?;
        std::fs::rename(&partial, &dest).map_err(failed)?;
        self.record(Call::SaveStream {
            key,
            bytes: data.len(),
        });
        Ok(Response::new(SaveArtifactResponse {
            success: true,
            error: String::new(),
        }))
    }

    async fn get_capabilities(
        &self,
        _request: Request<GetCapabilitiesRequest>,
    ) -> Result<Response<GetCapabilitiesResponse>, Status> {
        self.record(Call::GetCapabilities);
        Ok(Response::new(GetCapabilitiesResponse {
            supports_save_stream: self.save_stream,
        }))
    }
}
