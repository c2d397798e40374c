//! CSVs of any size: `POST /api/uploads` reserves a request id and a presigned S3 PUT; the CSV
//! PUT there is accepted like a dropped CSV, under that id, with the reservation's webhook. The
//! tests' stack splits fan-outs into chunks of 20 images (tests/src/stack.rs), so the requests here
//! cross several chunks. They are the tenant `large`'s, so that their receipts
//! (`receipts/large/uploads/`) are apart from the dropped CSVs' of `pipeline.rs`.

use std::collections::HashMap;
use std::time::Duration;

use imgpipe_core::domain::webhook_signature::WebhookSecret;
use imgpipe_tests::api_client::{Answer, ApiClient};
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::{ImageServer, WebhookReceiver};
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::waits::wait_for;
use serde_json::Value;

use crate::STACK_USE;

/// The largest CSV accepted through the bucket (MAX_BUCKET_CSV_BYTES's default).
const MAX_BUCKET_CSV_BYTES: u64 = 100 * 1024 * 1024;

const TENANT: &str = "large";

/// A reservation, checked for the documented answer's fields.
async fn reserve(api: &ApiClient, body: &str) -> (String, String, Value) {
    let answer = api.reserve_upload(body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let id = answer.body["request_id"].as_str().expect("a request id").to_string();
    let url = answer.body["upload_url"].as_str().expect("an upload URL").to_string();
    assert!(answer.body["status_url"].as_str().unwrap().ends_with(&format!("/api/status/{id}/")), "{}", answer.body);
    assert_eq!(answer.body["max_bytes"].as_u64(), Some(MAX_BUCKET_CSV_BYTES));
    let expires_at = answer.body["expires_at"].as_str().expect("an expiry");
    let expires_at = chrono::DateTime::parse_from_rfc3339(expires_at).expect("RFC 3339");
    assert!(expires_at > chrono::Utc::now() + chrono::Duration::minutes(50), "an hour to PUT the file: {expires_at}");
    (id, url, answer.body)
}

async fn receipt(stack: &LocalStack, id: &str) -> Value {
    let s3 = stack.s3_client().await;
    let key = format!("receipts/{TENANT}/uploads/{id}.json");
    let object = wait_for(&format!("{key} in the bucket"), Duration::from_secs(60), || async {
        s3.get_object().bucket(&stack.bucket_name).key(&key).send().await.ok()
    })
    .await;
    serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap()
}

/// Waits until the status of a reserved upload stops answering `not_ready`; that answer.
async fn accepted(api: &ApiClient, id: &str) -> Answer {
    wait_for("the CSV to be accepted or refused", Duration::from_secs(60), || async {
        let answer = api.status(id).await;
        (answer.status != 404).then_some(answer)
    })
    .await
}

fn assert_not_ready(answer: &Answer) {
    assert_eq!((answer.status, answer.body["error"].as_str()), (404, Some("not_ready")), "{}", answer.body);
    assert!(answer.body["message"].as_str().unwrap().contains("upload_url"), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_put_to_a_reserved_upload_becomes_the_promised_request_in_chunks_with_its_webhook() {
    let stack = LocalStack::shared();
    let api = ApiClient::for_tenant(stack, TENANT);
    let _in_flight = STACK_USE.read().await;
    let files = HashMap::from([("a.jpg".to_string(), (photo_jpeg(320, 240, 11), "image/jpeg"))]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let hooks = WebhookReceiver::start().await;

    let body = serde_json::json!({"webhook_url": hooks.url("large")}).to_string();
    let (id, upload_url, reserved) = reserve(&api, &body).await;
    let secret = WebhookSecret::parse(reserved["webhook_secret"].as_str().expect("the webhook's secret")).unwrap();
    assert_not_ready(&api.status(&id).await);
    let stranger = ApiClient::for_tenant(stack, "large-stranger").status(&id).await;
    assert_eq!((stranger.status, stranger.body["error"].as_str()), (404, Some("not_found")), "{}", stranger.body);

    // 15 rows of 3 images: 45 images, three chunks of at most 20.
    let url = server.url("img/a.jpg");
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for row in 1..=15 {
        csv.push_str(&format!("{row},Product {row},\"{url}?{row}a, {url}?{row}b, {url}?{row}c\"\n"));
    }
    assert_eq!(api.put_to(&upload_url, csv.as_bytes()).await, 200);

    accepted(&api, &id).await;
    let (status, _) = api.wait_until_final(&id, Duration::from_secs(120)).await;
    assert_eq!((status["status"].as_str(), status["succeeded"].as_u64()), (Some("completed"), Some(45)), "{status}");
    // A function's log lines can reach the emulator's log after the request is final (the third
    // chunk's line once came after the notifier's `finished`), so they are waited for.
    stack.wait_for_logged(&id, "fan_out_chunk", 3).await;
    assert_eq!(stack.logged(&id, "fan_out_chunk"), 3, "three chunks, each queueing its own images");
    let accepted = receipt(stack, &id).await;
    assert_eq!((accepted["status"].as_str(), accepted["request_id"].as_str()), (Some("accepted"), Some(id.as_str())));
    assert_eq!(accepted["images"], 45);

    let output = api.download(status["output_csv_url"].as_str().unwrap()).await;
    let mut rows = csv::Reader::from_reader(output.as_slice());
    let serials: Vec<String> = rows.records().map(|row| row.unwrap()[0].to_string()).collect();
    assert_eq!(serials, (1..=15).map(|row| row.to_string()).collect::<Vec<_>>(), "every row, in order");

    let delivery = wait_for("the webhook", Duration::from_secs(60), || async { hooks.deliveries("large").pop() }).await;
    let header = |name: &str| delivery.headers[name].to_str().unwrap().to_string();
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert_eq!(header("webhook-signature"), secret.sign(&header("webhook-id"), timestamp, &delivery.body));
    let hook: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(hook["request_id"].as_str(), Some(id.as_str()), "{hook}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_upload_whose_csv_breaks_the_rules_answers_its_problems_in_the_status() {
    let stack = LocalStack::shared();
    let api = ApiClient::for_tenant(stack, TENANT);
    let _in_flight = STACK_USE.read().await;
    let (id, upload_url, reserved) = reserve(&api, "").await;
    assert_eq!(reserved["webhook_secret"], Value::Null, "no webhook, no secret");

    let bad = "S. No.,Product Name,Input Image Urls\n1,Lamp,ftp://example.com/a.jpg\n";
    assert_eq!(api.put_to(&upload_url, bad.as_bytes()).await, 200);
    let refused = accepted(&api, &id).await;
    // What the inline upload of the same CSV answers, and the receipt's problems.
    let inline = api.upload(bad.as_bytes(), None).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (422, Some("invalid_csv")), "{}", refused.body);
    assert_eq!(refused.body["problems"], inline.body["problems"], "{}", refused.body);
    assert_eq!(refused.body["problems"][0]["line"], 2);
    let receipt = receipt(stack, &id).await;
    assert_eq!(receipt["status"], "rejected");
    assert_eq!(receipt["problems"], refused.body["problems"]);
}

#[tokio::test]
async fn a_reservation_refuses_a_body_that_is_not_json_and_a_bad_webhook_url() {
    let api = ApiClient::for_tenant(LocalStack::shared(), TENANT);
    let answer = api.reserve_upload("webhook_url=https://hooks.example/x").await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (400, Some("bad_request_body")), "{}", answer.body);
    let answer = api.reserve_upload(r#"{"webhook_url": "ftp://hooks.example/x"}"#).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (422, Some("invalid_webhook_url")), "{}", answer.body);
    let answer = api.reserve_upload("{}").await;
    assert_eq!(answer.status, 201, "{}", answer.body);
}
