//! In-memory fakes of the ports for unit tests. They keep the adapters' contracts, the
//! conditional writes above all: a fake that always succeeds would hide the bugs that matter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::api_key::{KeyRecord, KeyStatus};
use crate::domain::errors::{FetchError, StoreError};
use crate::domain::fan_out_chunks::FanOutChunk;
use crate::domain::fetch_jobs::{FetchJob, MAX_RESULTS_PER_WRITE};
use crate::domain::http_url::HttpUrl;
use crate::domain::idempotency::{IdempotencyRecord, Repeat, StoredAnswer};
use crate::domain::quota::TenantQuota;
use crate::domain::request::{
    FinalState, ImageJob, ImageOutcome, ImageRecord, ImageState, Progress, RequestRecord, RequestStatus, Transition,
};
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;
use crate::domain::upload_reservation::{UploadRefusal, UploadReservation};
use crate::domain::webhook::WebhookPayload;
use crate::ports::{
    Admission, AuthenticateKeys, BlobStore, CarryOverResults, CreateRequest, Fetcher, FindIdleRequests,
    IdempotencyKeys, JobQueue, JobStanding, KnownTenants, ListRequests, ManageKeys, MoveRequest, QueueBacklog,
    ReadRequest, ReadResults, RecordResult, RequestPage, UploadReservations, WebhookError, WebhookOutbox,
    WebhookSender,
};

/// A switch that makes a fake fail as its service would during an outage.
#[derive(Default)]
pub struct Outage(AtomicBool);

impl Outage {
    pub fn set(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }

    fn check(&self, service: &'static str) -> Result<(), StoreError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable { service, detail: "simulated outage".into() });
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryBlobs {
    pub objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
    pub outage: Outage,
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.outage.check("S3")?;
        self.objects.lock().unwrap().insert(key.into(), (body, content_type.into()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.outage.check("S3")?;
        Ok(self.objects.lock().unwrap().get(key).map(|(body, _)| body.clone()))
    }

    async fn presigned_get_url(&self, key: &str, _expires_in: Duration) -> Result<String, StoreError> {
        Ok(format!("https://blobs.example/{key}"))
    }

    async fn presigned_put_url(&self, key: &str, _expires_in: Duration) -> Result<String, StoreError> {
        Ok(format!("https://blobs.example/{key}?put"))
    }
}

#[derive(Default)]
pub struct MemoryQueue {
    pub jobs: Mutex<Vec<FetchJob>>,
    pub fan_outs: Mutex<Vec<RequestId>>,
    pub chunks: Mutex<Vec<FanOutChunk>>,
    pub outage: Outage,
    /// What `waiting_messages` answers: messages no worker has taken yet.
    pub waiting: AtomicU64,
}

impl MemoryQueue {
    /// Every image of the jobs queued, in queue order.
    pub fn queued_images(&self) -> Vec<ImageJob> {
        self.jobs.lock().unwrap().iter().flat_map(FetchJob::image_jobs).collect()
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[FetchJob]) -> Result<(), StoreError> {
        self.outage.check("SQS")?;
        self.jobs.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }

    async fn enqueue_fan_out(&self, id: RequestId) -> Result<(), StoreError> {
        self.outage.check("SQS")?;
        self.fan_outs.lock().unwrap().push(id);
        Ok(())
    }

    async fn enqueue_chunks(&self, chunks: &[FanOutChunk]) -> Result<(), StoreError> {
        self.outage.check("SQS")?;
        self.chunks.lock().unwrap().extend_from_slice(chunks);
        Ok(())
    }
}

#[async_trait]
impl QueueBacklog for MemoryQueue {
    async fn waiting_messages(&self) -> Result<u64, StoreError> {
        self.outage.check("SQS")?;
        Ok(self.waiting.load(Ordering::SeqCst))
    }
}

/// The request table. Its conditions are the DynamoDB adapter's (`adapters::aws::DynamoTable`),
/// write for write.
#[derive(Default)]
pub struct MemoryTable {
    state: Mutex<TableState>,
    pub outage: Outage,
    /// Results of these requests are refused, as DynamoDB refuses an item it cannot store.
    pub refused_results: Mutex<HashSet<RequestId>>,
    /// Milliseconds each result takes to record, as a network call does.
    pub record_delay: AtomicU64,
    /// Writes of results that changed the table (`record` and `record_all` calls applied).
    pub result_writes: AtomicU32,
}

#[derive(Default)]
struct TableState {
    keys: HashMap<String, KeyRecord>,
    tenants: HashSet<TenantId>,
    /// Each tenant's images in requests not final yet (`domain::quota`).
    open_images: HashMap<TenantId, u64>,
    idempotency: HashMap<(TenantId, String), IdempotencyRecord>,
    requests: HashMap<RequestId, RequestRecord>,
    /// Result items, by request and image index.
    images: HashMap<RequestId, BTreeMap<u32, ImageRecord>>,
    reservations: HashMap<RequestId, UploadReservation>,
}

impl MemoryTable {
    /// Changes a request as a test needs it (to backdate it, say), outside any port's contract.
    pub fn edit(&self, id: RequestId, change: impl FnOnce(&mut RequestRecord)) {
        change(self.state.lock().unwrap().requests.get_mut(&id).expect("no such request"));
    }

    fn no_such_request() -> StoreError {
        StoreError::Refused { service: "DynamoDB", detail: "no such request (condition failed)".into() }
    }
}

#[async_trait]
impl CreateRequest for MemoryTable {
    async fn create(&self, request: &RequestRecord, quota: &TenantQuota) -> Result<Admission, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        if state.requests.contains_key(&request.request_id) {
            return Err(StoreError::Refused { service: "DynamoDB", detail: "request exists".into() });
        }
        let open = state.open_images.entry(request.tenant_id.clone()).or_default();
        if !quota.admits(*open, request.open_images()) {
            return Ok(Admission::OverQuota);
        }
        *open += request.open_images();
        state.requests.insert(request.request_id, request.clone());
        Ok(Admission::Created)
    }
}

impl MemoryTable {
    /// A tenant's images in requests not final yet.
    pub fn open_images(&self, tenant: &TenantId) -> u64 {
        self.state.lock().unwrap().open_images.get(tenant).copied().unwrap_or(0)
    }
}

#[async_trait]
impl ListRequests for MemoryTable {
    async fn requests_of(
        &self,
        tenant: &TenantId,
        after: Option<&RequestPage>,
        limit: u32,
    ) -> Result<(Vec<RequestRecord>, Option<RequestPage>), StoreError> {
        self.outage.check("DynamoDB")?;
        let state = self.state.lock().unwrap();
        let mut theirs: Vec<&RequestRecord> = state.requests.values().filter(|r| &r.tenant_id == tenant).collect();
        theirs.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.request_id.to_string())));
        let start = after.map_or(0, |page| {
            let after = (page.created_at, page.request_id.to_string());
            theirs.iter().position(|r| (r.created_at, r.request_id.to_string()) < after).unwrap_or(theirs.len())
        });
        let page: Vec<RequestRecord> = theirs.iter().skip(start).take(limit as usize).map(|r| (*r).clone()).collect();
        let more = start + page.len() < theirs.len();
        let next =
            page.last().filter(|_| more).map(|r| RequestPage { created_at: r.created_at, request_id: r.request_id });
        Ok((page, next))
    }
}

#[async_trait]
impl IdempotencyKeys for MemoryTable {
    async fn claim_key(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        let slot = (record.tenant_id.clone(), record.key.clone());
        // The adapter's condition: no record, or one that holds the key no more.
        if let Some(existing) = state.idempotency.get(&slot)
            && existing.meet(&existing.fingerprint, now) != Repeat::Expired
        {
            return Ok(Some(existing.clone()));
        }
        state.idempotency.insert(slot, record.clone());
        Ok(None)
    }

    async fn complete_key(&self, record: &IdempotencyRecord, answer: &StoredAnswer) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        match state.idempotency.get_mut(&(record.tenant_id.clone(), record.key.clone())) {
            Some(held) if held.started_at == record.started_at => {
                held.answer = Some(answer.clone());
                Ok(())
            }
            _ => Err(StoreError::Refused { service: "DynamoDB", detail: "the key is held by another upload".into() }),
        }
    }

    async fn release_key(&self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        if let Some(held) = state.idempotency.get_mut(&(record.tenant_id.clone(), record.key.clone()))
            && held.started_at == record.started_at
            && held.answer.is_none()
        {
            held.replay_until = held.started_at;
        }
        Ok(())
    }
}

#[async_trait]
impl UploadReservations for MemoryTable {
    async fn reserve(&self, reservation: &UploadReservation) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        if state.reservations.contains_key(&reservation.request_id) {
            return Err(StoreError::Refused {
                service: "DynamoDB",
                detail: "reservation exists (condition failed)".into(),
            });
        }
        state.reservations.insert(reservation.request_id, reservation.clone());
        Ok(())
    }

    async fn reservation(&self, id: RequestId) -> Result<Option<UploadReservation>, StoreError> {
        self.outage.check("DynamoDB")?;
        Ok(self.state.lock().unwrap().reservations.get(&id).cloned())
    }

    async fn refuse_upload(&self, id: RequestId, refusal: &UploadRefusal) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        match state.reservations.get_mut(&id) {
            Some(reservation) if reservation.refusal.is_none() => {
                reservation.refusal = Some(refusal.clone());
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }
}

#[async_trait]
impl ReadRequest for MemoryTable {
    async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>, StoreError> {
        self.outage.check("DynamoDB")?;
        let request = self.state.lock().unwrap().requests.get(&id).cloned();
        // The answer takes a while to arrive, as a network call's does: callers running at once
        // interleave here, and may act on what was true when they asked.
        tokio::task::yield_now().await;
        Ok(request)
    }
}

#[async_trait]
impl ReadResults for MemoryTable {
    async fn recorded_images(&self, id: RequestId) -> Result<Vec<ImageRecord>, StoreError> {
        self.recorded_images_between(id, 0, u32::MAX).await
    }

    async fn recorded_images_between(
        &self,
        id: RequestId,
        first: u32,
        last: u32,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        self.outage.check("DynamoDB")?;
        let state = self.state.lock().unwrap();
        let images = state.images.get(&id).map(|images| images.range(first..=last).map(|(_, image)| image.clone()));
        Ok(images.map(Iterator::collect).unwrap_or_default())
    }

    async fn failed_images(&self, id: RequestId, limit: usize) -> Result<Vec<ImageRecord>, StoreError> {
        self.outage.check("DynamoDB")?;
        let state = self.state.lock().unwrap();
        let failed = state.images.get(&id).into_iter().flat_map(|images| images.values());
        Ok(failed.filter(|image| image.state == ImageState::Failed).take(limit).cloned().collect())
    }

    async fn job_standing(&self, job: &FetchJob) -> Result<JobStanding, StoreError> {
        self.outage.check("DynamoDB")?;
        let state = self.state.lock().unwrap();
        let recorded = state.images.get(&job.request_id);
        if job.images.iter().all(|slot| recorded.is_some_and(|images| images.contains_key(&slot.image_index))) {
            return Ok(JobStanding::Recorded);
        }
        match state.requests.get(&job.request_id) {
            Some(request) if !request.status.is_final() => Ok(JobStanding::ToDo),
            _ => Ok(JobStanding::RequestEnded),
        }
    }
}

#[async_trait]
impl MoveRequest for MemoryTable {
    async fn mark_processing(&self, id: RequestId, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        match state.requests.get_mut(&id) {
            Some(request) if request.status == RequestStatus::Pending => {
                request.status = RequestStatus::Processing;
                request.updated_at = now;
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }

    async fn finish(&self, id: RequestId, ending: &FinalState, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        let TableState { requests, open_images, .. } = &mut *state;
        match requests.get_mut(&id) {
            Some(request) if !request.status.is_final() => {
                let open = open_images.entry(ending.tenant_id.clone()).or_default();
                *open = open.saturating_sub(ending.open_images);
                request.status = ending.status;
                request.output_csv_key = ending.output_csv_key.clone();
                request.failure_reason = ending.failure_reason.clone();
                request.webhook_next_at = ending.webhook_due_at;
                request.completed_at = Some(now);
                request.updated_at = now;
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }

    async fn cancel(
        &self,
        seen: &RequestRecord,
        ending: &FinalState,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        let TableState { requests, open_images, .. } = &mut *state;
        match requests.get_mut(&seen.request_id) {
            // The adapter's condition: not final, images left, and the counts as seen.
            Some(request)
                if !request.status.is_final()
                    && request.remaining == seen.pending_images()
                    && (request.succeeded, request.failed) == (seen.succeeded, seen.failed) =>
            {
                let open = open_images.entry(ending.tenant_id.clone()).or_default();
                *open = open.saturating_sub(ending.open_images);
                request.cancelled = request.remaining;
                request.remaining = 0;
                request.status = ending.status;
                request.webhook_next_at = ending.webhook_due_at;
                request.completed_at = Some(now);
                request.updated_at = now;
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }

    async fn record_output_csv(&self, id: RequestId, key: &str) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        match state.requests.get_mut(&id) {
            Some(request) if request.status == RequestStatus::Cancelled && request.output_csv_key.is_none() => {
                request.output_csv_key = Some(key.into());
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }
}

#[async_trait]
impl CarryOverResults for MemoryTable {
    async fn carry_over(&self, carried: &[ImageRecord]) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        for image in carried {
            state.images.entry(image.request_id).or_default().insert(image.image_index, image.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl FindIdleRequests for MemoryTable {
    async fn idle_requests(&self, cutoff: DateTime<Utc>) -> Result<Vec<RequestId>, StoreError> {
        self.outage.check("DynamoDB")?;
        let state = self.state.lock().unwrap();
        let mut idle: Vec<&RequestRecord> =
            state.requests.values().filter(|r| !r.status.is_final() && r.updated_at < cutoff).collect();
        idle.sort_by_key(|request| request.created_at);
        Ok(idle.into_iter().map(|request| request.request_id).collect())
    }

    async fn note_sweep_failure(&self, id: RequestId) -> Result<u32, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        match state.requests.get_mut(&id) {
            Some(request) if !request.status.is_final() => {
                request.sweep_failures += 1;
                Ok(request.sweep_failures)
            }
            _ => Err(Self::no_such_request()),
        }
    }

    async fn clear_sweep_failures(&self, id: RequestId) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        state.requests.get_mut(&id).ok_or_else(Self::no_such_request)?.sweep_failures = 0;
        Ok(())
    }
}

#[async_trait]
impl WebhookOutbox for MemoryTable {
    async fn owed_webhooks(&self) -> Result<Vec<RequestId>, StoreError> {
        self.outage.check("DynamoDB")?;
        let state = self.state.lock().unwrap();
        Ok(state.requests.values().filter(|r| r.webhook_next_at.is_some()).map(|r| r.request_id).collect())
    }

    async fn claim_webhook(
        &self,
        id: RequestId,
        due_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        match state.requests.get_mut(&id) {
            Some(request) if request.webhook_next_at == Some(due_at) => {
                request.webhook_next_at = Some(until);
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }

    async fn defer_webhook(
        &self,
        id: RequestId,
        failed_deliveries: u32,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        // The adapter's condition: a final request whose webhook is still owed.
        if let Some(request) = state.requests.get_mut(&id)
            && request.status.is_final()
            && request.webhook_next_at.is_some()
        {
            request.webhook_failed_deliveries = failed_deliveries;
            request.webhook_next_at = Some(next_at);
        }
        Ok(())
    }

    async fn end_webhook(&self, id: RequestId) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        let request = state.requests.get_mut(&id).ok_or_else(Self::no_such_request)?;
        request.webhook_next_at = None;
        Ok(())
    }
}

#[async_trait]
impl RecordResult for MemoryTable {
    async fn record(
        &self,
        job: &ImageJob,
        outcome: &ImageOutcome,
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        self.write_results(&[(job.clone(), outcome.clone())], now, progress).await
    }

    async fn record_all(
        &self,
        results: &[(ImageJob, ImageOutcome)],
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        assert!(results.len() <= MAX_RESULTS_PER_WRITE, "{} results in one write", results.len());
        self.write_results(results, now, progress).await
    }
}

impl MemoryTable {
    /// The adapter's result transaction: every image item written with the request's counters,
    /// or nothing when an image has its result already or the request is final.
    async fn write_results(
        &self,
        results: &[(ImageJob, ImageOutcome)],
        now: DateTime<Utc>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        tokio::time::sleep(Duration::from_millis(self.record_delay.load(Ordering::SeqCst))).await;
        let Some((first, _)) = results.first() else {
            return Ok(Transition::AlreadyDone);
        };
        let id = first.request_id;
        assert!(results.iter().all(|(job, _)| job.request_id == id), "the results of one request");
        if self.refused_results.lock().unwrap().contains(&id) {
            return Err(StoreError::Refused { service: "DynamoDB", detail: "simulated refusal of the item".into() });
        }
        // DynamoDB refuses a transaction that names one item twice.
        let indexes: HashSet<u32> = results.iter().map(|(job, _)| job.image_index).collect();
        if indexes.len() < results.len() {
            let detail = "Transaction request cannot include multiple operations on one item".into();
            return Err(StoreError::Refused { service: "DynamoDB", detail });
        }
        let mut state = self.state.lock().unwrap();
        let TableState { requests, images, .. } = &mut *state;
        let request = requests.get_mut(&id).ok_or_else(Self::no_such_request)?;
        let images = images.entry(id).or_default();
        // The adapter's conditions: each image once, and a final request's counts never move again.
        if results.iter().any(|(job, _)| images.contains_key(&job.image_index)) || request.status.is_final() {
            return Ok(Transition::AlreadyDone);
        }
        for (job, outcome) in results {
            images.insert(job.image_index, ImageRecord::with_outcome(job, outcome));
            match outcome.state() {
                ImageState::Done => request.succeeded += 1,
                _ => request.failed += 1,
            }
            request.remaining -= 1;
        }
        if progress == Progress::Made {
            request.updated_at = now;
        }
        self.result_writes.fetch_add(1, Ordering::SeqCst);
        Ok(Transition::Applied)
    }
}

#[async_trait]
impl AuthenticateKeys for MemoryTable {
    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.outage.check("DynamoDB")?;
        Ok(self.state.lock().unwrap().keys.get(key_id).cloned())
    }

    async fn record_key_use(&self, key_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        let key = state.keys.get_mut(key_id).ok_or_else(Self::no_such_request)?;
        key.last_used_at = Some(now);
        Ok(())
    }
}

#[async_trait]
impl ManageKeys for MemoryTable {
    async fn add_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        if state.keys.contains_key(&record.key_id) {
            return Err(StoreError::Refused { service: "DynamoDB", detail: "key exists".into() });
        }
        state.keys.insert(record.key_id.clone(), record.clone());
        state.tenants.insert(record.tenant_id.clone());
        Ok(())
    }

    async fn revoke_key(&self, key_id: &str) -> Result<Transition, StoreError> {
        self.outage.check("DynamoDB")?;
        let mut state = self.state.lock().unwrap();
        let key = state.keys.get_mut(key_id).ok_or_else(Self::no_such_request)?;
        if key.status == KeyStatus::Revoked {
            return Ok(Transition::AlreadyDone);
        }
        key.status = KeyStatus::Revoked;
        Ok(Transition::Applied)
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.outage.check("DynamoDB")?;
        Ok(self.state.lock().unwrap().keys.values().cloned().collect())
    }
}

#[async_trait]
impl KnownTenants for MemoryTable {
    async fn is_known(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.outage.check("DynamoDB")?;
        Ok(self.state.lock().unwrap().tenants.contains(tenant))
    }
}

/// Answers each URL from a fixed map; anything else is a 404.
#[derive(Default)]
pub struct MemoryFetcher {
    pub responses: HashMap<String, Result<Vec<u8>, u16>>,
    /// Downloads started.
    pub fetches: AtomicU32,
    /// How long each download takes.
    pub delay: Duration,
}

#[async_trait]
impl Fetcher for MemoryFetcher {
    async fn fetch(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        match self.responses.get(url.as_str()) {
            Some(Ok(body)) => Ok(body.clone()),
            Some(Err(status)) => Err(FetchError::Status(*status)),
            None => Err(FetchError::Status(404)),
        }
    }
}

#[derive(Default)]
pub struct MemoryWebhooks {
    pub sent: Mutex<Vec<(String, WebhookPayload)>>,
    /// While set, every delivery fails as an unreachable receiver's would (transient).
    pub down: AtomicBool,
    /// While set, every delivery is refused as a private address would be (permanent).
    pub refused: AtomicBool,
    /// While set, a delivery never returns: its sender dies (is dropped) mid-send.
    pub hangs: AtomicBool,
    /// Deliveries tried, failed ones included.
    pub tries: AtomicU32,
}

#[async_trait]
impl WebhookSender for MemoryWebhooks {
    async fn send(&self, url: &HttpUrl, payload: &WebhookPayload) -> Result<(), WebhookError> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        if self.hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.refused.load(Ordering::SeqCst) {
            return Err(WebhookError { message: "a non-public network address".into(), permanent: true });
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(WebhookError { message: "the receiver answered HTTP 503".into(), permanent: false });
        }
        self.sent.lock().unwrap().push((url.as_str().into(), payload.clone()));
        Ok(())
    }

    fn longest_send(&self) -> Duration {
        Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{NO_QUOTA, tenant};

    #[tokio::test]
    async fn a_tenants_requests_are_listed_newest_first_a_page_at_a_time_with_their_current_counts() {
        let table = MemoryTable::default();
        let start = Utc::now() - chrono::Duration::minutes(10);
        let mut mine = Vec::new();
        for minute in 0..5 {
            let request = RequestRecord::new(
                RequestId::new_random(),
                tenant(),
                2,
                None,
                start + chrono::Duration::minutes(minute),
            );
            table.create(&request, &NO_QUOTA).await.unwrap();
            mine.push(request.request_id);
        }
        let other = RequestRecord::new(RequestId::new_random(), "someone-else".parse().unwrap(), 1, None, start);
        table.create(&other, &NO_QUOTA).await.unwrap();
        // The counters move after creation: the listing shows them as they are now.
        let url = HttpUrl::parse("https://img.example/a.jpg").unwrap();
        let job = ImageJob { request_id: mine[4], tenant_id: tenant(), image_index: 0, row: 0, url };
        let done = ImageOutcome::Done { output_key: "out.jpg".into(), bytes_in: 10, bytes_out: 5, note: None };
        table.record_all(&[(job, done)], Utc::now(), Progress::Made).await.unwrap();

        let (page, next) = table.requests_of(&tenant(), None, 3).await.unwrap();
        let (rest, last) = table.requests_of(&tenant(), next.as_ref(), 3).await.unwrap();
        let listed: Vec<RequestId> = page.iter().chain(&rest).map(|request| request.request_id).collect();
        mine.reverse();
        assert_eq!(listed, mine, "newest first, each once, only the tenant's");
        assert_eq!(next, Some(RequestPage { created_at: page[2].created_at, request_id: page[2].request_id }));
        assert_eq!(last, None);
        assert_eq!((page[0].succeeded, page[0].remaining), (1, 1));
    }
}
