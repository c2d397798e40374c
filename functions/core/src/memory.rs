//! In-memory fakes of the ports for unit tests. They keep the adapters' contracts, the
//! conditional writes above all: a fake that always succeeds would hide the bugs that matter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::errors::{FetchError, StoreError};
use crate::http_url::HttpUrl;
use crate::ports::{
    BlobStore, Fetcher, ImageResults, JobQueue, RequestTable, WebhookError, WebhookPayload, WebhookSender,
};
use crate::request::{ImageJob, ImageOutcome, ImageRecord, ImageState, RequestRecord, RequestStatus, Transition};
use crate::request_id::RequestId;

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
    /// When set, `enqueue` fails as SQS would during an outage.
    pub unavailable: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[ImageJob]) -> Result<(), StoreError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable { service: "SQS", detail: "simulated outage".into() });
        }
        self.jobs.lock().unwrap().extend_from_slice(jobs);
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
    images: HashMap<RequestId, BTreeMap<u32, ImageRecord>>,
}

#[async_trait]
impl RequestTable for MemoryTable {
    async fn create(&self, request: &RequestRecord, images: &[ImageRecord]) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        if state.requests.contains_key(&request.request_id) {
            return Err(StoreError::Refused { service: "table", detail: "request exists".into() });
        }
        state.requests.insert(request.request_id, request.clone());
        let by_index = images.iter().map(|image| (image.image_index, image.clone())).collect();
        state.images.insert(request.request_id, by_index);
        Ok(())
    }

    async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self.state.lock().unwrap().requests.get(&id).cloned())
    }

    async fn images(&self, id: RequestId) -> Result<Vec<ImageRecord>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state.images.get(&id).map(|images| images.values().cloned().collect()).unwrap_or_default())
    }

    async fn images_page(
        &self,
        id: RequestId,
        after: Option<u32>,
        limit: u32,
    ) -> Result<(Vec<ImageRecord>, Option<u32>), StoreError> {
        let state = self.state.lock().unwrap();
        let Some(images) = state.images.get(&id) else { return Ok((Vec::new(), None)) };
        let start = after.map_or(0, |index| index + 1);
        let page: Vec<ImageRecord> =
            images.range(start..).take(limit as usize).map(|(_, image)| image.clone()).collect();
        let next = page.last().filter(|_| page.len() == limit as usize).map(|image| image.image_index);
        Ok((page, next))
    }

    async fn idle_requests(&self, cutoff: DateTime<Utc>) -> Result<Vec<RequestId>, StoreError> {
        let state = self.state.lock().unwrap();
        let idle = state.requests.values().filter(|r| !r.status.is_final() && r.updated_at < cutoff);
        Ok(idle.map(|request| request.request_id).collect())
    }

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
impl ImageResults for MemoryTable {
    async fn record(
        &self,
        id: RequestId,
        image_index: u32,
        outcome: &ImageOutcome,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        let mut state = self.state.lock().unwrap();
        let TableState { requests, images } = &mut *state;
        let missing = || StoreError::Refused { service: "table", detail: "no such image".into() };
        let request = requests.get_mut(&id).ok_or_else(missing)?;
        let image = images.get_mut(&id).and_then(|images| images.get_mut(&image_index)).ok_or_else(missing)?;
        if image.state != ImageState::Pending {
            return Ok(Transition::AlreadyDone);
        }
        image.state = outcome.state();
        match outcome {
            ImageOutcome::Done { output_key, bytes_in, bytes_out } => {
                image.output_key = Some(output_key.clone());
                image.bytes_in = Some(*bytes_in);
                image.bytes_out = Some(*bytes_out);
                request.succeeded += 1;
            }
            ImageOutcome::Failed { error_code, error_message } => {
                image.error_code = Some(error_code.clone());
                image.error_message = Some(error_message.clone());
                request.failed += 1;
            }
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
}

#[async_trait]
impl WebhookSender for MemoryWebhooks {
    async fn send(&self, url: &HttpUrl, payload: &WebhookPayload) -> Result<(), WebhookError> {
        self.sent.lock().unwrap().push((url.as_str().into(), payload.clone()));
        Ok(())
    }
}
