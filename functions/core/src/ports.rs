//! One small trait per capability the use cases need. Each has an AWS adapter (`crate::aws`)
//! and an in-memory fake (`crate::memory`) that keeps the same contract, conditional writes
//! included.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::errors::{FetchError, StoreError};
use crate::http_url::HttpUrl;
use crate::request::{ImageJob, ImageOutcome, ImageRecord, RequestRecord, RequestStatus, Transition};
use crate::request_id::RequestId;
use crate::webhook_signature::WebhookSecret;

#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError>;
    /// `None` when there is no object under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A URL anyone can GET the object from until it expires.
    async fn presigned_get_url(&self, key: &str, expires_in: Duration) -> Result<String, StoreError>;
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues every job or fails; a partial send is retried by the caller as a whole
    /// (duplicates are harmless, see `ImageResults::record`).
    async fn enqueue(&self, jobs: &[ImageJob]) -> Result<(), StoreError>;
    /// Queues the fan-out of an accepted request: the step that queues its image jobs.
    async fn enqueue_fan_out(&self, id: RequestId) -> Result<(), StoreError>;
}

#[async_trait]
pub trait RequestTable: Send + Sync {
    /// Writes a new request. Its images have no items until their results are recorded.
    async fn create(&self, request: &RequestRecord) -> Result<(), StoreError>;
    async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>, StoreError>;
    /// The images of the request that have a result, in `image_index` order.
    async fn recorded_images(&self, id: RequestId) -> Result<Vec<ImageRecord>, StoreError>;
    /// The first `limit` images that failed, in image order: read without reading the
    /// successes (a request of 10,000 images with 3 failures reads 3 items).
    async fn failed_images(&self, id: RequestId, limit: usize) -> Result<Vec<ImageRecord>, StoreError>;
    /// The same, for indexes `first..=last` only.
    async fn recorded_images_between(
        &self,
        id: RequestId,
        first: u32,
        last: u32,
    ) -> Result<Vec<ImageRecord>, StoreError>;
    /// Requests not final yet whose last progress (`updated_at`) is before `cutoff`.
    async fn idle_requests(&self, cutoff: DateTime<Utc>) -> Result<Vec<RequestId>, StoreError>;
    /// Puts a final request's webhook up for another delivery at `next_at`, after `attempts`
    /// failed deliveries (see `webhook_outbox`).
    async fn defer_webhook(&self, id: RequestId, attempts: u32, next_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The requests whose webhook is waiting for another delivery, due or not.
    async fn deferred_webhooks(&self) -> Result<Vec<RequestId>, StoreError>;
    /// The webhook was delivered, or given up on: no more deliveries.
    async fn end_webhook(&self, id: RequestId) -> Result<(), StoreError>;
    /// `pending -> processing`, once its jobs are queued. Does nothing if the request has
    /// moved on already (its images may all be done before this call).
    async fn mark_processing(&self, id: RequestId, now: DateTime<Utc>) -> Result<Transition, StoreError>;
    /// Moves a request that is not final yet to its final `status`, once.
    async fn finish(
        &self,
        id: RequestId,
        status: RequestStatus,
        output_csv_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError>;
}

#[async_trait]
pub trait ImageResults: Send + Sync {
    /// Records the image's result (PENDING -> DONE/FAILED) and updates the request's counters
    /// in one atomic write; `AlreadyDone` (nothing changed) if the image had a result already.
    async fn record(
        &self,
        job: &ImageJob,
        outcome: &ImageOutcome,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError>;
}

#[async_trait]
pub trait Fetcher: Send + Sync {
    async fn fetch(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError>;
}

/// What a request's webhook receives once, when the request reaches its final state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookPayload {
    pub request_id: RequestId,
    pub status: RequestStatus,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub output_csv_url: String,
    /// The errors report, when images failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_csv_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("webhook delivery failed: {message}")]
pub struct WebhookError {
    pub message: String,
    /// No later delivery can succeed (the receiver's address is refused, say).
    pub permanent: bool,
}

#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Delivers `payload`, signed with `secret` (Standard Webhooks).
    async fn send(&self, url: &HttpUrl, secret: &WebhookSecret, payload: &WebhookPayload) -> Result<(), WebhookError>;

    /// The wait before the first redelivery of a webhook whose delivery failed; later ones
    /// double it, up to 60 times it (`webhook_outbox`).
    fn redelivery_base(&self) -> Duration {
        Duration::from_secs(60)
    }
}
