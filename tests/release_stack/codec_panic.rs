//! A decoder that panics on one image must cost that image only (issue 11, item 8). The
//! worker's test-only fault hook makes the codec panic on an image that ends with
//! `CODEC_PANIC_MARKER`, on the thread that decodes it, as a decoder bug would. Under
//! `panic = "abort"` that kills the worker process and with it the whole SQS batch, on every
//! delivery; under `panic = "unwind"` it is that image's `decode_error`.

use std::time::Duration;

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::requests::csv_of;
use imgpipe_tests::servers::{Files, ImageServer};
use imgpipe_tests::stack::{CODEC_PANIC_MARKER, Functions, LocalStack};
use imgpipe_tests::worker_batch::{image_jobs_event, record_request};
use serde_json::{Value, json};

/// Images in the batch, and the one whose decoder panics.
const IMAGES: usize = 6;
const MARKED: usize = 2;

/// Five photos and, at `MARKED`, a photo that ends with the marker: fine for every decoder,
/// but the codec panics on it.
fn batch_images() -> (Files, Vec<String>) {
    let mut files = Files::new();
    let mut names = Vec::new();
    for n in 0..IMAGES as u32 {
        let mut bytes = photo_jpeg(320 + 8 * n, 240 + 8 * n, n);
        let name = if n as usize == MARKED {
            bytes.extend(CODEC_PANIC_MARKER.as_bytes());
            format!("marked{n}.jpg")
        } else {
            format!("p{n}.jpg")
        };
        files.insert(name.clone(), (bytes, "image/jpeg"));
        names.push(name);
    }
    (files, names)
}

/// Only the marked image failed, with the decoder's crash; every other one is done.
fn assert_only_the_marked_image_failed(status: &Value) {
    assert_eq!(status["status"], "completed_with_errors", "{status}");
    let counts = ["total", "succeeded", "failed", "pending"].map(|field| status[field].as_u64().unwrap());
    assert_eq!(counts, [IMAGES as u64, IMAGES as u64 - 1, 1, 0], "{status}");
    let failure = &status["failures"][0];
    assert_eq!(failure["image_index"], MARKED, "{status}");
    assert_eq!(failure["error_code"], "decode_error", "{status}");
    let message = failure["error_message"].as_str().unwrap();
    assert!(message.contains("crashed") && message.contains("test fault"), "{message}");
}

/// The worker invoked with one SQS batch of six image jobs, as the event source mapping would:
/// the answer hands nothing back, and only the marked image failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_panic_fails_its_image_and_the_rest_of_its_batch_succeeds() {
    let stack = LocalStack::shared_with(Functions::Release);
    let api = ApiClient::new(stack);
    let (files, names) = batch_images();
    let server = ImageServer::start(files, Duration::ZERO).await;
    let urls: Vec<String> = names.iter().map(|name| server.url(&format!("img/{name}"))).collect();

    // Recorded without its fan-out: the batch below is the only delivery of its jobs.
    let id = record_request(stack, &urls).await;
    let batch = image_jobs_event(stack, id, &urls);
    let answer = stack.invoke(&stack.worker_function_name, &batch).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "the worker answered for the whole batch");

    let (status, _) = api.wait_until_final(&id.to_string(), Duration::from_secs(60)).await;
    assert_only_the_marked_image_failed(&status);
    assert_eq!(server.requests(), IMAGES, "each image fetched once");
}

/// The same through the API and the jobs queue: the request ends with only the marked image
/// failed, and no batch came back for another delivery (each image was fetched once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_queue_a_decoder_panic_fails_only_its_image() {
    let stack = LocalStack::shared_with(Functions::Release);
    let api = ApiClient::new(stack);
    let (files, names) = batch_images();
    let server = ImageServer::start(files, Duration::ZERO).await;
    let urls: Vec<String> = names.iter().map(|name| server.url(&format!("img/{name}"))).collect();
    let accepted = api.upload(csv_of(&urls).as_bytes(), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().unwrap().to_string();

    // A crashed batch would come back only after the queue's visibility timeout (25 s locally),
    // and its images would be fetched again.
    let (status, _) = api.wait_until_final(&id, Duration::from_secs(60)).await;
    assert_only_the_marked_image_failed(&status);
    assert_eq!(server.requests(), IMAGES, "each image fetched once: no batch was delivered again");
}
