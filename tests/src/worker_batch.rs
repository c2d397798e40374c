//! One SQS batch of image jobs handed straight to the worker, as the jobs queue's event source
//! mapping delivers one, for a request recorded as the API records it but without its fan-out:
//! the batch is then the only delivery of those jobs, and all of it reaches one worker process.
//! Used where "the same batch" is the point (tests/release_stack, the worst-batch benchmark).

use std::time::Duration;

use chrono::Utc;
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs};
use imgpipe_core::domain::request::RequestRecord;
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::ports::{BlobStore, CreateRequest};
use serde_json::{Value, json};

use crate::stack::LocalStack;

/// One row per URL, as a user would upload them.
pub fn csv_of(urls: &[String]) -> String {
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (i, url) in urls.iter().enumerate() {
        csv.push_str(&format!("{},Item {},{url}\n", i + 1, i + 1));
    }
    csv
}

/// Stores the CSV of `urls` and records a pending request for them, as an accepted upload
/// does, but queues nothing: the notifier finishes it once every image has its result.
pub async fn record_request(stack: &LocalStack, urls: &[String]) -> RequestId {
    let sdk = stack.sdk_config().await;
    let table = DynamoTable::new(&sdk, &stack.table_name, Duration::from_secs(3600));
    let blobs = S3Blobs::new(&sdk, &stack.bucket_name);
    let id = RequestId::new_random();
    let request = RequestRecord::new(id, urls.len() as u64, None, Utc::now());
    blobs.put(&request.input_csv_key, csv_of(urls).into_bytes(), "text/csv").await.expect("store the CSV");
    table.create(&request).await.expect("record the request");
    id
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
                "body": json!({"request_id": request_id, "image_index": index, "row": index, "url": url}).to_string(),
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
