//! The sweeper, run every minute by the schedule: it ends requests that stopped making
//! progress, so none waits forever, then gives the webhooks that could not be delivered earlier
//! their next delivery when it is due (`deliver_webhook`).
//!
//! Ending an idle request: images still PENDING long after the request's last progress (their
//! jobs lost, or stuck retrying) are failed as `timed_out`, and a request whose last result was
//! recorded but which never reached its final state (its stream record lost) is finished.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;

use crate::domain::errors::StoreError;
use crate::domain::locations::Links;
use crate::domain::request::{ImageJob, ImageOutcome, Transition, image_jobs};
use crate::domain::request_id::RequestId;
use crate::ports::{FindIdleRequests, RecordResult};
use crate::use_cases::deliver_webhook;
use crate::use_cases::fail_request::fail_request;
use crate::use_cases::finish_request::{FinishError, FinishPorts, Finished, finish_request};
use crate::use_cases::stored_csv::{StoredCsvError, read_stored_csv};

/// The code recorded for images failed by the sweeper.
pub const TIMED_OUT: &str = "timed_out";

pub struct SweepPorts<'a> {
    pub idle: &'a dyn FindIdleRequests,
    pub recorder: &'a dyn RecordResult,
    pub finish: FinishPorts<'a>,
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub requests_finished: usize,
    pub images_timed_out: usize,
    /// Deferred webhooks whose next delivery was tried.
    pub webhooks_tried: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Finish(FinishError),
}

/// Ends every request with no progress for `idle`, then makes the due webhook deliveries. Safe
/// to run at any time and as often as wanted: each image and request moves once, whoever moves it.
pub async fn run_sweep(ports: SweepPorts<'_>, idle: Duration, links: &Links) -> Result<SweepReport, SweepError> {
    let cutoff = Utc::now() - chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
    let mut report = SweepReport::default();
    for request_id in ports.idle.idle_requests(cutoff).await? {
        let Some(jobs) = image_jobs_of(&ports, request_id).await? else {
            // Without its CSV there is nothing to fail image by image or to write out.
            let why = "input CSV missing or unreadable";
            if fail_request(ports.finish.lifecycle, request_id, why).await? == Transition::Applied {
                report.requests_finished += 1;
            }
            continue;
        };
        let recorded: HashSet<u32> =
            ports.finish.results.recorded_images(request_id).await?.iter().map(|image| image.image_index).collect();
        let message = format!("no result within {} s of the request's last progress", idle.as_secs());
        for job in jobs.iter().filter(|job| !recorded.contains(&job.image_index)) {
            let outcome = ImageOutcome::Failed { error_code: TIMED_OUT.into(), error_message: message.clone() };
            if ports.recorder.record(job, &outcome, Utc::now()).await? == Transition::Applied {
                report.images_timed_out += 1;
            }
        }
        match finish_request(ports.finish, request_id, links).await {
            Ok(Finished::Now(_)) => report.requests_finished += 1,
            Ok(Finished::Already) => {}
            Err(error) if error.is_transient() => return Err(SweepError::Finish(error)),
            Err(error) => tracing::error!(request_id = %request_id, stage = "sweep", error = %error),
        }
        tracing::info!(request_id = %request_id, stage = "swept");
    }
    report.webhooks_tried = deliver_webhook::deliver_due_webhooks(&ports.finish.delivery(), links, Utc::now()).await?;
    Ok(report)
}

/// The request's image jobs, rebuilt from its stored CSV; `None` if the CSV is gone or unreadable.
async fn image_jobs_of(ports: &SweepPorts<'_>, request_id: RequestId) -> Result<Option<Vec<ImageJob>>, StoreError> {
    let Some(request) = ports.finish.requests.get(request_id).await? else { return Ok(None) };
    match read_stored_csv(ports.finish.blobs, &request).await {
        Ok(csv) => Ok(Some(image_jobs(request_id, &csv))),
        Err(StoredCsvError::Store(error)) => Err(error),
        Err(StoredCsvError::Missing | StoredCsvError::Unreadable(_)) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable, MemoryWebhooks};
    use crate::domain::http_url::HttpUrl;
    use crate::domain::request::{ImageState, RequestRecord, RequestStatus};
    use crate::ports::{BlobStore, CreateRequest, ReadRequest, ReadResults};

    const CSV: &str =
        "S. No.,Product Name,Input Image Urls\n1,Shirt,\"https://img.example/a.jpg,https://img.example/b.jpg\"\n";

    async fn request(table: &MemoryTable, blobs: &MemoryBlobs, age: chrono::Duration) -> RequestId {
        let id = RequestId::new_random();
        let request = RequestRecord::new(id, 2, None, Utc::now() - age);
        blobs.put(&request.input_csv_key, CSV.into(), "text/csv").await.unwrap();
        table.create(&request).await.unwrap();
        id
    }

    fn job(id: RequestId, index: u32) -> ImageJob {
        let url = HttpUrl::parse(&format!("https://img.example/{}.jpg", ["a", "b"][index as usize])).unwrap();
        ImageJob { request_id: id, image_index: index, row: 0, url }
    }

    async fn sweep(table: &MemoryTable, blobs: &MemoryBlobs, webhooks: &MemoryWebhooks) -> SweepReport {
        let finish = FinishPorts { requests: table, results: table, lifecycle: table, outbox: table, blobs, webhooks };
        let ports = SweepPorts { idle: table, recorder: table, finish };
        let links = Links::Presigned { lifetime: Duration::from_secs(60) };
        run_sweep(ports, Duration::from_secs(900), &links).await.unwrap()
    }

    #[tokio::test]
    async fn a_stuck_request_has_its_pending_images_timed_out_and_ends() {
        let (table, blobs, webhooks) = (MemoryTable::default(), MemoryBlobs::default(), MemoryWebhooks::default());
        let stuck = request(&table, &blobs, chrono::Duration::minutes(20)).await;
        let done = ImageOutcome::Done { output_key: "out/0.jpg".into(), bytes_in: 9, bytes_out: 4, note: None };
        table.record(&job(stuck, 0), &done, Utc::now() - chrono::Duration::minutes(16)).await.unwrap();
        let recent = request(&table, &blobs, chrono::Duration::minutes(1)).await;

        let report = sweep(&table, &blobs, &webhooks).await;

        assert_eq!(report, SweepReport { requests_finished: 1, images_timed_out: 1, webhooks_tried: 0 });
        let stuck_request = table.get(stuck).await.unwrap().unwrap();
        assert_eq!(stuck_request.status, RequestStatus::CompletedWithErrors);
        let images = table.recorded_images(stuck).await.unwrap();
        assert_eq!(images[1].input_url.as_str(), "https://img.example/b.jpg", "rebuilt from the CSV");
        assert_eq!(images[1].error_code.as_deref(), Some(TIMED_OUT));
        assert_eq!(images[0].state, ImageState::Done, "recorded results are kept");
        assert_eq!(
            table.get(recent).await.unwrap().unwrap().status,
            RequestStatus::Pending,
            "recent progress is left alone"
        );
    }

    #[tokio::test]
    async fn a_finished_request_that_missed_its_stream_record_is_finished() {
        let (table, blobs, webhooks) = (MemoryTable::default(), MemoryBlobs::default(), MemoryWebhooks::default());
        let id = request(&table, &blobs, chrono::Duration::minutes(30)).await;
        for index in 0..2 {
            let done =
                ImageOutcome::Done { output_key: format!("out/{index}.jpg"), bytes_in: 9, bytes_out: 4, note: None };
            table.record(&job(id, index), &done, Utc::now() - chrono::Duration::minutes(20)).await.unwrap();
        }

        let report = sweep(&table, &blobs, &webhooks).await;

        assert_eq!(report, SweepReport { requests_finished: 1, images_timed_out: 0, webhooks_tried: 0 });
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Completed);
        assert_eq!(sweep(&table, &blobs, &webhooks).await, SweepReport::default(), "a second sweep changes nothing");
    }

    #[tokio::test]
    async fn a_request_without_its_csv_is_failed() {
        let (table, blobs, webhooks) = (MemoryTable::default(), MemoryBlobs::default(), MemoryWebhooks::default());
        let id = RequestId::new_random();
        table.create(&RequestRecord::new(id, 2, None, Utc::now() - chrono::Duration::hours(1))).await.unwrap();

        assert_eq!(sweep(&table, &blobs, &webhooks).await.requests_finished, 1);
        assert_eq!(table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
    }
}
