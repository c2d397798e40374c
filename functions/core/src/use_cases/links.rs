//! Turning a link (`domain::locations::Link`) into the URL a user follows: as it is when it
//! goes through the API, presigned when it points at the bucket.

use crate::domain::errors::StoreError;
use crate::domain::locations::{Link, Links};
use crate::ports::BlobStore;

/// The URL of the artefact at API `path`, stored under `key`, as `links` says to link it.
pub async fn link_url(blobs: &dyn BlobStore, links: &Links, path: String, key: &str) -> Result<String, StoreError> {
    match links.to(path, key) {
        Link::Url(url) => Ok(url),
        Link::Presign { key, lifetime } => blobs.presigned_get_url(&key, lifetime).await,
    }
}
