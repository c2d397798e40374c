//! Translates the notifier's two events into use cases: a stream batch of the table's changes
//! (finish each request whose last image just got its result) and the schedule's sweep.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::Utc;
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::adapters::http_webhook::HttpWebhookSender;
use imgpipe_core::config::NotifierConfig;
use imgpipe_core::domain::request::finishes_request;
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::use_cases::finish_request::{FinishPorts, Finished, finish_request};
use imgpipe_core::use_cases::sweep::{SweepPorts, run_sweep};
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::Value;

pub struct Notifier {
    pub table: DynamoTable,
    pub blobs: S3Blobs,
    /// The jobs queue, read for its backlog only.
    pub queue: SqsQueue,
    pub webhooks: HttpWebhookSender,
    pub config: NotifierConfig,
}

/// What the schedule sends (template.yaml): sweep requests idle for `idle_seconds`.
#[derive(Deserialize)]
struct SweepEvent {
    sweep: SweepSettings,
}

#[derive(Deserialize)]
struct SweepSettings {
    idle_seconds: u64,
}

/// The parts of a request item's stream image the notifier reads.
#[derive(Deserialize)]
struct Counters {
    request_id: RequestId,
    remaining: Option<u64>,
}

/// The request a stream record finishes, if it is the write that took `remaining` to 0.
fn finished_request(record: &EventRecord) -> Option<RequestId> {
    let new: Counters = serde_dynamo::from_item(record.change.new_image.clone()).ok()?;
    let old_remaining = serde_dynamo::from_item::<_, Counters>(record.change.old_image.clone()).ok()?.remaining;
    finishes_request(old_remaining, new.remaining).then_some(new.request_id)
}

impl Notifier {
    fn finish_ports(&self) -> FinishPorts<'_> {
        FinishPorts::with_table(&self.table, &self.blobs, &self.webhooks)
    }

    /// Two event sources: the table's stream, and the schedule that runs the sweeper.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
        let (event, context) = event.into_parts();
        if let Ok(sweep) = serde_json::from_value::<SweepEvent>(event.clone()) {
            let ports = SweepPorts {
                idle: &self.table,
                recorder: &self.table,
                backlog: &self.queue,
                finish: self.finish_ports(),
            };
            let idle = Duration::from_secs(sweep.sweep.idle_seconds);
            // The sweep stops starting work `sweep_reserve` before the Lambda is stopped.
            let time_left = context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
            let deadline = Instant::now() + time_left.saturating_sub(self.config.sweep_reserve);
            let report = run_sweep(ports, idle, &self.config.links, Utc::now(), deadline).await;
            tracing::info!(stage = "sweep", report = %serde_json::to_string(&report)?);
            return Ok(serde_json::to_value(report)?);
        }
        let records: Event = serde_json::from_value(event)?;
        Ok(serde_json::to_value(self.handle_records(records).await)?)
    }

    /// Records in order. On a transient failure, that record's sequence number goes back to
    /// the stream and nothing after it is handled; Lambda resumes from it. Finishing is
    /// idempotent, so records replayed after it change nothing.
    async fn handle_records(&self, event: Event) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            let Some(request_id) = finished_request(record) else { continue };
            match finish_request(self.finish_ports(), request_id, &self.config.links).await {
                Ok(Finished::Now(status)) => {
                    tracing::info!(request_id = %request_id, stage = "finished", status = status.as_str());
                }
                Ok(Finished::Already) => tracing::info!(request_id = %request_id, stage = "replay"),
                Err(error) if error.is_transient() => {
                    tracing::warn!(request_id = %request_id, stage = "finish", error = %error);
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = record.change.sequence_number.clone();
                    response.batch_item_failures.push(failure);
                    break;
                }
                // Retrying cannot help; the sweeper reports it again if the request stays open.
                Err(error) => tracing::error!(request_id = %request_id, stage = "finish", error = %error),
            }
        }
        response
    }
}
