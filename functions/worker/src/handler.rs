use std::time::{Duration, SystemTime};

use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::{StreamExt, stream};
use imgpipe_core::accept::AcceptPorts;
use imgpipe_core::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::config::WorkerConfig;
use imgpipe_core::dropped_csv::{DroppedCsv, accept_dropped_csv, is_dropped_csv};
use imgpipe_core::errors::{RETRIES_EXHAUSTED, retry_delay};
use imgpipe_core::fan_out::{FanOutError, FanOutPorts, fan_out};
use imgpipe_core::fetch::HttpFetcher;
use imgpipe_core::ports::ImageResults;
use imgpipe_core::ports::RequestTable;
use imgpipe_core::process_image::{CodecPool, JobResult, ProcessPorts, process_image};
use imgpipe_core::request::{ImageJob, ImageOutcome, QueueMessage, RequestStatus};
use imgpipe_core::request_id::RequestId;
use lambda_runtime::LambdaEvent;

pub struct Worker {
    pub fetcher: HttpFetcher,
    pub blobs: S3Blobs,
    pub table: DynamoTable,
    pub queue: SqsQueue,
    pub codec: CodecPool,
    pub config: WorkerConfig,
}

/// The message id to hand back to the queue, when the job must be delivered again.
type Retry = Option<String>;

impl Worker {
    /// Never fails as a whole: each message is acknowledged or handed back on its own.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let deadline = event.context.deadline();
        let retries: Vec<String> = stream::iter(event.payload.records)
            .map(|message| self.handle_message(message, deadline))
            .buffer_unordered(self.config.concurrency.max(1))
            .filter_map(|retry| async move { retry })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = retries
            .into_iter()
            .map(|message_id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                failure
            })
            .collect();
        Ok(response)
    }

    async fn handle_message(&self, message: SqsMessage, deadline: SystemTime) -> Retry {
        let message_id = message.message_id.clone().unwrap_or_default();
        let body = message.body.as_deref().unwrap_or("");
        let job: ImageJob = match serde_json::from_str(body) {
            Ok(QueueMessage::Image(job)) => job,
            Ok(QueueMessage::FanOut { fan_out: request_id }) => return self.fan_out(request_id, &message).await,
            Err(_) if let Some(dropped) = s3_notification(body) => return self.accept_dropped(dropped, &message).await,
            Err(error) => {
                // Only our API writes this queue; a body we cannot read will never become
                // readable, and names no image we could record a failure for.
                tracing::error!(stage = "decode_message", message_id, error = %error);
                return None;
            }
        };
        if self.is_dead_letter(&message) {
            return self.record_dead_letter(&job, &message_id).await;
        }
        let time_left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        if time_left < self.config.job_time_reserve() {
            // Too late to finish it before the Lambda is stopped: hand it back unstarted.
            self.redeliver(&message, &job, Duration::ZERO).await;
            return Some(message_id);
        }

        let receives: u32 = message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
        let last_attempt = receives >= self.config.max_receives;
        let ports = ProcessPorts { fetcher: &self.fetcher, blobs: &self.blobs, results: &self.table };
        match process_image(ports, &job, &self.codec, last_attempt).await {
            JobResult::Recorded(_) | JobResult::Duplicate => None,
            JobResult::Retry(error) => {
                let delay = retry_delay(receives, self.config.retry_base, self.config.retry_cap);
                tracing::warn!(
                    request_id = %job.request_id,
                    image_index = job.image_index,
                    stage = "retry",
                    receives,
                    retry_in_s = delay.as_secs(),
                    error_code = error.code(),
                    error = %error,
                );
                self.redeliver(&message, &job, delay).await;
                Some(message_id)
            }
        }
    }

    fn is_dead_letter(&self, message: &SqsMessage) -> bool {
        message.event_source_arn.is_some() && message.event_source_arn == self.config.dead_letters_arn
    }

    /// Queues the image jobs of an accepted request. From the dead-letter queue, the fan-out
    /// failed every time: the request is failed rather than left waiting.
    async fn fan_out(&self, request_id: RequestId, message: &SqsMessage) -> Retry {
        let message_id = message.message_id.clone().unwrap_or_default();
        let started = std::time::Instant::now();
        if self.is_dead_letter(message) {
            let failed = self.table.finish(request_id, RequestStatus::Failed, None, Utc::now()).await;
            tracing::error!(request_id = %request_id, stage = "fan_out", "gave up: the fan-out failed on every attempt");
            return failed.err().filter(|e| e.is_transient()).map(|_| message_id);
        }
        let ports = FanOutPorts { table: &self.table, blobs: &self.blobs, queue: &self.queue };
        match fan_out(ports, request_id).await {
            Ok(transition) => {
                let duration_ms = started.elapsed().as_millis() as u64;
                tracing::info!(request_id = %request_id, stage = "fan_out", duration_ms, ?transition);
                None
            }
            Err(FanOutError::Store(error)) if error.is_transient() => {
                tracing::warn!(request_id = %request_id, stage = "fan_out", error = %error);
                Some(message_id)
            }
            Err(error) => {
                tracing::error!(request_id = %request_id, stage = "fan_out", error = %error);
                None
            }
        }
    }

    /// CSVs dropped into the bucket under `incoming/`: S3's notification of them comes through
    /// the jobs queue. Handed back on a store outage; the receipt says the rest.
    async fn accept_dropped(&self, dropped: Vec<DroppedCsv>, message: &SqsMessage) -> Retry {
        let message_id = message.message_id.clone().unwrap_or_default();
        let ports = AcceptPorts { blobs: &self.blobs, table: &self.table, queue: &self.queue };
        let mut retry = None;
        for csv in &dropped {
            match accept_dropped_csv(ports, csv, &self.config.csv_limits).await {
                Ok(outcome) => tracing::info!(stage = "dropped_csv", key = csv.key, ?outcome),
                Err(error) => {
                    tracing::warn!(stage = "dropped_csv", key = csv.key, error = %error);
                    retry = Some(message_id.clone());
                }
            }
        }
        retry
    }

    /// Best effort: if the delay cannot be set, the queue's visibility timeout applies.
    async fn redeliver(&self, message: &SqsMessage, job: &ImageJob, delay: Duration) {
        let Some(receipt) = &message.receipt_handle else { return };
        if let Err(error) = self.queue.redeliver_after(receipt, delay).await {
            tracing::warn!(request_id = %job.request_id, image_index = job.image_index, stage = "redeliver", error = %error);
        }
    }

    /// A job in the dead-letter queue was delivered `maxReceiveCount` times without a result
    /// (the worker crashed or timed out on each): its image fails, so its request can end.
    async fn record_dead_letter(&self, job: &ImageJob, message_id: &str) -> Retry {
        let outcome = ImageOutcome::Failed {
            error_code: RETRIES_EXHAUSTED.into(),
            error_message: "the image could not be processed in any of its attempts".into(),
        };
        match self.table.record(job, &outcome, Utc::now()).await {
            Ok(transition) => {
                tracing::info!(request_id = %job.request_id, image_index = job.image_index, stage = "dead_letter", ?transition);
                None
            }
            Err(error) if error.is_transient() => Some(message_id.to_string()),
            Err(error) => {
                tracing::error!(request_id = %job.request_id, image_index = job.image_index, stage = "dead_letter", error = %error);
                None
            }
        }
    }
}

/// The CSVs an S3 event notification names under `incoming/`; `None` when the body is not an
/// S3 notification. S3's test message (sent when the notification is configured) names none.
fn s3_notification(body: &str) -> Option<Vec<DroppedCsv>> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Some(Vec::new());
    }
    let event: S3Event = serde_json::from_value(value).ok()?;
    let dropped = event
        .records
        .into_iter()
        .filter(|record| record.event_name.as_deref().is_some_and(|name| name.starts_with("ObjectCreated:")))
        .filter_map(|record| {
            // Keys arrive URL-encoded, spaces as '+'.
            let key = url::form_urlencoded::parse(record.s3.object.key?.as_bytes()).next()?.0.into_owned();
            let csv = DroppedCsv {
                bucket: record.s3.bucket.name?,
                size: record.s3.object.size.unwrap_or(0) as u64,
                version: record.s3.object.sequencer.or(record.s3.object.e_tag).unwrap_or_default(),
                key,
            };
            is_dropped_csv(&csv.key).then_some(csv)
        })
        .collect();
    Some(dropped)
}
