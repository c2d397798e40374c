//! Accepting an upload: validate everything first, then store the CSV, record the request
//! and queue its fan-out, so a bad CSV leaves no trace and a good one is answered at once,
//! whatever its size. The fan-out (`fan_out`) queues the image jobs.

use std::time::Instant;

use chrono::Utc;

use crate::domain::csv_rules::{CsvLimits, CsvRejection, ValidatedCsv};
use crate::domain::errors::StoreError;
use crate::domain::http_url::{HttpUrl, InvalidUrl};
use crate::domain::request::RequestRecord;
use crate::domain::request_id::RequestId;
use crate::domain::webhook_signature::WebhookSecret;
use crate::ports::{BlobStore, CreateRequest, JobQueue, MoveRequest, ReadRequest};
use crate::use_cases::fail_request::{FailPorts, fail_request};

pub struct Accepted {
    pub request_id: RequestId,
    pub image_count: usize,
    /// The secret the webhook will be signed with, when there is a webhook.
    pub webhook_secret: Option<WebhookSecret>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Csv(#[from] CsvRejection),
    #[error("webhook_url is not usable: {0}")]
    WebhookUrl(InvalidUrl),
    /// Nothing usable was accepted; the client should upload again later.
    #[error("the request could not be stored: {0}")]
    Store(#[from] StoreError),
    /// The system's random source failed (no webhook secret): as unavailable as a store outage.
    #[error("no random bytes for the webhook secret: {0}")]
    NoRandomness(getrandom::Error),
}

#[derive(Clone, Copy)]
pub struct AcceptPorts<'a> {
    pub blobs: &'a dyn BlobStore,
    pub new_requests: &'a dyn CreateRequest,
    /// To find the request an earlier delivery of a dropped CSV made, and to fail a request
    /// whose fan-out could not be queued.
    pub requests: &'a dyn ReadRequest,
    pub lifecycle: &'a dyn MoveRequest,
    pub queue: &'a dyn JobQueue,
}

impl<'a> AcceptPorts<'a> {
    /// Every table capability from one table (the DynamoDB adapter, or the fake).
    pub fn with_table<T>(blobs: &'a dyn BlobStore, queue: &'a dyn JobQueue, table: &'a T) -> Self
    where
        T: CreateRequest + ReadRequest + MoveRequest,
    {
        Self { blobs, new_requests: table, requests: table, lifecycle: table, queue }
    }
}

pub async fn accept_csv(
    ports: AcceptPorts<'_>,
    csv_bytes: &[u8],
    webhook_url: Option<&str>,
    limits: &CsvLimits,
) -> Result<Accepted, AcceptError> {
    accept_csv_as(ports, RequestId::new_random(), csv_bytes, webhook_url, limits).await
}

/// The same under a given id; `create` refuses an id that exists, so an id is accepted once.
pub(crate) async fn accept_csv_as(
    ports: AcceptPorts<'_>,
    request_id: RequestId,
    csv_bytes: &[u8],
    webhook_url: Option<&str>,
    limits: &CsvLimits,
) -> Result<Accepted, AcceptError> {
    let started = Instant::now();
    let csv = ValidatedCsv::parse(csv_bytes, limits)?;
    let webhook_url = webhook_url
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| HttpUrl::parse_at_most(url, limits.max_url_length))
        .transpose()
        .map_err(AcceptError::WebhookUrl)?;

    let mut request = RequestRecord::new(request_id, csv.image_count() as u64, webhook_url, Utc::now());
    if request.webhook_url.is_some() {
        let secret = WebhookSecret::generate().map_err(AcceptError::NoRandomness)?;
        request.webhook_secret = Some(secret);
    }
    log_stage(request_id, "validate", started);
    ports.blobs.put(&request.input_csv_key, csv_bytes.to_vec(), "text/csv").await?;
    ports.new_requests.create(&request).await?;
    if let Err(error) = ports.queue.enqueue_fan_out(request_id).await {
        // The request would wait forever for jobs nobody queues: fail it now, and let the
        // client, told to retry, upload again as a new request.
        let fail = FailPorts { requests: ports.requests, lifecycle: ports.lifecycle };
        fail_request(fail, request_id, "its image jobs could not be queued", Utc::now()).await?;
        return Err(error.into());
    }
    log_stage(request_id, "accepted", started);
    Ok(Accepted { request_id, image_count: csv.image_count(), webhook_secret: request.webhook_secret })
}

/// One log line per stage with the time since the upload arrived.
fn log_stage(request_id: RequestId, stage: &str, since: Instant) {
    tracing::info!(request_id = %request_id, stage, elapsed_ms = since.elapsed().as_millis() as u64);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryQueue, MemoryTable};
    use crate::domain::locations::input_csv_key;
    use crate::domain::request::RequestStatus;

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    #[derive(Default)]
    pub(crate) struct Fakes {
        pub blobs: MemoryBlobs,
        pub table: MemoryTable,
        pub queue: MemoryQueue,
    }

    impl Fakes {
        pub fn ports(&self) -> AcceptPorts<'_> {
            AcceptPorts::with_table(&self.blobs, &self.queue, &self.table)
        }
    }

    #[tokio::test]
    async fn a_good_csv_is_stored_recorded_and_its_fan_out_queued() {
        let fakes = Fakes::default();
        let accepted =
            accept_csv(fakes.ports(), CSV.as_bytes(), Some("https://hooks.example/x"), &CsvLimits::default())
                .await
                .unwrap();

        assert_eq!(accepted.image_count, 3);
        let id = accepted.request_id;
        assert!(fakes.blobs.objects.lock().unwrap().contains_key(&input_csv_key(id)));
        let request = fakes.table.get(id).await.unwrap().unwrap();
        assert_eq!((request.status, request.total, request.remaining), (RequestStatus::Pending, 3, 3));
        assert_eq!(request.webhook_url.unwrap().as_str(), "https://hooks.example/x");
        assert_eq!(request.webhook_secret, accepted.webhook_secret, "the client gets the signing secret");
        assert!(request.webhook_secret.is_some());
        assert_eq!(*fakes.queue.fan_outs.lock().unwrap(), [id]);
    }

    #[tokio::test]
    async fn a_bad_csv_leaves_nothing_behind() {
        let fakes = Fakes::default();
        let bad = "S. No.,Product Name,Input Image Urls\n1,,ftp://x\n";
        let result = accept_csv(fakes.ports(), bad.as_bytes(), None, &CsvLimits::default()).await;

        assert!(matches!(result, Err(AcceptError::Csv(CsvRejection::Invalid(_)))));
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
        assert!(fakes.queue.fan_outs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_webhook_url_is_refused_before_anything_is_stored() {
        let fakes = Fakes::default();
        let result = accept_csv(fakes.ports(), CSV.as_bytes(), Some("file:///etc/passwd"), &CsvLimits::default()).await;

        assert!(matches!(result, Err(AcceptError::WebhookUrl(_))));
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_webhook_url_over_the_length_limit_is_refused_before_anything_is_stored() {
        let fakes = Fakes::default();
        let base = "https://hooks.example/";
        let at_limit = format!("{base}{}", "h".repeat(2048 - base.len()));
        let accepted = accept_csv(fakes.ports(), CSV.as_bytes(), Some(&at_limit), &CsvLimits::default()).await;
        assert!(accepted.is_ok(), "a webhook URL of 2048 characters is accepted");

        let fakes = Fakes::default();
        let over = format!("{at_limit}h");
        let result = accept_csv(fakes.ports(), CSV.as_bytes(), Some(&over), &CsvLimits::default()).await;
        let Err(AcceptError::WebhookUrl(reason)) = result else { panic!("expected a refused webhook URL") };
        assert_eq!(reason.to_string(), "the URL is 2049 characters long, more than the limit of 2048");
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_queue_outage_fails_the_request_instead_of_leaving_it_waiting() {
        let fakes = Fakes::default();
        fakes.queue.outage.set(true);
        let result = accept_csv(fakes.ports(), CSV.as_bytes(), None, &CsvLimits::default()).await;

        let Err(AcceptError::Store(error)) = result else { panic!("expected a store error") };
        assert!(error.is_transient());
        let key = fakes.blobs.objects.lock().unwrap().keys().next().unwrap().clone();
        let id = key.split('/').nth(1).unwrap().parse().unwrap();
        assert_eq!(fakes.table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
    }
}
