//! In-memory fakes of the ports for unit tests. They keep the adapters' contracts, the
//! conditional writes above all: a fake that always succeeds would hide the bugs that matter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::errors::{FetchError, StoreError};
use crate::domain::http_url::HttpUrl;
use crate::domain::request::{
    ImageJob, ImageOutcome, ImageRecord, ImageState, RequestRecord, RequestStatus, Transition,
};
use crate::domain::request_id::RequestId;
use crate::domain::webhook::WebhookPayload;
use crate::domain::webhook_signature::WebhookSecret;
use crate::ports::{
    BlobStore, CreateRequest, Fetcher, FindIdleRequests, JobQueue, MoveRequest, ReadRequest, ReadResults, RecordResult,
    WebhookError, WebhookOutbox, WebhookSender,
};

#[derive(Default)]
pub struct MemoryBlobs {
    pub objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.objects.lock().unwrap().insert(key.into(), (body, content_type.into()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.objects.lock().unwrap().get(key).map(|(body, _)| body.clone()))
    }

    async fn presigned_get_url(&self, key: &str, _expires_in: Duration) -> Result<String, StoreError> {
        Ok(format!("https://blobs.example/{key}"))
    }
}

#[derive(Default)]
pub struct MemoryQueue {
    pub jobs: Mutex<Vec<ImageJob>>,
    pub fan_outs: Mutex<Vec<RequestId>>,
    /// When set, the queue fails as SQS would during an outage.
    pub unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryQueue {
    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable { service: "SQS", detail: "simulated outage".into() });
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[ImageJob]) -> Result<(), StoreError> {
        self.check()?;
        self.jobs.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }

    async fn enqueue_fan_out(&self, id: RequestId) -> Result<(), StoreError> {
        self.check()?;
        self.fan_outs.lock().unwrap().push(id);
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryTable {
    state: Mutex<TableState>,
}

#[derive(Default)]
struct TableState {
    requests: HashMap<RequestId, RequestRecord>,
    /// Result items, by request and image index.
    images: HashMap<RequestId, BTreeMap<u32, ImageRecord>>,
}

#[async_trait]
impl CreateRequest for MemoryTable {
    async fn create(&self, request: &RequestRecord) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        if state.requests.contains_key(&request.request_id) {
            return Err(StoreError::Refused { service: "table", detail: "request exists".into() });
        }
        state.requests.insert(request.request_id, request.clone());
        Ok(())
    }
}

#[async_trait]
impl ReadRequest for MemoryTable {
    async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self.state.lock().unwrap().requests.get(&id).cloned())
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
        let state = self.state.lock().unwrap();
        let images = state.images.get(&id).map(|images| images.range(first..=last).map(|(_, image)| image.clone()));
        Ok(images.map(Iterator::collect).unwrap_or_default())
    }

    async fn failed_images(&self, id: RequestId, limit: usize) -> Result<Vec<ImageRecord>, StoreError> {
        let state = self.state.lock().unwrap();
        let failed = state.images.get(&id).into_iter().flat_map(|images| images.values());
        Ok(failed.filter(|image| image.state == ImageState::Failed).take(limit).cloned().collect())
    }
}

#[async_trait]
impl MoveRequest for MemoryTable {
    async fn mark_processing(&self, id: RequestId, now: DateTime<Utc>) -> Result<Transition, StoreError> {
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

    async fn finish(
        &self,
        id: RequestId,
        status: RequestStatus,
        output_csv_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        let mut state = self.state.lock().unwrap();
        match state.requests.get_mut(&id) {
            Some(request) if !request.status.is_final() => {
                request.status = status;
                request.output_csv_key = output_csv_key.map(Into::into);
                request.completed_at = Some(now);
                request.updated_at = now;
                Ok(Transition::Applied)
            }
            _ => Ok(Transition::AlreadyDone),
        }
    }
}

#[async_trait]
impl FindIdleRequests for MemoryTable {
    async fn idle_requests(&self, cutoff: DateTime<Utc>) -> Result<Vec<RequestId>, StoreError> {
        let state = self.state.lock().unwrap();
        let idle = state.requests.values().filter(|r| !r.status.is_final() && r.updated_at < cutoff);
        Ok(idle.map(|request| request.request_id).collect())
    }
}

#[async_trait]
impl WebhookOutbox for MemoryTable {
    async fn defer_webhook(
        &self,
        id: RequestId,
        failed_deliveries: u32,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        let request = state
            .requests
            .get_mut(&id)
            .ok_or_else(|| StoreError::Refused { service: "table", detail: "no such request".into() })?;
        request.webhook_failed_deliveries = failed_deliveries;
        request.webhook_next_at = Some(next_at);
        Ok(())
    }

    async fn deferred_webhooks(&self) -> Result<Vec<RequestId>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state.requests.values().filter(|r| r.webhook_next_at.is_some()).map(|r| r.request_id).collect())
    }

    async fn end_webhook(&self, id: RequestId) -> Result<(), StoreError> {
        if let Some(request) = self.state.lock().unwrap().requests.get_mut(&id) {
            request.webhook_next_at = None;
        }
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
    ) -> Result<Transition, StoreError> {
        let mut state = self.state.lock().unwrap();
        let TableState { requests, images } = &mut *state;
        let request = requests
            .get_mut(&job.request_id)
            .ok_or_else(|| StoreError::Refused { service: "table", detail: "no such request".into() })?;
        let images = images.entry(job.request_id).or_default();
        if images.contains_key(&job.image_index) {
            return Ok(Transition::AlreadyDone);
        }
        images.insert(job.image_index, ImageRecord::with_outcome(job, outcome));
        match outcome.state() {
            ImageState::Done => request.succeeded += 1,
            _ => request.failed += 1,
        }
        request.remaining -= 1;
        request.updated_at = now;
        Ok(Transition::Applied)
    }
}

/// Answers each URL from a fixed map; anything else is a 404.
#[derive(Default)]
pub struct MemoryFetcher {
    pub responses: HashMap<String, Result<Vec<u8>, u16>>,
}

#[async_trait]
impl Fetcher for MemoryFetcher {
    async fn fetch(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError> {
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
    pub down: std::sync::atomic::AtomicBool,
    /// While set, every delivery is refused as a private address would be (permanent).
    pub refused: std::sync::atomic::AtomicBool,
    /// Deliveries tried, failed ones included.
    pub tries: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl WebhookSender for MemoryWebhooks {
    async fn send(&self, url: &HttpUrl, _secret: &WebhookSecret, payload: &WebhookPayload) -> Result<(), WebhookError> {
        self.tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.refused.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(WebhookError { message: "a non-public network address".into(), permanent: true });
        }
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(WebhookError { message: "the receiver answered HTTP 503".into(), permanent: false });
        }
        self.sent.lock().unwrap().push((url.as_str().into(), payload.clone()));
        Ok(())
    }
}
