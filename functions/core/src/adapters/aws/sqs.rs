use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use futures::{StreamExt, TryStreamExt, stream};

use super::store_error;
use crate::domain::errors::StoreError;
use crate::domain::fan_out_chunks::FanOutChunk;
use crate::domain::fetch_jobs::FetchJob;
use crate::domain::request::QueueMessage;
use crate::domain::request_id::RequestId;
use crate::ports::{JobQueue, QueueBacklog};

/// SQS takes at most 10 messages per batch call.
const BATCH: usize = 10;
/// Batch calls in flight at once while fanning out a large request.
const PARALLEL_CALLS: usize = 16;
/// Entries SQS reports as failed inside a successful batch call are sent again this often.
const ENTRY_ATTEMPTS: usize = 3;

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(config: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self { client: aws_sdk_sqs::Client::new(config), queue_url: queue_url.into() }
    }

    /// Makes a received message visible again after `delay` (at most 12 hours, SQS's limit),
    /// instead of after the queue's visibility timeout.
    pub async fn redeliver_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.as_secs().min(12 * 3600) as i32)
            .send()
            .await
            .map_err(|e| store_error("SQS", e))?;
        Ok(())
    }

    async fn send_batch<M: serde::Serialize>(&self, messages: &[M]) -> Result<(), StoreError> {
        let mut entries = messages
            .iter()
            .enumerate()
            .map(|(i, message)| {
                let body = serde_json::to_string(message)
                    .map_err(|e| StoreError::Refused { service: "SQS", detail: format!("encoding a job: {e}") })?;
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| StoreError::Refused { service: "SQS", detail: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for attempt in 1..=ENTRY_ATTEMPTS {
            if attempt > 1 {
                // SQS refuses entries when it throttles: sending them again at once would be
                // refused the same way.
                tokio::time::sleep(entry_retry_delay(attempt)).await;
            }
            let response = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| store_error("SQS", e))?;
            let failed: Vec<&str> = response.failed().iter().map(|entry| entry.id()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            entries.retain(|entry| failed.contains(&entry.id()));
        }
        Err(StoreError::Unavailable { service: "SQS", detail: format!("{} messages not accepted", entries.len()) })
    }
}

/// The wait before attempt `attempt` (2 or more) of the entries SQS did not accept: 100-200 ms,
/// then 200-400 ms, random so that parallel batch calls spread out.
fn entry_retry_delay(attempt: usize) -> Duration {
    let base = Duration::from_millis(100) * (1 << (attempt.clamp(2, 8) - 2));
    let jitter = f64::from(getrandom::u32().unwrap_or(0) % 1000) / 1000.0;
    base + base.mul_f64(jitter)
}

#[async_trait]
impl QueueBacklog for SqsQueue {
    async fn waiting_messages(&self) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| store_error("SQS", e))?;
        let waiting =
            output.attributes().and_then(|attributes| attributes.get(&QueueAttributeName::ApproximateNumberOfMessages));
        Ok(waiting.and_then(|count| count.parse().ok()).unwrap_or(0))
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[FetchJob]) -> Result<(), StoreError> {
        let messages: Vec<QueueMessage> = jobs.iter().map(|job| QueueMessage::Fetch { fetch: job.clone() }).collect();
        // Futures built up front: a closure here trips the compiler's lifetime inference
        // inside async-trait methods.
        let sends: Vec<_> = messages.chunks(BATCH).map(|batch| self.send_batch(batch)).collect();
        stream::iter(sends).buffer_unordered(PARALLEL_CALLS).try_collect::<()>().await
    }

    async fn enqueue_fan_out(&self, id: RequestId) -> Result<(), StoreError> {
        let body = serde_json::to_string(&QueueMessage::FanOut { fan_out: id })
            .map_err(|e| StoreError::Refused { service: "SQS", detail: e.to_string() })?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| store_error("SQS", e))?;
        Ok(())
    }

    async fn enqueue_chunks(&self, chunks: &[FanOutChunk]) -> Result<(), StoreError> {
        let messages: Vec<QueueMessage> =
            chunks.iter().map(|&fan_out_chunk| QueueMessage::FanOutChunk { fan_out_chunk }).collect();
        let sends: Vec<_> = messages.chunks(BATCH).map(|batch| self.send_batch(batch)).collect();
        stream::iter(sends).buffer_unordered(PARALLEL_CALLS).try_collect::<()>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sqs_refused_are_sent_again_after_a_growing_wait() {
        for attempt in 2..=ENTRY_ATTEMPTS {
            let wait = entry_retry_delay(attempt);
            let base = Duration::from_millis(100) * (1 << (attempt - 2));
            assert!(wait >= base && wait <= base * 2, "attempt {attempt}: {wait:?}");
        }
    }
}
