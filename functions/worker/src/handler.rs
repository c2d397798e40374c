//! Translates an SQS batch into calls of `handle_queue_message`, one per message, and its
//! verdicts into the partial batch response.

use std::time::SystemTime;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{StreamExt, stream};
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::adapters::http_fetch::HttpFetcher;
use imgpipe_core::config::WorkerConfig;
use imgpipe_core::use_cases::accept_upload::UploadRules;
use imgpipe_core::use_cases::handle_queue_message::{
    Delivery, Verdict, WorkerPorts, WorkerRules, handle_queue_message,
};
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
        let deadline = event.context.deadline();
        let handed_back: Vec<String> = stream::iter(event.payload.records)
            .map(|message| self.handle_message(message, deadline))
            .buffer_unordered(self.config.concurrency.max(1))
            .filter_map(|handed_back| async move { handed_back })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = handed_back
            .into_iter()
            .map(|message_id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                failure
            })
            .collect();
        Ok(response)
    }

    /// The message id when the message goes back to the queue.
    async fn handle_message(&self, message: SqsMessage, deadline: SystemTime) -> Option<String> {
        let ports = WorkerPorts::with_table(&self.fetcher, &self.blobs, &self.queue, &self.table);
        let rules = WorkerRules {
            retry: &self.config.retry,
            reserves: self.config.time_reserves,
            upload: UploadRules { limits: &self.config.csv_limits, quota: self.config.quota },
            chunk_images: self.config.chunk_images,
            fan_out_slot: &self.fan_out_slot,
        };
        let delivery = Delivery {
            body: message.body.as_deref().unwrap_or(""),
            receives: message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1),
            from_dead_letters: message.event_source_arn.is_some()
                && message.event_source_arn == self.config.dead_letters_arn,
            time_left: deadline.duration_since(SystemTime::now()).unwrap_or_default(),
        };
        let Verdict::HandBack { delay } = handle_queue_message(ports, &rules, &self.codec, delivery).await else {
            return None;
        };
        // Best effort: if the delay cannot be set, the queue's visibility timeout applies.
        if let (Some(delay), Some(receipt)) = (delay, &message.receipt_handle)
            && let Err(error) = self.queue.redeliver_after(receipt, delay).await
        {
            tracing::warn!(message_id = message.message_id, stage = "redeliver", error = %error);
        }
        Some(message.message_id.unwrap_or_default())
    }
}
