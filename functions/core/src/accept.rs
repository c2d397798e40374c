//! Accepting an upload: validate everything first, then store, record and queue, so a bad CSV
//! leaves no trace and a good one is never half-accepted.

use chrono::Utc;

use crate::csv_rules::{CsvLimits, CsvRejection, ValidatedCsv};
use crate::errors::StoreError;
use crate::http_url::{HttpUrl, InvalidUrl};
use crate::ports::{BlobStore, JobQueue, RequestTable};
use crate::request::{ImageJob, ImageRecord, RequestRecord, RequestStatus};
use crate::request_id::RequestId;

pub struct Accepted {
    pub request_id: RequestId,
    pub image_count: usize,
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
}

pub struct AcceptPorts<'a> {
    pub blobs: &'a dyn BlobStore,
    pub table: &'a dyn RequestTable,
    pub queue: &'a dyn JobQueue,
}

pub async fn accept_csv(
    ports: AcceptPorts<'_>,
    csv_bytes: &[u8],
    webhook_url: Option<&str>,
    limits: &CsvLimits,
) -> Result<Accepted, AcceptError> {
    let csv = ValidatedCsv::parse(csv_bytes, limits)?;
    let webhook_url = webhook_url
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(HttpUrl::parse)
        .transpose()
        .map_err(AcceptError::WebhookUrl)?;

    let request_id = RequestId::new_random();
    let request = RequestRecord::new(request_id, csv.image_count() as u64, webhook_url, Utc::now());
    ports.blobs.put(&request.input_csv_key, csv_bytes.to_vec(), "text/csv").await?;

    let images: Vec<ImageRecord> = csv
        .images()
        .map(|(index, row, url)| ImageRecord::pending(request_id, index as u32, row as u32, url.clone()))
        .collect();
    ports.table.create(&request, &images).await?;

    let jobs: Vec<ImageJob> = images
        .into_iter()
        .map(|image| ImageJob { request_id, image_index: image.image_index, url: image.input_url })
        .collect();
    if let Err(error) = ports.queue.enqueue(&jobs).await {
        // Some jobs may be queued; failing the request keeps it from waiting forever for the
        // rest, and the client, told to retry, uploads it again as a new request.
        ports.table.finish(request_id, RequestStatus::Failed, None, Utc::now()).await?;
        return Err(error.into());
    }
    ports.table.mark_processing(request_id, Utc::now()).await?;
    Ok(Accepted { request_id, image_count: jobs.len() })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::memory::{MemoryBlobs, MemoryQueue, MemoryTable};
    use crate::request::{ImageState, input_csv_key};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    struct Fakes {
        blobs: MemoryBlobs,
        table: MemoryTable,
        queue: MemoryQueue,
    }

    impl Fakes {
        fn new() -> Self {
            Self { blobs: MemoryBlobs::default(), table: MemoryTable::default(), queue: MemoryQueue::default() }
        }

        fn ports(&self) -> AcceptPorts<'_> {
            AcceptPorts { blobs: &self.blobs, table: &self.table, queue: &self.queue }
        }
    }

    #[tokio::test]
    async fn a_good_csv_is_stored_recorded_and_queued_in_order() {
        let fakes = Fakes::new();
        let accepted =
            accept_csv(fakes.ports(), CSV.as_bytes(), Some("https://hooks.example/x"), &CsvLimits::default())
                .await
                .unwrap();

        assert_eq!(accepted.image_count, 3);
        let id = accepted.request_id;
        assert!(fakes.blobs.objects.lock().unwrap().contains_key(&input_csv_key(id)));
        let request = fakes.table.get(id).await.unwrap().unwrap();
        assert_eq!((request.status, request.total, request.remaining), (RequestStatus::Processing, 3, 3));
        assert_eq!(request.webhook_url.unwrap().as_str(), "https://hooks.example/x");
        let images = fakes.table.images(id).await.unwrap();
        assert!(images.iter().all(|image| image.state == ImageState::Pending));
        assert_eq!(images.iter().map(|image| image.row).collect::<Vec<_>>(), [0, 0, 1]);
        let queued: Vec<String> = fakes.queue.jobs.lock().unwrap().iter().map(|job| job.url.to_string()).collect();
        assert_eq!(queued, ["https://img.example/a.jpg", "https://img.example/b.png", "https://img.example/c.webp"]);
    }

    #[tokio::test]
    async fn a_bad_csv_leaves_nothing_behind() {
        let fakes = Fakes::new();
        let bad = "S. No.,Product Name,Input Image Urls\n1,,ftp://x\n";
        let result = accept_csv(fakes.ports(), bad.as_bytes(), None, &CsvLimits::default()).await;

        assert!(matches!(result, Err(AcceptError::Csv(CsvRejection::Invalid(_)))));
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
        assert!(fakes.queue.jobs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_webhook_url_is_refused_before_anything_is_stored() {
        let fakes = Fakes::new();
        let result = accept_csv(fakes.ports(), CSV.as_bytes(), Some("file:///etc/passwd"), &CsvLimits::default()).await;

        assert!(matches!(result, Err(AcceptError::WebhookUrl(_))));
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_queue_outage_fails_the_request_instead_of_leaving_it_waiting() {
        let fakes = Fakes::new();
        fakes.queue.unavailable.store(true, Ordering::SeqCst);
        let result = accept_csv(fakes.ports(), CSV.as_bytes(), None, &CsvLimits::default()).await;

        let Err(AcceptError::Store(error)) = result else { panic!("expected a store error") };
        assert!(error.is_transient());
        let key = fakes.blobs.objects.lock().unwrap().keys().next().unwrap().clone();
        let id = key.split('/').nth(1).unwrap().parse().unwrap();
        assert_eq!(fakes.table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
    }
}
