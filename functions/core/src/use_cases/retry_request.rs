//! Retrying a final request's failed images: a new request (new id, `retry_of` the first) with
//! the same rows and webhook, in which the first one's successes are carried over without being
//! fetched again, and only the other images are processed. It is made like an upload
//! (`accept_upload::store_and_queue`), holding of its tenant's quota only the images it
//! processes; its fan-out (`fan_out`) carries the successes over, then queues the rest.

use std::collections::HashSet;

use chrono::Utc;

use crate::domain::errors::StoreError;
use crate::domain::quota::TenantQuota;
use crate::domain::request::{ImageState, RequestRecord, RequestStatus};
use crate::domain::request_id::RequestId;
use crate::domain::webhook_signature::WebhookSigningKey;
use crate::ports::{Admission, CarryOverResults, ReadResults};
use crate::use_cases::accept_upload::{AcceptPorts, Accepted, store_and_queue};

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("the request has not ended yet ({})", .0.as_str())]
    NotFinal(RequestStatus),
    #[error("every image of the request succeeded")]
    NothingToRetry,
    /// The first request's stored CSV is gone (the bucket's retention removed it).
    #[error("the request's input CSV is no longer stored")]
    InputGone,
    #[error("the tenant has too many images in progress (at most {max_open_images})")]
    OverQuota { max_open_images: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Retries `first` (the caller's own); the new request, accepted as an upload is.
pub async fn retry_request(
    ports: AcceptPorts<'_>,
    first: &RequestRecord,
    quota: &TenantQuota,
    signing_key: &WebhookSigningKey,
) -> Result<Accepted, RetryError> {
    if !first.status.is_final() {
        return Err(RetryError::NotFinal(first.status));
    }
    if first.images_to_retry() == 0 {
        return Err(RetryError::NothingToRetry);
    }
    let csv = ports.blobs.get(&first.input_csv_key).await?.ok_or(RetryError::InputGone)?;
    let retry = RequestRecord::retry_of(RequestId::new_random(), first, Utc::now());
    if !quota.admits(0, retry.open_images()) {
        return Err(RetryError::OverQuota { max_open_images: quota.max_open_images });
    }
    if store_and_queue(ports, &retry, &csv, quota).await? == Admission::OverQuota {
        return Err(RetryError::OverQuota { max_open_images: quota.max_open_images });
    }
    let id = retry.request_id;
    tracing::info!(request_id = %id, retry_of = %first.request_id, stage = "retry", to_process = retry.open_images());
    Ok(Accepted {
        request_id: id,
        image_count: retry.total,
        has_webhook: retry.webhook_url.is_some(),
        webhook_secret: retry.webhook_url.is_some().then(|| signing_key.secret_for(id)),
        replayed: false,
    })
}

/// The retry's part of its fan-out: the successes of `first` become results of `retry` (the
/// same output objects, bytes and notes); their indexes, not to be queued again.
pub(crate) async fn carry_over_successes(
    results: &dyn ReadResults,
    carry: &dyn CarryOverResults,
    retry: &RequestRecord,
    first: RequestId,
) -> Result<HashSet<u32>, StoreError> {
    let mut carried = results.recorded_images(first).await?;
    carried.retain(|image| image.state == ImageState::Done);
    for image in &mut carried {
        image.request_id = retry.request_id;
    }
    if carried.len() as u64 != retry.carried_over {
        // Counted at the retry's creation from the first request's final counts, which never
        // move again; a difference means its results expired meanwhile.
        tracing::error!(request_id = %retry.request_id, stage = "carry_over", found = carried.len(), counted = retry.carried_over);
    }
    carry.carry_over(&carried).await?;
    Ok(carried.iter().map(|image| image.image_index).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryQueue, MemoryTable};
    use crate::domain::csv_rules::{CsvLimits, ValidatedCsv};
    use crate::domain::fan_out_chunks::DEFAULT_CHUNK_IMAGES;
    use crate::domain::request::{FinalState, ImageOutcome, Progress, image_jobs};
    use crate::ports::{BlobStore, CreateRequest, MoveRequest, ReadRequest, RecordResult};
    use crate::test_support::{signing_key, tenant};
    use crate::use_cases::fan_out::{FanOutPorts, fan_out, fan_out_chunk};
    use crate::use_cases::list_images::{first_failures, list_images};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg,https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    #[derive(Default)]
    struct Fakes {
        blobs: MemoryBlobs,
        table: MemoryTable,
        queue: MemoryQueue,
    }

    impl Fakes {
        /// A request of 3 images whose images end as `outcomes` (true = done; `None` = no
        /// result), then finished or, when some have no result, cancelled.
        async fn ended(&self, outcomes: &[Option<bool>]) -> RequestRecord {
            let request = RequestRecord::new(RequestId::new_random(), tenant(), 3, None, Utc::now());
            self.blobs.put(&request.input_csv_key, CSV.into(), "text/csv").await.unwrap();
            self.table.create(&request, &TenantQuota { max_open_images: 3 }).await.unwrap();
            let csv = ValidatedCsv::parse(CSV.as_bytes(), &CsvLimits::default()).unwrap();
            for (job, outcome) in image_jobs(&request, &csv).iter().zip(outcomes) {
                let outcome = match outcome {
                    Some(true) => ImageOutcome::Done {
                        output_key: format!("first/{}.jpg", job.image_index),
                        bytes_in: 10,
                        bytes_out: 5,
                        note: None,
                    },
                    Some(false) => {
                        ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() }
                    }
                    None => continue,
                };
                self.table.record(job, &outcome, Utc::now(), Progress::Made).await.unwrap();
            }
            let seen = self.table.get(request.request_id).await.unwrap().unwrap();
            if seen.pending_images() > 0 {
                self.table.cancel(&seen, &FinalState::cancelled(&seen, Utc::now()), Utc::now()).await.unwrap();
            } else {
                self.table
                    .finish(seen.request_id, &FinalState::finished(&seen, "out.csv".into(), Utc::now()), Utc::now())
                    .await
                    .unwrap();
            }
            self.table.get(request.request_id).await.unwrap().unwrap()
        }

        async fn retry(&self, first: &RequestRecord, quota: u64) -> Result<Accepted, RetryError> {
            let ports = AcceptPorts::with_table(&self.blobs, &self.queue, &self.table);
            retry_request(ports, first, &TenantQuota { max_open_images: quota }, &signing_key()).await
        }

        /// The retry's fan-out, in chunks of `chunk_images`, and each chunk's.
        async fn fan_out_in_chunks(&self, id: RequestId, chunk_images: u32) {
            fan_out(self.fan_out_ports(), id, chunk_images).await.unwrap();
            let chunks = self.queue.chunks.lock().unwrap().clone();
            for chunk in &chunks {
                fan_out_chunk(self.fan_out_ports(), chunk).await.unwrap();
            }
        }

        async fn fan_out(&self, id: RequestId) {
            self.fan_out_in_chunks(id, DEFAULT_CHUNK_IMAGES).await;
        }

        fn fan_out_ports(&self) -> FanOutPorts<'_> {
            FanOutPorts {
                requests: &self.table,
                lifecycle: &self.table,
                blobs: &self.blobs,
                queue: &self.queue,
                results: &self.table,
                carry: &self.table,
            }
        }
    }

    #[tokio::test]
    async fn a_retry_carries_the_successes_over_and_queues_only_the_other_images() {
        let fakes = Fakes::default();
        let first = fakes.ended(&[Some(true), Some(false), None]).await;
        assert_eq!(first.status, RequestStatus::Cancelled);
        let failures = first_failures(&fakes.table, &fakes.blobs, &first, 100).await.unwrap();
        let codes: Vec<_> = failures.iter().map(|image| image.error_code.as_deref().unwrap()).collect();
        assert_eq!(codes, ["http_status_404", "cancelled"], "a cancelled image is a failure");

        // 2 images to process fit a quota of 2, though the request has 3.
        let accepted = fakes.retry(&first, 2).await.unwrap();
        let retry = fakes.table.get(accepted.request_id).await.unwrap().unwrap();
        assert_eq!((retry.retry_of, retry.total, retry.succeeded, retry.remaining), (Some(first.request_id), 3, 1, 2));
        assert_eq!(fakes.table.open_images(&tenant()), 2);
        fakes.fan_out(retry.request_id).await;

        let queued: Vec<u32> = fakes.queue.queued_images().iter().map(|job| job.image_index).collect();
        assert_eq!(queued, [1, 2], "only the images that did not succeed");
        let (images, _) = list_images(&fakes.table, &fakes.blobs, &retry, None, 10).await.unwrap();
        assert_eq!(images[0].state, ImageState::Done);
        assert_eq!(images[0].output_key.as_deref(), Some("first/0.jpg"), "the first run's output");
        assert_eq!(images[0].request_id, retry.request_id);
    }

    #[tokio::test]
    async fn a_retry_in_chunks_queues_only_the_images_that_did_not_succeed() {
        let fakes = Fakes::default();
        let first = fakes.ended(&[Some(false), Some(true), Some(false)]).await;
        let accepted = fakes.retry(&first, 10).await.unwrap();

        fakes.fan_out_in_chunks(accepted.request_id, 2).await;
        assert_eq!(fakes.queue.chunks.lock().unwrap().len(), 2, "3 images in chunks of 2");
        let queued: Vec<u32> = fakes.queue.queued_images().iter().map(|job| job.image_index).collect();
        assert_eq!(queued, [0, 2], "the success in the first chunk is carried over, not queued");
    }

    #[tokio::test]
    async fn a_retry_needs_a_final_request_with_images_that_did_not_succeed_and_room_in_the_quota() {
        let fakes = Fakes::default();
        let running = RequestRecord::new(RequestId::new_random(), tenant(), 3, None, Utc::now());
        assert!(matches!(fakes.retry(&running, 10).await, Err(RetryError::NotFinal(RequestStatus::Pending))));
        let all_done = fakes.ended(&[Some(true), Some(true), Some(true)]).await;
        assert!(matches!(fakes.retry(&all_done, 10).await, Err(RetryError::NothingToRetry)));

        let failed = fakes.ended(&[Some(true), Some(false), Some(false)]).await;
        let over = fakes.retry(&failed, 1).await;
        assert!(matches!(over, Err(RetryError::OverQuota { max_open_images: 1 })), "{over:?}");
        assert_eq!(fakes.queue.fan_outs.lock().unwrap().len(), 0, "nothing queued");
        fakes.blobs.objects.lock().unwrap().remove(&failed.input_csv_key);
        assert!(matches!(fakes.retry(&failed, 10).await, Err(RetryError::InputGone)));
    }

    #[tokio::test]
    async fn a_retry_cancelled_before_its_fan_out_still_shows_its_carried_over_successes() {
        let fakes = Fakes::default();
        let first = fakes.ended(&[Some(true), Some(false), Some(false)]).await;
        let accepted = fakes.retry(&first, 10).await.unwrap();
        let retry = fakes.table.get(accepted.request_id).await.unwrap().unwrap();

        let ports = crate::use_cases::cancel_request::CancelPorts::with_table(&fakes.table);
        let cancelled = crate::use_cases::cancel_request::cancel_request(ports, retry, Utc::now()).await.unwrap();
        assert_eq!((cancelled.succeeded, cancelled.cancelled), (1, 2));
        let (images, _) = list_images(&fakes.table, &fakes.blobs, &cancelled, None, 10).await.unwrap();
        let shown: Vec<_> = images.iter().map(|image| (image.state, image.error_code.as_deref())).collect();
        assert_eq!(
            shown,
            [
                (ImageState::Done, None),
                (ImageState::Failed, Some("cancelled")),
                (ImageState::Failed, Some("cancelled"))
            ]
        );
        fakes.fan_out(cancelled.request_id).await;
        assert!(fakes.queue.jobs.lock().unwrap().is_empty(), "its fan-out queues nothing");
    }
}
