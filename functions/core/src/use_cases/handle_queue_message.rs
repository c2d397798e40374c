//! What the worker does with one message of the jobs queue: queue a request's image jobs (the
//! fan-out), process one image, or accept CSVs dropped into the bucket; and, for a message from
//! the dead-letter queue, end what it was for rather than let its request wait forever.
//!
//! Each message is answered on its own: acknowledged (deleted), or handed back to the queue for
//! another delivery, so one image never holds up another.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::domain::csv_rules::CsvLimits;
use crate::domain::delivery::{JobsMessage, RetryPolicy, TimeReserves};
use crate::domain::dropped_csv::DroppedCsv;
use crate::domain::errors::RETRIES_EXHAUSTED;
use crate::domain::request::{ImageJob, ImageOutcome, Progress};
use crate::domain::request_id::RequestId;
use crate::ports::{BlobStore, CreateRequest, Fetcher, JobQueue, MoveRequest, ReadRequest, ReadResults, RecordResult};
use crate::use_cases::accept_dropped_csv::{accept_dropped_csv, reject_dropped_csv};
use crate::use_cases::accept_upload::AcceptPorts;
use crate::use_cases::fail_request::{FailPorts, fail_request};
use crate::use_cases::fan_out::{FanOutError, FanOutPorts, fan_out};
use crate::use_cases::process_image::{CodecPool, JobClock, JobResult, ProcessPorts, process_image};

#[derive(Clone, Copy)]
pub struct WorkerPorts<'a> {
    pub fetcher: &'a dyn Fetcher,
    pub blobs: &'a dyn BlobStore,
    pub queue: &'a dyn JobQueue,
    pub new_requests: &'a dyn CreateRequest,
    pub requests: &'a dyn ReadRequest,
    pub recorder: &'a dyn RecordResult,
    pub results: &'a dyn ReadResults,
    pub lifecycle: &'a dyn MoveRequest,
}

/// The worker's settings that decide what happens to a message.
pub struct WorkerRules<'a> {
    pub retry: &'a RetryPolicy,
    /// What a job needs left before each step; it is not started with less than all of it.
    pub reserves: TimeReserves,
    /// For CSVs dropped into the bucket.
    pub csv_limits: &'a CsvLimits,
}

/// One delivery of a message, as the queue made it.
pub struct Delivery<'a> {
    pub body: &'a str,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receives: u32,
    /// It comes from the jobs' dead-letter queue: every delivery of it went unanswered.
    pub from_dead_letters: bool,
    /// Until the Lambda is stopped.
    pub time_left: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Done with (or nothing can ever be done with it): delete it.
    Acknowledge,
    /// Deliver it again: after `delay` when given, else after the queue's visibility timeout.
    HandBack { delay: Option<Duration> },
}

pub async fn handle_queue_message(
    ports: WorkerPorts<'_>,
    rules: &WorkerRules<'_>,
    codec: &CodecPool,
    delivery: Delivery<'_>,
) -> Verdict {
    let clock = JobClock { deadline: Instant::now() + delivery.time_left, reserves: rules.reserves };
    match JobsMessage::read(delivery.body) {
        JobsMessage::FanOut(request_id) if delivery.from_dead_letters => {
            // The fan-out failed on every attempt: fail the request rather than leave it waiting.
            let ports = FailPorts { requests: ports.requests, lifecycle: ports.lifecycle };
            let why = "its image jobs could not be queued in any attempt";
            let failed = fail_request(ports, request_id, why, Utc::now()).await;
            hand_back_if_transient(failed.err().is_some_and(|e| e.is_transient()))
        }
        JobsMessage::FanOut(request_id) => run_fan_out(ports, request_id).await,
        JobsMessage::DroppedCsvs(dropped) if delivery.from_dead_letters => give_up_on_dropped(ports, &dropped).await,
        JobsMessage::DroppedCsvs(dropped) => accept_dropped(ports, rules, &dropped).await,
        JobsMessage::Unreadable(error) => {
            // Only our API and S3 write this queue; a body we cannot read will never become
            // readable, and names no image we could record a failure for.
            tracing::error!(stage = "decode_message", error = %error);
            Verdict::Acknowledge
        }
        JobsMessage::Image(job) if delivery.from_dead_letters => record_dead_letter(ports, &job).await,
        JobsMessage::Image(job) if delivery.time_left < rules.reserves.to_start() => out_of_time(&job),
        JobsMessage::Image(job) => run_image_job(ports, rules, codec, &job, delivery.receives, &clock).await,
    }
}

/// Too late to finish it before the Lambda is stopped: hand it back for another delivery now.
fn out_of_time(job: &ImageJob) -> Verdict {
    tracing::info!(request_id = %job.request_id, image_index = job.image_index, stage = "handed_back");
    Verdict::HandBack { delay: Some(Duration::ZERO) }
}

fn hand_back_if_transient(transient: bool) -> Verdict {
    if transient { Verdict::HandBack { delay: None } } else { Verdict::Acknowledge }
}

async fn run_image_job(
    ports: WorkerPorts<'_>,
    rules: &WorkerRules<'_>,
    codec: &CodecPool,
    job: &ImageJob,
    receives: u32,
    clock: &JobClock,
) -> Verdict {
    let process =
        ProcessPorts { fetcher: ports.fetcher, blobs: ports.blobs, recorder: ports.recorder, results: ports.results };
    match process_image(process, job, codec, rules.retry.is_last_attempt(receives), clock).await {
        JobResult::Recorded(_) | JobResult::Duplicate => Verdict::Acknowledge,
        JobResult::OutOfTime => out_of_time(job),
        JobResult::Retry(error) => {
            let delay = rules.retry.delay_after(receives);
            tracing::warn!(
                request_id = %job.request_id,
                image_index = job.image_index,
                stage = "retry",
                receives,
                retry_in_s = delay.as_secs(),
                error_code = error.code(),
                error = %error,
            );
            Verdict::HandBack { delay: Some(delay) }
        }
    }
}

/// Queues the image jobs of an accepted request.
async fn run_fan_out(ports: WorkerPorts<'_>, request_id: RequestId) -> Verdict {
    let started = Instant::now();
    let fan_out_ports =
        FanOutPorts { requests: ports.requests, lifecycle: ports.lifecycle, blobs: ports.blobs, queue: ports.queue };
    match fan_out(fan_out_ports, request_id).await {
        Ok(transition) => {
            let duration_ms = started.elapsed().as_millis() as u64;
            tracing::info!(request_id = %request_id, stage = "fan_out", duration_ms, ?transition);
            Verdict::Acknowledge
        }
        Err(FanOutError::Store(error)) if error.is_transient() => {
            tracing::warn!(request_id = %request_id, stage = "fan_out", error = %error);
            Verdict::HandBack { delay: None }
        }
        Err(error) => {
            tracing::error!(request_id = %request_id, stage = "fan_out", error = %error);
            Verdict::Acknowledge
        }
    }
}

/// CSVs dropped into the bucket under `incoming/`. Handed back on an outage; the receipt says
/// the rest.
async fn accept_dropped(ports: WorkerPorts<'_>, rules: &WorkerRules<'_>, dropped: &[DroppedCsv]) -> Verdict {
    let accept = AcceptPorts {
        blobs: ports.blobs,
        new_requests: ports.new_requests,
        requests: ports.requests,
        lifecycle: ports.lifecycle,
        queue: ports.queue,
    };
    let mut verdict = Verdict::Acknowledge;
    for csv in dropped {
        match accept_dropped_csv(accept, csv, rules.csv_limits).await {
            Ok(outcome) => tracing::info!(stage = "dropped_csv", key = csv.key, ?outcome),
            Err(error) => {
                tracing::warn!(stage = "dropped_csv", key = csv.key, error = %error);
                verdict = Verdict::HandBack { delay: None };
            }
        }
    }
    verdict
}

/// A notification of dropped CSVs in the dead-letter queue: accepting them failed on every
/// delivery. Each one that made no request gets a receipt saying so, to drop the file again.
async fn give_up_on_dropped(ports: WorkerPorts<'_>, dropped: &[DroppedCsv]) -> Verdict {
    let mut verdict = Verdict::Acknowledge;
    for csv in dropped {
        match reject_dropped_csv(ports.blobs, ports.requests, csv).await {
            Ok(outcome) => tracing::warn!(stage = "dropped_csv", key = csv.key, ?outcome, "from the dead-letter queue"),
            Err(error) => {
                tracing::warn!(stage = "dropped_csv", key = csv.key, error = %error);
                verdict = Verdict::HandBack { delay: None };
            }
        }
    }
    verdict
}

/// A job in the dead-letter queue was delivered `maxReceiveCount` times without a result
/// (the worker crashed or timed out on each): its image fails, so its request can end.
async fn record_dead_letter(ports: WorkerPorts<'_>, job: &ImageJob) -> Verdict {
    let outcome = ImageOutcome::Failed {
        error_code: RETRIES_EXHAUSTED.into(),
        error_message: "the image could not be processed in any of its attempts".into(),
    };
    match ports.recorder.record(job, &outcome, Utc::now(), Progress::Made).await {
        Ok(transition) => {
            tracing::info!(request_id = %job.request_id, image_index = job.image_index, stage = "dead_letter", ?transition);
            Verdict::Acknowledge
        }
        Err(error) => {
            tracing::error!(request_id = %job.request_id, image_index = job.image_index, stage = "dead_letter", error = %error);
            hand_back_if_transient(error.is_transient())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryFetcher, MemoryQueue, MemoryTable};
    use crate::domain::codec::CodecLimits;
    use crate::domain::http_url::HttpUrl;
    use crate::domain::request::{ImageState, QueueMessage, RequestRecord, RequestStatus};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.png\n";

    #[derive(Default)]
    struct Fakes {
        fetcher: MemoryFetcher,
        blobs: MemoryBlobs,
        queue: MemoryQueue,
        table: MemoryTable,
    }

    impl Fakes {
        fn ports(&self) -> WorkerPorts<'_> {
            WorkerPorts {
                fetcher: &self.fetcher,
                blobs: &self.blobs,
                queue: &self.queue,
                new_requests: &self.table,
                requests: &self.table,
                recorder: &self.table,
                results: &self.table,
                lifecycle: &self.table,
            }
        }

        /// A request of one image, whose CSV is stored.
        async fn request(&self) -> (RequestId, ImageJob) {
            let id = RequestId::new_random();
            let request = RequestRecord::new(id, 1, None, Utc::now());
            self.blobs.put(&request.input_csv_key, CSV.into(), "text/csv").await.unwrap();
            self.table.create(&request).await.unwrap();
            let url = HttpUrl::parse("https://img.example/a.png").unwrap();
            (id, ImageJob { request_id: id, image_index: 0, row: 0, url })
        }

        async fn handle(&self, body: &str, receives: u32, from_dead_letters: bool, time_left: Duration) -> Verdict {
            let retry = RetryPolicy { max_receives: 3, base: Duration::from_secs(10), cap: Duration::from_secs(120) };
            let limits = CsvLimits::default();
            let reserves = TimeReserves {
                fetch: Duration::from_secs(5),
                codec: Duration::from_secs(5),
                store: Duration::from_secs(10),
            };
            let rules = WorkerRules { retry: &retry, reserves, csv_limits: &limits };
            let codec = CodecPool::new(CodecLimits::default(), 1);
            let delivery = Delivery { body, receives, from_dead_letters, time_left };
            handle_queue_message(self.ports(), &rules, &codec, delivery).await
        }

        async fn status(&self, id: RequestId) -> RequestStatus {
            self.table.get(id).await.unwrap().unwrap().status
        }
    }

    const PLENTY: Duration = Duration::from_secs(600);

    fn body(message: QueueMessage) -> String {
        serde_json::to_string(&message).unwrap()
    }

    #[tokio::test]
    async fn an_image_from_the_dead_letter_queue_fails_as_retries_exhausted() {
        let fakes = Fakes::default();
        let (id, job) = fakes.request().await;
        let verdict = fakes.handle(&body(QueueMessage::Image(job)), 1, true, PLENTY).await;

        assert_eq!(verdict, Verdict::Acknowledge);
        let images = fakes.table.recorded_images(id).await.unwrap();
        assert_eq!((images[0].state, images[0].error_code.as_deref()), (ImageState::Failed, Some(RETRIES_EXHAUSTED)));
    }

    #[tokio::test]
    async fn a_fan_out_from_the_dead_letter_queue_fails_its_request() {
        let fakes = Fakes::default();
        let (id, _) = fakes.request().await;
        let verdict = fakes.handle(&body(QueueMessage::FanOut { fan_out: id }), 1, true, PLENTY).await;

        assert_eq!(verdict, Verdict::Acknowledge);
        assert_eq!(fakes.status(id).await, RequestStatus::Failed);
        assert!(fakes.queue.jobs.lock().unwrap().is_empty(), "no job queued for it");
    }

    #[tokio::test]
    async fn a_fan_out_queues_the_jobs() {
        let fakes = Fakes::default();
        let (id, job) = fakes.request().await;
        assert_eq!(
            fakes.handle(&body(QueueMessage::FanOut { fan_out: id }), 1, false, PLENTY).await,
            Verdict::Acknowledge
        );
        assert_eq!(*fakes.queue.jobs.lock().unwrap(), [job]);
        assert_eq!(fakes.status(id).await, RequestStatus::Processing);
    }

    #[tokio::test]
    async fn a_job_without_time_to_finish_is_handed_back_unstarted() {
        let fakes = Fakes::default();
        let (id, job) = fakes.request().await;
        let verdict = fakes.handle(&body(QueueMessage::Image(job)), 1, false, Duration::from_secs(19)).await;

        assert_eq!(verdict, Verdict::HandBack { delay: Some(Duration::ZERO) });
        assert!(fakes.table.recorded_images(id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_transient_failure_is_handed_back_with_the_policys_delay_until_the_last_attempt() {
        let mut fakes = Fakes::default();
        let (id, job) = fakes.request().await;
        fakes.fetcher.responses.insert(job.url.to_string(), Err(503));
        let message = body(QueueMessage::Image(job));

        assert_eq!(
            fakes.handle(&message, 2, false, PLENTY).await,
            Verdict::HandBack { delay: Some(Duration::from_secs(20)) }
        );
        assert!(fakes.table.recorded_images(id).await.unwrap().is_empty(), "a retry records nothing");
        assert_eq!(fakes.handle(&message, 3, false, PLENTY).await, Verdict::Acknowledge);
        let images = fakes.table.recorded_images(id).await.unwrap();
        assert_eq!(images[0].error_code.as_deref(), Some(RETRIES_EXHAUSTED), "the last attempt records its failure");
    }

    #[tokio::test]
    async fn a_dropped_csv_from_the_dead_letter_queue_gets_a_receipt_and_no_request() {
        let fakes = Fakes::default();
        fakes.blobs.put("incoming/shirts.csv", CSV.into(), "text/csv").await.unwrap();
        let verdict = fakes.handle(&dropped_notification(), 5, true, PLENTY).await;

        assert_eq!(verdict, Verdict::Acknowledge);
        let receipt = fakes.blobs.get("receipts/shirts.json").await.unwrap().expect("a receipt");
        let receipt: serde_json::Value = serde_json::from_slice(&receipt).unwrap();
        assert_eq!(receipt["status"], "rejected");
        assert!(receipt["error"].as_str().unwrap().contains("drop the file again"), "{receipt}");
        assert!(fakes.queue.fan_outs.lock().unwrap().is_empty(), "not accepted as a fresh drop");
    }

    #[tokio::test]
    async fn a_body_nobody_wrote_is_acknowledged_and_changes_nothing() {
        let fakes = Fakes::default();
        assert_eq!(fakes.handle("{\"hello\": 1}", 1, false, PLENTY).await, Verdict::Acknowledge);
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_notification_of_a_dropped_csv_makes_a_request_and_an_outage_hands_it_back() {
        let fakes = Fakes::default();
        fakes.blobs.put("incoming/shirts.csv", CSV.into(), "text/csv").await.unwrap();
        let notification = dropped_notification();

        fakes.queue.outage.set(true);
        assert_eq!(fakes.handle(&notification, 1, false, PLENTY).await, Verdict::HandBack { delay: None });
        fakes.queue.outage.set(false);
        assert_eq!(fakes.handle(&notification, 2, false, PLENTY).await, Verdict::Acknowledge);
        assert!(fakes.blobs.get("receipts/shirts.json").await.unwrap().is_some(), "a receipt is written");
    }

    fn dropped_notification() -> String {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-30T00:00:00.123Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "EXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "incoming-csv",
                "bucket": {"name": "bucket", "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": "arn:aws:s3:::bucket"},
                "object": {"key": "incoming/shirts.csv", "size": CSV.len(), "eTag": "e", "sequencer": "01"}
            }
        }]})
        .to_string()
    }
}
