//! Request management through the API and the real functions: cancelling a running request
//! ends it `cancelled` with exact counts, announced once; retrying a finished one fetches only
//! its failed images again and writes a complete output CSV. Both within the tenant's own
//! requests and quota.

use std::time::Duration;

use imgpipe_core::domain::quota::DEFAULT_MAX_OPEN_IMAGES;
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::{ImageServer, WebhookReceiver};
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::tables::{open_images, set_open_images};
use imgpipe_tests::waits::wait_for;
use serde_json::Value;

use crate::STACK_USE;

/// MaxOpenImagesPerTenant on the local stack.
/// The stack's `MaxOpenImagesPerTenant`: the template's default.
const QUOTA: u64 = DEFAULT_MAX_OPEN_IMAGES;

async fn image_server() -> ImageServer {
    let files = (0..4).map(|i| (format!("{i}.jpg"), (photo_jpeg(320, 240, i), "image/jpeg"))).collect();
    ImageServer::start(files, Duration::ZERO).await
}

fn catalogue(urls: &[String]) -> String {
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (row, url) in urls.iter().enumerate() {
        csv.push_str(&format!("{},Item {},\"{url}\"\n", row + 1, row + 1));
    }
    csv
}

fn rows(csv: &[u8]) -> Vec<Vec<String>> {
    csv::Reader::from_reader(csv).records().map(|row| row.unwrap().iter().map(String::from).collect()).collect()
}

fn counts(status: &Value) -> [u64; 5] {
    ["total", "succeeded", "failed", "cancelled", "pending"].map(|field| status[field].as_u64().expect(field))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_running_request_with_exact_counts_and_announces_it_once() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let tenant = "manage-cancel";
    let api = ApiClient::for_tenant(stack, tenant);
    let server = image_server().await;
    let hooks = WebhookReceiver::start().await;
    // Two images made, one missing (404), two held by the server: the request stays running.
    let urls = [
        format!("{},{}", server.url("img/0.jpg"), server.url("held/1.jpg")),
        server.url("img/missing.jpg"),
        format!("{},{}", server.url("img/2.jpg"), server.url("held/3.jpg")),
    ];
    let answer = api.upload(catalogue(&urls).as_bytes(), Some(&hooks.url("cancelled"))).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap().to_string();
    assert_eq!(open_images(stack, tenant).await, 5);

    wait_for("three results and both held downloads", Duration::from_secs(60), || async {
        let status = api.status(&id).await.body;
        let held = server.requested().iter().filter(|path| path.starts_with("/held/")).count();
        (counts(&status)[1..3] == [2, 1] && held >= 2).then_some(())
    })
    .await;
    let running = api.post(&format!("/api/requests/{id}/retry")).await;
    assert_eq!((running.status, running.body["error"].as_str()), (409, Some("not_final")), "{:?}", running.body);
    let cancelled = api.post(&format!("/api/requests/{id}/cancel")).await;
    server.release_held();
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let status = &cancelled.body;
    assert_eq!(status["status"], "cancelled");
    assert_eq!(counts(status), [5, 2, 1, 2, 0], "succeeded + failed + cancelled = total: {status}");
    let failures: Vec<(u64, &str)> = status["failures"]
        .as_array()
        .expect("the failures listed")
        .iter()
        .map(|failure| (failure["image_index"].as_u64().unwrap(), failure["error_code"].as_str().unwrap()))
        .collect();
    assert_eq!(failures, [(1, "cancelled"), (2, "http_status_404"), (4, "cancelled")]);
    assert_eq!(open_images(stack, tenant).await, 0, "the quota is given back");

    // The held downloads end after the cancel: their results are not recorded.
    stack.wait_for_logged(&id, "result_dropped", 2).await;
    let webhook = wait_for("the cancelled request's webhook", Duration::from_secs(60), || async {
        hooks.received("cancelled").first().cloned()
    })
    .await;
    let webhook: Value = serde_json::from_slice(&webhook).unwrap();
    assert_eq!(webhook["status"], "cancelled");
    let announced = ["total", "succeeded", "failed", "cancelled"].map(|field| webhook[field].as_u64().unwrap());
    assert_eq!(announced, [5, 2, 1, 2]);
    let after = api.status(&id).await.body;
    assert_eq!(counts(&after), [5, 2, 1, 2, 0], "no late result counted: {after}");

    // The output CSV keeps the two images made; the errors report names the other three.
    let output = rows(&api.download(webhook["output_csv_url"].as_str().expect("an output CSV")).await);
    assert_eq!(output.len(), 3);
    let slots: Vec<Vec<bool>> =
        output.iter().map(|row| row[3].split(',').map(|slot| !slot.is_empty()).collect()).collect();
    assert_eq!(slots, [vec![true, false], vec![false], vec![true, false]]);
    let errors = rows(&api.download(after["errors_csv_url"].as_str().expect("an errors report")).await);
    let codes: Vec<&str> = errors.iter().map(|row| row[row.len() - 2].as_str()).collect();
    assert_eq!(codes, ["cancelled", "http_status_404", "cancelled"], "{errors:?}");
    let images: Value = api.get(&format!("/api/requests/{id}/images")).await.json().await.unwrap();
    let held = &images["images"][1];
    assert_eq!((held["state"].as_str(), held["error_code"].as_str()), (Some("FAILED"), Some("cancelled")));
    let link: Value = api.get(&format!("/api/requests/{id}/images/1")).await.json().await.unwrap();
    assert_eq!(link["error"], "image_failed", "{link}");

    let again = api.post(&format!("/api/requests/{id}/cancel")).await;
    assert_eq!((again.status, again.body["error"].as_str()), (409, Some("already_final")));
    let stranger = ApiClient::for_tenant(stack, "manage-stranger");
    for action in ["cancel", "retry"] {
        let refused = stranger.post(&format!("/api/requests/{id}/{action}")).await;
        assert_eq!((refused.status, refused.body["error"].as_str()), (404, Some("not_found")), "{action}");
    }
    assert_eq!(hooks.received("cancelled").len(), 1, "announced once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_fetches_only_the_failed_images_and_writes_a_complete_output_csv() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let tenant = "manage-retry";
    let api = ApiClient::for_tenant(stack, tenant);
    let server = image_server().await;
    // Images 1 and 3 are not on the server yet: the first run fails them (404).
    let urls = [
        format!("{},{}", server.url("img/0.jpg"), server.url("later/1.jpg")),
        format!("{},{}", server.url("later/3.jpg"), server.url("img/2.jpg")),
    ];
    let answer = api.upload(catalogue(&urls).as_bytes(), None).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let first = answer.body["request_id"].as_str().unwrap().to_string();
    let (status, _) = api.wait_until_final(&first, Duration::from_secs(60)).await;
    assert_eq!((status["status"].as_str(), status["failed"].as_u64()), (Some("completed_with_errors"), Some(2)));
    let first_output = rows(&api.download(status["output_csv_url"].as_str().unwrap()).await);

    server.publish_later();
    let fetched_before = server.requested().len();
    // A retry holds only the images it processes: 2 fit where the whole request's 4 would not.
    set_open_images(stack, tenant, QUOTA - 1).await;
    let over = api.post(&format!("/api/requests/{first}/retry")).await;
    assert_eq!((over.status, over.body["error"].as_str()), (429, Some("quota_exceeded")), "{:?}", over.body);
    set_open_images(stack, tenant, QUOTA - 2).await;
    let retried = api.post(&format!("/api/requests/{first}/retry")).await;
    assert_eq!(retried.status, 202, "{}", retried.body);
    assert_eq!((retried.body["retry_of"].as_str(), retried.body["images"].as_u64()), (Some(first.as_str()), Some(4)));
    let retry = retried.body["request_id"].as_str().unwrap().to_string();
    assert_ne!(retry, first);
    assert_eq!(open_images(stack, tenant).await, QUOTA);

    let (status, _) = api.wait_until_final(&retry, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(counts(&status), [4, 4, 0, 0, 0]);
    assert_eq!(status["retry_of"].as_str(), Some(first.as_str()));
    assert_eq!(open_images(stack, tenant).await, QUOTA - 2, "given back at the end");
    let mut fetched: Vec<String> = server.requested()[fetched_before..].to_vec();
    fetched.sort();
    fetched.dedup();
    assert_eq!(fetched, ["/later/1.jpg", "/later/3.jpg"], "only the failed images are fetched again");

    // Same rows, same order, every slot filled, the carried-over ones with the first run's outputs.
    let output = rows(&api.download(status["output_csv_url"].as_str().unwrap()).await);
    assert_eq!(output.len(), first_output.len());
    for (row, first_row) in output.iter().zip(&first_output) {
        assert_eq!(row[..3], first_row[..3]);
        for link in row[3].split(',') {
            let jpeg = api.download(link).await;
            assert_eq!(&jpeg[..3], [0xFF, 0xD8, 0xFF], "a JPEG at {link}");
        }
    }
    let listed: Value = api.get("/api/requests").await.json().await.unwrap();
    let summary = listed["requests"].as_array().unwrap().iter().find(|r| r["request_id"] == retry.as_str()).cloned();
    assert_eq!(summary.expect("the retry is listed")["retry_of"].as_str(), Some(first.as_str()));
    let nothing = api.post(&format!("/api/requests/{retry}/retry")).await;
    assert_eq!((nothing.status, nothing.body["error"].as_str()), (409, Some("nothing_to_retry")));
}
