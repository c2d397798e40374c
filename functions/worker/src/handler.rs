use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{StreamExt, stream};
use imgpipe_core::aws::{DynamoTable, S3Blobs};
use imgpipe_core::config::WorkerConfig;
use imgpipe_core::fetch::HttpFetcher;
use imgpipe_core::process_image::{JobResult, ProcessPorts, process_image};
use imgpipe_core::request::ImageJob;

pub struct Worker {
    pub fetcher: HttpFetcher,
    pub blobs: S3Blobs,
    pub table: DynamoTable,
    pub config: WorkerConfig,
}

impl Worker {
    /// Never fails as a whole: each message is acknowledged or handed back on its own.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let retries: Vec<String> = stream::iter(event.records)
            .map(|message| self.handle_message(message))
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

    /// The message id to hand back to the queue, if the job should be delivered again.
    async fn handle_message(&self, message: SqsMessage) -> Option<String> {
        let message_id = message.message_id.unwrap_or_default();
        let job: ImageJob = match serde_json::from_str(message.body.as_deref().unwrap_or("")) {
            Ok(job) => job,
            Err(error) => {
                // Only our API writes this queue; a body we cannot read will never become
                // readable, so retrying it would only delay its trip to the DLQ.
                tracing::error!(stage = "decode_message", message_id, error = %error);
                return None;
            }
        };
        let receives: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let last_attempt = receives >= self.config.max_receives;
        let ports = ProcessPorts {
            fetcher: &self.fetcher,
            blobs: &self.blobs,
            results: &self.table,
        };
        match process_image(ports, &job, &self.config.codec, last_attempt).await {
            JobResult::Recorded(_) | JobResult::Duplicate => None,
            JobResult::Retry(error) => {
                tracing::warn!(
                    request_id = %job.request_id,
                    image_index = job.image_index,
                    stage = "retry",
                    receives,
                    error_code = error.code(),
                    error = %error,
                );
                Some(message_id)
            }
        }
    }
}
