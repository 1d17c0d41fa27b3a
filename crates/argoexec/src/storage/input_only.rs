//! Locations that can only be read, and only by the input loader: `raw:` (the bytes are in the
//! template) and `git:` (a clone, not a key-value store). [`crate::transfer::load`] handles
//! their inputs itself; what reaches a driver is a save, a delete or a listing, and each gets
//! Argo's own error as a typed [`Error::NotSupported`].

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    ByteStream, DELETE_NOT_SUPPORTED, Driver, Error, GetStream, LIST_NOT_SUPPORTED, ListPage,
    ObjectMeta, PutOptions, Result,
};

/// The driver of an input-only location kind.
#[derive(Debug, Clone, Copy)]
pub struct InputOnly {
    name: &'static str,
    /// Argo's error for a save (a BadRequest there).
    save_error: &'static str,
}

impl InputOnly {
    /// `raw:` artifacts.
    pub const RAW: Self = Self {
        name: "raw",
        save_error: "Raw output artifacts unsupported",
    };

    /// `git:` artifacts.
    pub const GIT: Self = Self {
        name: "git",
        save_error: "git output artifacts unsupported",
    };

    fn read_error(&self) -> Error {
        Error::not_supported(
            self.name,
            format!(
                "{} artifacts are read by the input loader only, not through a storage driver",
                self.name
            ),
        )
    }
}

#[async_trait]
impl Driver for InputOnly {
    fn name(&self) -> &'static str {
        self.name
    }

    fn describe(&self) -> String {
        format!("{}:", self.name)
    }

    async fn head(&self, _key: &str) -> Result<ObjectMeta> {
        Err(self.read_error())
    }

    async fn get(&self, _key: &str, _range: Option<Range<u64>>) -> Result<GetStream> {
        Err(self.read_error())
    }

    async fn put(&self, _key: &str, _data: Bytes, _opts: &PutOptions) -> Result<()> {
        Err(Error::not_supported(self.name, self.save_error))
    }

    async fn put_stream(&self, _key: &str, _body: ByteStream, _opts: &PutOptions) -> Result<()> {
        Err(Error::not_supported(self.name, self.save_error))
    }

    async fn list(&self, _prefix: &str, _page: Option<String>) -> Result<ListPage> {
        Err(Error::not_supported(self.name, LIST_NOT_SUPPORTED))
    }

    async fn delete(&self, _key: &str) -> Result<()> {
        Err(Error::not_supported(self.name, DELETE_NOT_SUPPORTED))
    }
}
