//! Finishing a request once its last image has a result: write the output CSV (and the errors
//! report, when images failed), flip the request to its final state (once), then make the
//! webhook's first delivery.

use chrono::{DateTime, Utc};

use crate::domain::csv_rules::{write_errors_csv, write_output_csv};
use crate::domain::errors::StoreError;
use crate::domain::locations::{Links, errors_csv_key, image_path, output_csv_key};
use crate::domain::request::{
    FinalState, ImageState, RequestRecord, RequestStatus, Transition, image_as_shown, image_jobs,
};
use crate::domain::request_id::RequestId;
use crate::ports::{BlobStore, MoveRequest, ReadRequest, ReadResults, WebhookOutbox, WebhookSender};
use crate::use_cases::deliver_webhook::{self, DeliveryPorts, lost_after};
use crate::use_cases::links::link_url;
use crate::use_cases::stored_csv::{StoredCsvError, read_stored_csv};

#[derive(Clone, Copy)]
pub struct FinishPorts<'a> {
    pub requests: &'a dyn ReadRequest,
    pub results: &'a dyn ReadResults,
    pub lifecycle: &'a dyn MoveRequest,
    pub outbox: &'a dyn WebhookOutbox,
    pub blobs: &'a dyn BlobStore,
    pub webhooks: &'a dyn WebhookSender,
}

impl<'a> FinishPorts<'a> {
    /// Every table capability from one table (the DynamoDB adapter, or the fake).
    pub fn with_table<T>(table: &'a T, blobs: &'a dyn BlobStore, webhooks: &'a dyn WebhookSender) -> Self
    where
        T: ReadRequest + ReadResults + MoveRequest + WebhookOutbox,
    {
        Self { requests: table, results: table, lifecycle: table, outbox: table, blobs, webhooks }
    }

    pub fn delivery(&self) -> DeliveryPorts<'a> {
        DeliveryPorts { requests: self.requests, outbox: self.outbox, blobs: self.blobs, webhooks: self.webhooks }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// This call moved the request to its final state (and sent the webhook, if any).
    Now(RequestStatus),
    /// The request was final already: a replayed record; nothing was changed or sent.
    Already,
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Data we wrote ourselves is missing or does not parse: retrying will not help.
    #[error("request {0} cannot be finished: {1}")]
    Corrupt(RequestId, String),
}

impl FinishError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(error) => error.is_transient(),
            Self::Corrupt(..) => false,
        }
    }
}

pub async fn finish_request(
    ports: FinishPorts<'_>,
    request_id: RequestId,
    links: &Links,
) -> Result<Finished, FinishError> {
    let corrupt = |why: &str| FinishError::Corrupt(request_id, why.to_string());
    let mut request = ports.requests.get(request_id).await?.ok_or_else(|| corrupt("no request item"))?;
    // A cancelled request is final before its CSVs are written: its cancelling write woke us.
    let cancelled = request.status == RequestStatus::Cancelled && request.output_csv_key.is_none();
    if request.status.is_final() && !cancelled {
        return Ok(Finished::Already);
    }
    let csv = read_stored_csv(ports.blobs, &request).await.map_err(|error| match error {
        StoredCsvError::Store(error) => FinishError::Store(error),
        other => corrupt(&other.to_string()),
    })?;

    // One slot per input URL; an image without a recorded success keeps its slot empty.
    let mut outputs = vec![None; csv.image_count()];
    let mut failures = Vec::new();
    let mut recorded = ports.results.recorded_images(request_id).await?.into_iter().peekable();
    let images: Vec<_> = image_jobs(&request, &csv)
        .iter()
        .map(|job| image_as_shown(&request, job, recorded.next_if(|image| image.image_index == job.image_index)))
        .collect();
    for image in &images {
        match (image.state, &image.output_key, outputs.get_mut(image.image_index as usize)) {
            (ImageState::Done, Some(key), Some(slot)) => {
                *slot = Some(link_url(ports.blobs, links, image_path(request_id, image.image_index), key).await?);
            }
            (ImageState::Failed, _, _) => failures.push((
                image.image_index,
                image.error_code.as_deref().unwrap_or(""),
                image.error_message.as_deref().unwrap_or(""),
            )),
            _ => {}
        }
    }
    // Why each image failed, beside the output CSV (whose columns stay the input's plus one).
    if !failures.is_empty() {
        let report = write_errors_csv(&csv, &failures).map_err(|e| corrupt(&e.to_string()))?;
        ports.blobs.put(&errors_csv_key(&request.tenant_id, request_id), report, "text/csv").await?;
    }
    let output_csv = write_output_csv(&csv, &outputs).map_err(|e| corrupt(&e.to_string()))?;
    let csv_key = output_csv_key(&request.tenant_id, request_id);
    ports.blobs.put(&csv_key, output_csv, "text/csv").await?;

    let now = Utc::now();
    if cancelled {
        return finish_cancelled(ports, request, csv_key, links, now).await;
    }
    // A webhook is owed in this same write, taken by the delivery below: if this process dies
    // before ending it, it falls due and the sweeper makes it.
    let ending = FinalState::finished(&request, csv_key, lost_after(ports.webhooks, now));
    if ports.lifecycle.finish(request_id, &ending, now).await? == Transition::AlreadyDone {
        return Ok(Finished::Already);
    }
    let status = ending.status;
    (request.status, request.output_csv_key, request.completed_at) = (status, ending.output_csv_key, Some(now));

    // The state flip above happened once: this is the webhook's first delivery. A failed one
    // is due again later for the sweeper (`deliver_webhook`), not retried through the stream,
    // which would find the request final and send nothing.
    deliver_webhook::deliver(&ports.delivery(), &request, links, 1, now).await?;
    Ok(Finished::Now(status))
}

/// The cancelled request's CSVs are written: record where, then take the webhook its cancelling
/// write owes (unless the sweeper took it first) and make its delivery.
async fn finish_cancelled(
    ports: FinishPorts<'_>,
    mut request: RequestRecord,
    csv_key: String,
    links: &Links,
    now: DateTime<Utc>,
) -> Result<Finished, FinishError> {
    let id = request.request_id;
    if ports.lifecycle.record_output_csv(id, &csv_key).await? == Transition::AlreadyDone {
        return Ok(Finished::Already);
    }
    request.output_csv_key = Some(csv_key);
    if let Some(due_at) = request.webhook_next_at
        && ports.outbox.claim_webhook(id, due_at, lost_after(ports.webhooks, now)).await? == Transition::Applied
    {
        deliver_webhook::deliver(&ports.delivery(), &request, links, request.webhook_failed_deliveries + 1, now)
            .await?;
    }
    Ok(Finished::Now(RequestStatus::Cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable, MemoryWebhooks};
    use crate::domain::csv_rules::{CsvLimits, ValidatedCsv};
    use crate::domain::http_url::HttpUrl;
    use crate::domain::request::ImageOutcome;
    use crate::domain::request::Progress;
    use crate::test_support::{NO_QUOTA, tenant};

    use crate::ports::{CreateRequest, RecordResult};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg,https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    struct Fixture {
        table: MemoryTable,
        blobs: MemoryBlobs,
        webhooks: MemoryWebhooks,
        id: RequestId,
        links: Links,
    }

    impl Fixture {
        /// A request whose images end as `outcomes` (true = done), recorded through the port.
        async fn with_outcomes(outcomes: &[bool]) -> Self {
            let fixture = Self {
                table: MemoryTable::default(),
                blobs: MemoryBlobs::default(),
                webhooks: MemoryWebhooks::default(),
                id: RequestId::new_random(),
                links: Links::Presigned { lifetime: Duration::from_secs(60) },
            };
            let csv = ValidatedCsv::parse(CSV.as_bytes(), &CsvLimits::default()).unwrap();
            let hook = HttpUrl::parse("https://hooks.example/done").unwrap();
            let request = RequestRecord::new(fixture.id, tenant(), 3, Some(hook), Utc::now());
            fixture.blobs.put(&request.input_csv_key, CSV.into(), "text/csv").await.unwrap();
            fixture.table.create(&request, &NO_QUOTA).await.unwrap();
            for (job, done) in image_jobs(&request, &csv).iter().zip(outcomes) {
                let index = job.image_index;
                let outcome = if *done {
                    ImageOutcome::Done {
                        output_key: format!("out/{index}.jpg"),
                        bytes_in: 10,
                        bytes_out: 5,
                        note: None,
                    }
                } else {
                    ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() }
                };
                fixture.table.record(job, &outcome, Utc::now(), Progress::Made).await.unwrap();
            }
            fixture
        }

        fn ports(&self) -> FinishPorts<'_> {
            FinishPorts::with_table(&self.table, &self.blobs, &self.webhooks)
        }

        async fn finish(&self) -> Finished {
            finish_request(self.ports(), self.id, &self.links).await.unwrap()
        }

        fn output_rows(&self) -> Vec<Vec<String>> {
            let objects = self.blobs.objects.lock().unwrap();
            let (body, _) = objects.get(&output_csv_key(&tenant(), self.id)).expect("output CSV written");
            csv::Reader::from_reader(body.as_slice())
                .records()
                .map(|record| record.unwrap().iter().map(String::from).collect())
                .collect()
        }
    }

    #[tokio::test]
    async fn a_failed_image_leaves_an_empty_slot_and_an_honest_status() {
        let fixture = Fixture::with_outcomes(&[true, false, true]).await;
        assert_eq!(fixture.finish().await, Finished::Now(RequestStatus::CompletedWithErrors));

        let rows = fixture.output_rows();
        assert_eq!(rows[0][3], "https://blobs.example/out/0.jpg,");
        assert_eq!(rows[1][3], "https://blobs.example/out/2.jpg");
        let request = fixture.table.get(fixture.id).await.unwrap().unwrap();
        assert_eq!(request.output_csv_key, Some(output_csv_key(&tenant(), fixture.id)));
        let objects = fixture.blobs.objects.lock().unwrap();
        let report = String::from_utf8(objects[&errors_csv_key(&tenant(), fixture.id)].0.clone()).unwrap();
        assert!(report.lines().nth(1).unwrap().contains("https://img.example/b.png,http_status_404,gone"), "{report}");
        assert!(request.completed_at.is_some());
    }

    #[tokio::test]
    async fn the_webhook_gets_the_final_counts_once_even_when_replayed() {
        let fixture = Fixture::with_outcomes(&[true, true, true]).await;
        assert_eq!(fixture.finish().await, Finished::Now(RequestStatus::Completed));
        assert_eq!(fixture.finish().await, Finished::Already);

        let sent = fixture.webhooks.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        let (url, payload) = &sent[0];
        assert_eq!(url, "https://hooks.example/done");
        assert_eq!(
            (payload.status, payload.total, payload.succeeded, payload.failed),
            (RequestStatus::Completed, 3, 3, 0)
        );
        assert!(payload.output_csv_url.as_deref().unwrap().ends_with("/output.csv"));
    }

    #[tokio::test]
    async fn a_notifier_that_dies_between_the_final_write_and_the_post_loses_no_webhook() {
        let fixture = Fixture::with_outcomes(&[true, true, true]).await;
        fixture.webhooks.hangs.store(true, Ordering::SeqCst);
        let finishing = tokio::time::timeout(Duration::from_millis(50), fixture.finish());
        assert!(finishing.await.is_err(), "the notifier died in the POST");
        assert_eq!(fixture.table.get(fixture.id).await.unwrap().unwrap().status, RequestStatus::Completed);
        fixture.webhooks.hangs.store(false, Ordering::SeqCst);

        // The sweeper finds the delivery owed once it could no longer be in flight.
        let ports = fixture.ports().delivery();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let soon = Utc::now() + chrono::Duration::seconds(5);
        assert_eq!(deliver_webhook::deliver_due_webhooks(&ports, &fixture.links, soon, deadline).await.unwrap(), 0);
        let later = Utc::now() + chrono::Duration::seconds(31);
        assert_eq!(deliver_webhook::deliver_due_webhooks(&ports, &fixture.links, later, deadline).await.unwrap(), 1);
        assert_eq!(deliver_webhook::deliver_due_webhooks(&ports, &fixture.links, later, deadline).await.unwrap(), 0);
        let sent = fixture.webhooks.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].1.request_id, sent[0].1.status), (fixture.id, RequestStatus::Completed));
    }

    #[tokio::test]
    async fn links_through_the_api_never_expire() {
        let mut fixture = Fixture::with_outcomes(&[true, false, true]).await;
        fixture.links = Links::Api { base_url: "https://api.example/".into() };
        fixture.finish().await;

        let id = fixture.id;
        let rows = fixture.output_rows();
        assert_eq!(rows[0][3], format!("https://api.example/api/requests/{id}/images/0,"));
        assert_eq!(rows[1][3], format!("https://api.example/api/requests/{id}/images/2"));
        let sent = fixture.webhooks.sent.lock().unwrap();
        assert_eq!(sent[0].1.output_csv_url, Some(format!("https://api.example/api/requests/{id}/output.csv")));
    }

    #[tokio::test]
    async fn every_image_failing_is_a_failed_request() {
        let fixture = Fixture::with_outcomes(&[false, false, false]).await;
        assert_eq!(fixture.finish().await, Finished::Now(RequestStatus::Failed));
        assert!(fixture.output_rows().iter().all(|row| row[3].chars().all(|c| c == ',')));
    }

    #[tokio::test]
    async fn a_cancelled_request_gets_its_csvs_with_the_cancelled_images_and_its_webhook_once() {
        let fixture = Fixture::with_outcomes(&[true]).await;
        let seen = fixture.table.get(fixture.id).await.unwrap().unwrap();
        let ending = FinalState::cancelled(&seen, Utc::now() + chrono::Duration::minutes(2));
        fixture.table.cancel(&seen, &ending, Utc::now()).await.unwrap();

        assert_eq!(fixture.finish().await, Finished::Now(RequestStatus::Cancelled));
        assert_eq!(fixture.finish().await, Finished::Already, "a replayed record");
        let rows = fixture.output_rows();
        assert_eq!((rows[0][3].as_str(), rows[1][3].as_str()), ("https://blobs.example/out/0.jpg,", ""));
        let report = fixture.blobs.objects.lock().unwrap()[&errors_csv_key(&tenant(), fixture.id)].0.clone();
        let report = String::from_utf8(report).unwrap();
        let codes: Vec<&str> = report.lines().skip(1).map(|line| line.split(',').nth(4).unwrap()).collect();
        assert_eq!(codes, ["cancelled", "cancelled"], "{report}");

        let request = fixture.table.get(fixture.id).await.unwrap().unwrap();
        assert_eq!(request.output_csv_key, Some(output_csv_key(&tenant(), fixture.id)));
        assert!(request.has_errors_report());
        assert_eq!(request.webhook_next_at, None, "delivered: nothing owed");
        let sent = fixture.webhooks.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        let payload = &sent[0].1;
        let counts = (payload.status, payload.succeeded, payload.failed, payload.cancelled);
        assert_eq!(counts, (RequestStatus::Cancelled, 1, 0, 2));
        assert!(payload.output_csv_url.is_some() && payload.errors_csv_url.is_some());
    }
}
