//! One small trait per capability the use cases need. Each has an AWS adapter (`crate::adapters::aws`)
//! and an in-memory fake (`crate::adapters::memory`) that keeps the same contract, conditional writes
//! included.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::api_key::KeyRecord;
use crate::domain::errors::{FetchError, StoreError};
use crate::domain::fan_out_chunks::FanOutChunk;
use crate::domain::fetch_jobs::FetchJob;
use crate::domain::http_url::HttpUrl;
use crate::domain::idempotency::{IdempotencyRecord, StoredAnswer};
use crate::domain::quota::TenantQuota;
use crate::domain::request::{FinalState, ImageJob, ImageOutcome, ImageRecord, Progress, RequestRecord, Transition};
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;
use crate::domain::upload_reservation::{UploadRefusal, UploadReservation};
use crate::domain::webhook::WebhookPayload;

#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError>;
    /// `None` when there is no object under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A URL anyone can GET the object from until it expires.
    async fn presigned_get_url(&self, key: &str, expires_in: Duration) -> Result<String, StoreError>;
    /// A URL anyone can PUT one object to under `key` until it expires (no size cap: S3's
    /// presigned PUT cannot carry one, so the object's size is checked when it is read).
    async fn presigned_put_url(&self, key: &str, expires_in: Duration) -> Result<String, StoreError>;
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues every job or fails; a partial send is retried by the caller as a whole
    /// (duplicates are harmless, see `RecordResult::record`).
    async fn enqueue(&self, jobs: &[FetchJob]) -> Result<(), StoreError>;
    /// Queues the fan-out of an accepted request: the step that queues its image jobs.
    async fn enqueue_fan_out(&self, id: RequestId) -> Result<(), StoreError>;
    /// Queues the chunks of a large request's fan-out, each for an invocation of its own;
    /// every one or fail, like `enqueue`.
    async fn enqueue_chunks(&self, chunks: &[FanOutChunk]) -> Result<(), StoreError>;
}

// The request table, one capability at a time: each use case names the ones it uses. Each has
// a DynamoDB adapter (`adapters::aws::DynamoTable`) and a fake (`adapters::memory::MemoryTable`).

#[async_trait]
pub trait CreateRequest: Send + Sync {
    /// Writes a new request, once (an id that exists is refused), and takes its images from its
    /// tenant's quota in the same write: `OverQuota` and nothing written when they do not fit.
    /// Its images have no items until their results are recorded.
    async fn create(&self, request: &RequestRecord, quota: &TenantQuota) -> Result<Admission, StoreError>;
}

/// Whether `CreateRequest::create` made the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Created,
    /// The tenant's open images plus these would exceed its quota.
    OverQuota,
}

#[async_trait]
pub trait ListRequests: Send + Sync {
    /// A tenant's requests, newest first: up to `limit` after the page `after` ended with, and
    /// where the next page starts when there is one.
    async fn requests_of(
        &self,
        tenant: &TenantId,
        after: Option<&RequestPage>,
        limit: u32,
    ) -> Result<(Vec<RequestRecord>, Option<RequestPage>), StoreError>;
}

/// Where a page of `ListRequests` ended: the last request's creation time and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPage {
    pub created_at: DateTime<Utc>,
    pub request_id: RequestId,
}

/// Upload idempotency keys (`domain::idempotency`), per tenant.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Takes the key for an upload by writing `record`, unless a record that still holds it
    /// exists (`IdempotencyRecord::meet` decides): then that one, and nothing written.
    async fn claim_key(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// The upload that claimed the key was answered: keep the answer for repeats.
    async fn complete_key(&self, record: &IdempotencyRecord, answer: &StoredAnswer) -> Result<(), StoreError>;
    /// The upload that claimed the key made no request (refused, or failed): free the key, so a
    /// corrected upload may use it.
    async fn release_key(&self, record: &IdempotencyRecord) -> Result<(), StoreError>;
}

/// Uploads reserved by `POST /api/uploads` (`domain::upload_reservation`).
#[async_trait]
pub trait UploadReservations: Send + Sync {
    /// Writes a new reservation; an id that exists is refused.
    async fn reserve(&self, reservation: &UploadReservation) -> Result<(), StoreError>;
    async fn reservation(&self, id: RequestId) -> Result<Option<UploadReservation>, StoreError>;
    /// Records why its CSV was refused, once: `AlreadyDone` when it was refused before (or
    /// there is no such reservation).
    async fn refuse_upload(&self, id: RequestId, refusal: &UploadRefusal) -> Result<Transition, StoreError>;
}

#[async_trait]
pub trait ReadRequest: Send + Sync {
    async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>, StoreError>;
}

#[async_trait]
pub trait ReadResults: Send + Sync {
    /// The images of the request that have a result, in `image_index` order.
    async fn recorded_images(&self, id: RequestId) -> Result<Vec<ImageRecord>, StoreError>;
    /// The same, for indexes `first..=last` only.
    async fn recorded_images_between(
        &self,
        id: RequestId,
        first: u32,
        last: u32,
    ) -> Result<Vec<ImageRecord>, StoreError>;
    /// The first `limit` images that failed, in image order: read without reading the
    /// successes (a request of 10,000 images with 3 failures reads 3 items).
    async fn failed_images(&self, id: RequestId, limit: usize) -> Result<Vec<ImageRecord>, StoreError>;
    /// Whether the job still has work to do, read before any (its images' items and its request's
    /// state, in one call): a duplicate delivery, or a job of a request cancelled or failed
    /// meanwhile, is acknowledged without a download.
    async fn job_standing(&self, job: &FetchJob) -> Result<JobStanding, StoreError>;
}

/// What `ReadResults::job_standing` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStanding {
    /// An image of the job has no result and its request is open: do the work.
    ToDo,
    /// Every image of the job has its result already (a duplicate delivery).
    Recorded,
    /// The request is final (cancelled, or failed without its images) or gone.
    RequestEnded,
}

#[async_trait]
pub trait RecordResult: Send + Sync {
    /// Records the image's result (PENDING -> DONE/FAILED) and updates the request's counters
    /// in one atomic write; `AlreadyDone` (nothing changed) if the image had a result already,
    /// or if the request is final (failed or cancelled without it): its counts never move again.
    /// With `Progress::Made` the request's `updated_at` moves to `now`; the sweeper's own
    /// results (`Progress::None`) leave it, so a request it is timing out stays idle.
    async fn record(
        &self,
        job: &ImageJob,
        outcome: &ImageOutcome,
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError>;

    /// Records the results of several images of one request (at most `MAX_RESULTS_PER_WRITE`)
    /// in one atomic write, the request's counters moved by their sums: all of them (`Applied`),
    /// or none (`AlreadyDone`) when any image had a result already or the request is final.
    /// `use_cases::record_results` then records them one by one with `record`.
    async fn record_all(
        &self,
        results: &[(ImageJob, ImageOutcome)],
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError>;
}

#[async_trait]
pub trait MoveRequest: Send + Sync {
    /// `pending -> processing`, once its jobs are queued. Does nothing if the request has
    /// moved on already (its images may all be done before this call).
    async fn mark_processing(&self, id: RequestId, now: DateTime<Utc>) -> Result<Transition, StoreError>;
    /// Moves a request that is not final yet to its final state, once, recording in the same
    /// write a webhook owed (`FinalState::webhook_due_at`).
    async fn finish(&self, id: RequestId, ending: &FinalState, now: DateTime<Utc>) -> Result<Transition, StoreError>;
    /// Cancels the request as `seen` (not final): one write, applied only while it is still not
    /// final, has images without a result and has the counts seen, so that `cancelled` is exactly
    /// its images without a result. It sets `cancelled`, takes `remaining` to 0 (which wakes the
    /// notifier to write its output CSV) and records `ending` like `finish`. `AlreadyDone` when
    /// the request moved on since it was read: read it again.
    async fn cancel(
        &self,
        seen: &RequestRecord,
        ending: &FinalState,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError>;
    /// Where the output CSV of a cancelled request was written, recorded once (it is written
    /// after the cancelling write).
    async fn record_output_csv(&self, id: RequestId, key: &str) -> Result<Transition, StoreError>;
}

#[async_trait]
pub trait CarryOverResults: Send + Sync {
    /// Writes `images`, results another request recorded, as result items of the request they
    /// name (a retry, `use_cases::retry_request`), leaving its counters alone: its creation counted
    /// them. Writing the same ones again changes nothing.
    async fn carry_over(&self, images: &[ImageRecord]) -> Result<(), StoreError>;
}

#[async_trait]
pub trait FindIdleRequests: Send + Sync {
    /// Requests not final yet whose last progress (`updated_at`) is before `cutoff`.
    async fn idle_requests(&self, cutoff: DateTime<Utc>) -> Result<Vec<RequestId>, StoreError>;
    /// Counts one more failed sweep of a request that is not final; the count after it.
    async fn note_sweep_failure(&self, id: RequestId) -> Result<u32, StoreError>;
    /// A sweep of it went through: the failed ones before no longer count as in a row.
    async fn clear_sweep_failures(&self, id: RequestId) -> Result<(), StoreError>;
}

#[async_trait]
pub trait QueueBacklog: Send + Sync {
    /// Messages waiting for a worker (not in flight, not delayed): work that is deliverable but
    /// has not been taken yet.
    async fn waiting_messages(&self) -> Result<u64, StoreError>;
}

/// The webhooks still owed: recorded by the write that makes a request final
/// (`MoveRequest::finish`), cleared once delivered or given up (see `use_cases::deliver_webhook`).
#[async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// The final requests whose webhook is owed, due or not.
    async fn owed_webhooks(&self) -> Result<Vec<RequestId>, StoreError>;
    /// Takes the delivery due at `due_at` for the caller alone: moves it to `until`, only if it is
    /// still due at `due_at`. `AlreadyDone` when another sender took it first.
    async fn claim_webhook(
        &self,
        id: RequestId,
        due_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Transition, StoreError>;
    /// The next delivery is due at `next_at`, after `failed_deliveries` failed ones. Only for a
    /// final request whose webhook is still owed.
    async fn defer_webhook(
        &self,
        id: RequestId,
        failed_deliveries: u32,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The webhook was delivered, or given up on: nothing more is owed.
    async fn end_webhook(&self, id: RequestId) -> Result<(), StoreError>;
}

// API keys and tenants (`domain::api_key`, `domain::tenant`), kept in the same table.

#[async_trait]
pub trait AuthenticateKeys: Send + Sync {
    /// The key's record, whatever its status.
    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Writes down that the key was used at `now` (`KeyRecord::use_worth_recording` decides when).
    async fn record_key_use(&self, key_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
}

#[async_trait]
pub trait ManageKeys: Send + Sync {
    /// Writes a new key, refused if its id exists, and makes its tenant known.
    async fn add_key(&self, record: &KeyRecord) -> Result<(), StoreError>;
    /// `AlreadyDone` when the key was revoked already; an error when there is no such key.
    async fn revoke_key(&self, key_id: &str) -> Result<Transition, StoreError>;
    /// Every key, of every tenant (an operator's listing: a scan).
    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
}

#[async_trait]
pub trait KnownTenants: Send + Sync {
    /// Whether the tenant was ever given a key.
    async fn is_known(&self, tenant: &TenantId) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait Fetcher: Send + Sync {
    async fn fetch(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError>;
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
    /// Delivers `payload`, signed with its request's secret (Standard Webhooks,
    /// `WebhookSigningKey::secret_for`).
    async fn send(&self, url: &HttpUrl, payload: &WebhookPayload) -> Result<(), WebhookError>;

    /// The wait before the first redelivery of a webhook whose delivery failed; later ones
    /// double it, up to 60 times it (`domain::webhook`).
    fn redelivery_base(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// The longest one `send` can take, all its tries included: a delivery claimed this long ago
    /// and not ended or deferred was lost with its sender.
    fn longest_send(&self) -> Duration;
}
