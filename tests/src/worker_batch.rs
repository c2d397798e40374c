//! One SQS batch of image jobs handed straight to the worker, as the jobs queue's event source
//! mapping delivers one, for a request recorded as the API records it but without its fan-out:
//! the batch is then the only delivery of those jobs, and all of it reaches one worker process.
//! Used where "the same batch" is the point (tests/release_stack, the worst-batch benchmark).

use chrono::Utc;
use imgpipe_core::domain::request_id::RequestId;
use serde_json::{Value, json};

use crate::requests::{csv_of, record_accepted_request};
use crate::stack::{DEFAULT_TENANT, LocalStack};

/// Records a pending request for `urls` (one row each), as an accepted upload does, but queues
/// nothing: the notifier finishes it once every image has its result.
pub async fn record_request(stack: &LocalStack, urls: &[String]) -> RequestId {
    record_accepted_request(stack, &csv_of(urls), urls.len() as u64, None, Utc::now()).await
}

/// The SQS event of one batch holding the image job of each URL, first deliveries from the jobs
/// queue.
pub fn image_jobs_event(stack: &LocalStack, request_id: RequestId, urls: &[String]) -> Value {
    let queue_name = stack.jobs_queue_url.rsplit('/').next().expect("a queue URL");
    let records: Vec<Value> = urls
        .iter()
        .enumerate()
        .map(|(index, url)| {
            json!({
                "messageId": format!("{request_id}-{index}"),
                "receiptHandle": format!("receipt-{request_id}-{index}"),
                "body": json!({
                    "request_id": request_id, "tenant_id": DEFAULT_TENANT, "image_index": index, "row": index, "url": url
                })
                .to_string(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1790000000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{queue_name}"),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}
