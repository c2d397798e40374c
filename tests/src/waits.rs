//! Waiting on a condition rather than for a while: each wait polls what it waits for, and after
//! a generous timeout panics saying what never happened. What the stack shows to wait on: the
//! functions' log lines and the jobs queue's message counts. And where a test would wait for a
//! time to pass, the time is written into the past instead.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::stack::LocalStack;

const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every 100 ms until it gives `Some`; panics after `timeout`, naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < timeout, "waited {timeout:?} for {what}");
        tokio::time::sleep(POLL).await;
    }
}

impl LocalStack {
    /// How many times the functions have logged `stage` for `request_id` so far, an image's lines
    /// (`image_index` between the two) included. The emulator writes their JSON lines to its
    /// emulator.log; they are matched as text, the two fields side by side, since now and then
    /// two processes' lines interleave. A line can reach the log after the request it is about
    /// is final: count after [`Self::wait_for_logged`] has seen the lines expected.
    pub fn logged(&self, request_id: &str, stage: &str) -> usize {
        let log = std::fs::read(self.state.join("emulator.log")).unwrap_or_default();
        lines_logged(&String::from_utf8_lossy(&log), request_id, stage)
    }

    /// Waits until the functions have logged `stage` for `request_id` at least `count` times.
    pub async fn wait_for_logged(&self, request_id: &str, stage: &str, count: usize) {
        let what = format!("{count} log line(s) with stage {stage} for request {request_id}");
        wait_for(&what, Duration::from_secs(60), || async { (self.logged(request_id, stage) >= count).then_some(()) })
            .await
    }

    /// Messages in a queue: visible, in flight (received, not deleted yet) and delayed.
    pub async fn messages_in(&self, queue_url: &str) -> u64 {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config().await);
        let counts = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let answer = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .set_attribute_names(Some(counts.to_vec()))
            .send()
            .await
            .expect("read the queue's message counts");
        let attributes = answer.attributes().expect("the queue's attributes");
        counts.iter().map(|count| attributes[count].parse::<u64>().expect("a message count")).sum()
    }

    /// Waits until a queue holds no message: everything sent to it was received and deleted.
    pub async fn wait_until_empty(&self, queue_url: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            let left = self.messages_in(queue_url).await;
            if left == 0 {
                return;
            }
            assert!(started.elapsed() < timeout, "{left} message(s) still in {queue_url} after {timeout:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Makes a request's owed webhook due now, as if its wait (for a redelivery, or for a sender
    /// that may still be sending) had passed. Returns false, changing nothing, if none is owed.
    pub async fn make_webhook_due(&self, request_id: &str) -> bool {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk_config().await);
        let update = dynamodb
            .update_item()
            .table_name(&self.table_name)
            .key("pk", AttributeValue::S(format!("REQ#{request_id}")))
            .key("sk", AttributeValue::S("REQUEST".into()))
            .update_expression("SET webhook_next_at = :past")
            .condition_expression("attribute_exists(webhook_next_at)")
            .expression_attribute_values(":past", AttributeValue::S("2000-01-01T00:00:00.000000Z".into()))
            .send()
            .await;
        match update {
            Ok(_) => true,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => false,
            Err(error) => panic!("making the webhook of {request_id} due: {error:?}"),
        }
    }
}

/// LocalStack::logged's count in the text of a log.
fn lines_logged(log: &str, request_id: &str, stage: &str) -> usize {
    let (request, stage) = (format!("\"request_id\":\"{request_id}\","), format!("\"stage\":\"{stage}\""));
    log.match_indices(&request)
        .filter(|(at, _)| {
            let after = &log[at + request.len()..];
            let after_image = after
                .strip_prefix("\"image_index\":")
                .and_then(|index| index.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix(','));
            after_image.unwrap_or(after).starts_with(&stage)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::lines_logged;

    #[test]
    fn a_stage_is_counted_on_request_and_image_lines_of_its_request_only() {
        let log = [
            r#"{"level":"INFO","request_id":"r1","stage":"fan_out_chunk","duration_ms":43}"#,
            r#"{"level":"INFO","request_id":"r1","image_index":17,"stage":"decode","duration_ms":0.3}"#,
            r#"{"level":"INFO","request_id":"r1","image_index":3,"stage":"decode","duration_ms":0.8}"#,
            r#"{"level":"INFO","request_id":"r1","stage":"result_dropped","image_index":4}"#,
            r#"{"level":"INFO","request_id":"r1","stage":"fan_out_chunk_requeued","first":20}"#,
            r#"{"level":"INFO","request_id":"r2","image_index":1,"stage":"decode","duration_ms":0.5}"#,
            // Two processes' lines run together: the request's id and another line's stage
            r#"{"level":"INFO","request_id":"r1","image_index":5,{"level":"INFO","stage":"decode"}"#,
        ]
        .join("\n");
        assert_eq!(lines_logged(&log, "r1", "fan_out_chunk"), 1, "not fan_out_chunk_requeued");
        assert_eq!(lines_logged(&log, "r1", "decode"), 2, "an image's lines, not r2's nor a run-together line");
        assert_eq!(lines_logged(&log, "r1", "result_dropped"), 1);
        assert_eq!(lines_logged(&log, "r2", "decode"), 1);
    }
}
