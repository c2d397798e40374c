//! Requests recorded straight in the deployed table, as the API would record them, for tests
//! that need one whose jobs never reach the queue (lost, or dead-lettered).

use std::time::Duration;

use chrono::{DateTime, Utc};
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs};
use imgpipe_core::domain::http_url::HttpUrl;
use imgpipe_core::domain::quota::TenantQuota;
use imgpipe_core::domain::request::RequestRecord;
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::ports::{Admission, BlobStore, CreateRequest};

use crate::stack::{DEFAULT_TENANT, LocalStack};

/// A request of the test tenant for `csv` (`images` of them), accepted at `created_at`, stored
/// and recorded, with no fan-out queued.
pub async fn record_accepted_request(
    stack: &LocalStack,
    csv: &str,
    images: u64,
    webhook: Option<&str>,
    created_at: DateTime<Utc>,
) -> RequestId {
    let sdk = stack.sdk_config().await;
    let table = DynamoTable::new(&sdk, &stack.table_name, Duration::from_secs(3600));
    let blobs = S3Blobs::new(&sdk, &stack.bucket_name);
    let id = RequestId::new_random();
    let webhook = webhook.map(|url| HttpUrl::parse(url).expect("a webhook URL"));
    let request = RequestRecord::new(id, DEFAULT_TENANT.parse().unwrap(), images, webhook, created_at);
    blobs.put(&request.input_csv_key, csv.as_bytes().to_vec(), "text/csv").await.expect("store the CSV");
    let quota = TenantQuota { max_open_images: u64::MAX };
    assert_eq!(table.create(&request, &quota).await.expect("record the request"), Admission::Created);
    id
}

/// One row per URL, as a user would upload them.
pub fn csv_of(urls: &[String]) -> String {
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (i, url) in urls.iter().enumerate() {
        csv.push_str(&format!("{},Item {},{url}\n", i + 1, i + 1));
    }
    csv
}
