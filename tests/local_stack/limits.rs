//! The limits that keep every DynamoDB item writable (docs/api.md, "Limits"): URLs and webhook URLs
//! of at most MAX_URL_LENGTH characters, refused at upload beyond it, and failure messages
//! stored shortened, so that an image result at the limits is recorded and read back.

use chrono::Utc;
use imgpipe_core::domain::http_url::HttpUrl;
use imgpipe_core::domain::quota::TenantQuota;
use imgpipe_core::domain::request::{ImageJob, ImageOutcome, ImageState, Progress, RequestRecord};
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::domain::tenant::TenantId;
use imgpipe_core::ports::{CreateRequest, ReadRequest, ReadResults, RecordResult};
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::tables::fresh_table;

/// The default MAX_URL_LENGTH, which the local stack keeps.
const URL_LIMIT: usize = 2048;

/// An absolute URL of exactly `length` characters.
fn url_of_length(base: &str, length: usize) -> String {
    format!("{base}{}", "u".repeat(length - base.len()))
}

#[tokio::test]
async fn an_image_result_at_the_limits_is_recorded_and_read_back() {
    let table = fresh_table().await;
    let id = RequestId::new_random();
    let webhook = HttpUrl::parse(&url_of_length("https://hooks.example/", URL_LIMIT)).unwrap();
    let tenant: TenantId = "limits".parse().unwrap();
    let request = RequestRecord::new(id, tenant.clone(), 2, Some(webhook.clone()), Utc::now());
    table.create(&request, &TenantQuota { max_open_images: u64::MAX }).await.unwrap();
    assert_eq!(table.get(id).await.unwrap().unwrap().webhook_url, Some(webhook));

    let url = HttpUrl::parse(&url_of_length("https://img.example/", URL_LIMIT)).unwrap();
    let job = ImageJob { request_id: id, tenant_id: tenant, image_index: 1, row: 0, url: url.clone() };
    // A transfer error that quotes half a megabyte: over DynamoDB's 400 KB item limit as it is.
    let message = format!("the download failed: {}", "x".repeat(500 * 1024));
    let failed = ImageOutcome::Failed { error_code: "download_error".into(), error_message: message.clone() };
    table.record(&job, &failed, Utc::now(), Progress::Made).await.expect("the result is recorded");

    let images = table.recorded_images(id).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!((images[0].state, &images[0].input_url), (ImageState::Failed, &url));
    let stored = images[0].error_message.as_deref().unwrap();
    assert!(stored.len() <= 1024 && stored.ends_with('…'), "{} bytes stored", stored.len());
    assert!(message.starts_with(stored.trim_end_matches('…')));
    let listed = table.failed_images(id, 10).await.unwrap();
    assert_eq!(listed.iter().map(|image| image.image_index).collect::<Vec<_>>(), [1]);
    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!((request.failed, request.remaining), (1, 1));
}

#[tokio::test]
async fn urls_and_webhook_urls_over_the_length_limit_are_refused_at_upload() {
    let api = ApiClient::new(LocalStack::shared());
    let long = url_of_length("https://img.example/", URL_LIMIT + 1);
    let csv = format!(
        "S. No.,Product Name,Input Image Urls\n\
         1,Shirt,https://img.example/a.jpg\n\
         2,Shoe,\"https://img.example/b.jpg,{long}\"\n"
    );
    let answer = api.upload(csv.as_bytes(), None).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (422, Some("invalid_csv")), "{}", answer.body);
    let problem = &answer.body["problems"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(3), Some(3)), "{problem}");
    let message = problem["message"].as_str().unwrap();
    assert!(message.starts_with("URL 2 of 2 (\"https://img.example/uuu"), "{message}");
    assert!(message.ends_with("the URL is 2049 characters long, more than the limit of 2048"), "{message}");

    let csv = "S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.jpg\n";
    let hook = url_of_length("https://hooks.example/", URL_LIMIT + 1);
    let answer = api.upload(csv.as_bytes(), Some(&hook)).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (422, Some("invalid_webhook_url")), "{}", answer.body);
    assert_eq!(
        answer.body["problems"][0]["message"],
        "webhook_url: the URL is 2049 characters long, more than the limit of 2048"
    );
}
