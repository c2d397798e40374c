//! Translates an SQS batch into a call of `handle_queue_batch` and its verdicts into the
//! partial batch response.

use std::time::{Duration, SystemTime};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::adapters::http_fetch::HttpFetcher;
use imgpipe_core::config::WorkerConfig;
use imgpipe_core::use_cases::accept_upload::UploadRules;
use imgpipe_core::use_cases::handle_queue_message::{Delivery, Verdict, WorkerPorts, WorkerRules, handle_queue_batch};
use imgpipe_core::use_cases::process_image::CodecPool;
use lambda_runtime::LambdaEvent;
use tokio::sync::Semaphore;

pub struct Worker {
    pub fetcher: HttpFetcher,
    pub blobs: S3Blobs,
    pub table: DynamoTable,
    pub queue: SqsQueue,
    pub codec: CodecPool,
    /// One fan-out or chunk at a time (`WorkerRules::fan_out_slot`).
    pub fan_out_slot: Semaphore,
    pub config: WorkerConfig,
}

impl Worker {
    /// Never fails as a whole: each message is acknowledged or handed back on its own.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let time_left = event.context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
        let messages = event.payload.records;
        let deliveries = messages.iter().map(|message| self.delivery(message, time_left)).collect();
        let ports = WorkerPorts::with_table(&self.fetcher, &self.blobs, &self.queue, &self.table);
        let rules = WorkerRules {
            retry: &self.config.retry,
            reserves: self.config.time_reserves,
            upload: UploadRules { limits: &self.config.csv_limits, quota: self.config.quota },
            chunk_images: self.config.chunk_images,
            fan_out_slot: &self.fan_out_slot,
        };
        let verdicts = handle_queue_batch(ports, &rules, &self.codec, deliveries, self.config.concurrency).await;
        let mut response = SqsBatchResponse::default();
        for (message, verdict) in messages.iter().zip(verdicts) {
            let Verdict::HandBack { delay } = verdict else {
                continue;
            };
            // Best effort: if the delay cannot be set, the queue's visibility timeout applies.
            if let (Some(delay), Some(receipt)) = (delay, &message.receipt_handle)
                && let Err(error) = self.queue.redeliver_after(receipt, delay).await
            {
                tracing::warn!(message_id = message.message_id, stage = "redeliver", error = %error);
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
        Ok(response)
    }

    fn delivery<'a>(&self, message: &'a SqsMessage, time_left: Duration) -> Delivery<'a> {
        Delivery {
            body: message.body.as_deref().unwrap_or(""),
            receives: message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1),
            from_dead_letters: message.event_source_arn.is_some()
                && message.event_source_arn == self.config.dead_letters_arn,
            time_left,
        }
    }
}
