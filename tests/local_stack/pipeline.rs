//! The whole pipeline: a CSV goes in through the API, the emulator runs the real API, worker
//! and notifier binaries with their queue and stream triggers, and what a user would see
//! comes out: status, output CSV, compressed images, webhook.

use std::collections::HashMap;
use std::time::Duration;

use image::GenericImageView;
use imgpipe_core::domain::csv_rules::OUTPUT_HEADER;
use imgpipe_core::domain::webhook_signature::WebhookSecret;
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::{cutout_png, photo_jpeg};
use imgpipe_tests::servers::{Files, ImageServer, WebhookReceiver};
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::waits::wait_for;
use serde_json::Value;

use crate::STACK_USE;

/// One input URL of the test CSV and what must come of it.
struct Input {
    path: String,
    /// The source bytes, for the images that must come out compressed.
    source: Option<Vec<u8>>,
    /// The error code expected for the images that must fail.
    failure: Option<&'static str>,
}

fn image(path: &str, bytes: Vec<u8>) -> Input {
    Input { path: path.into(), source: Some(bytes), failure: None }
}

fn broken(path: &str, code: &'static str) -> Input {
    Input { path: path.into(), source: None, failure: Some(code) }
}

/// 7 rows, 22 URLs: 17 photos (JPEG), a transparent PNG twice, a slow photo, a 404 and an
/// HTML login page served as image/jpeg.
fn catalogue() -> (Vec<Vec<Input>>, Files) {
    let mut files = HashMap::new();
    let cutout = cutout_png(300);
    let slow = photo_jpeg(500, 400, 99);
    files.insert("cutout.png".to_string(), (cutout.clone(), "image/png"));
    files.insert("slow.jpg".to_string(), (slow.clone(), "image/jpeg"));
    let mut photo = |n: u32| {
        let bytes = photo_jpeg(320 + 41 * n, 240 + 29 * n, n);
        files.insert(format!("photo{n}.jpg"), (bytes.clone(), "image/jpeg"));
        image(&format!("img/photo{n}.jpg"), bytes)
    };
    let rows = vec![
        vec![photo(0), photo(1)],
        vec![photo(2), broken("img/missing.jpg", "http_status_404"), photo(3)],
        vec![photo(4), photo(5), photo(6)],
        vec![image("img/cutout.png", cutout.clone()), broken("html/login.jpg", "not_an_image")],
        vec![photo(7), photo(8), photo(9), photo(10)],
        vec![image("slow/slow.jpg", slow), image("img/cutout.png", cutout)],
        (11..17).map(&mut photo).collect(),
    ];
    (rows, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_with_broken_links_ends_completed_with_errors_and_keeps_every_slot() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let (rows, files) = catalogue();
    let server = ImageServer::start(files, Duration::from_secs(3)).await;
    let hooks = WebhookReceiver::start().await;
    let inputs: Vec<&Input> = rows.iter().flatten().collect();
    assert!(inputs.len() >= 20 && rows.len() >= 5);

    let mut csv = String::from("S. No.,Product Name,Input Image Urls\r\n");
    for (i, row) in rows.iter().enumerate() {
        let urls: Vec<String> = row.iter().map(|input| server.url(&input.path)).collect();
        csv.push_str(&format!("{},Product {},\"{}\"\r\n", i + 1, i + 1, urls.join(", ")));
    }
    let accepted = api.upload(csv.as_bytes(), Some(&hooks.url("catalogue"))).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().expect("a request id").to_string();
    assert!(accepted.body["status_url"].as_str().unwrap().ends_with(&format!("/api/status/{id}/")));

    // Accepted: pending until its jobs are queued. The slow image then keeps it processing
    // long enough to be seen in progress.
    let early = api.status(&id).await;
    assert!(matches!(early.body["status"].as_str(), Some("pending" | "processing")), "{}", early.body);
    let not_yet = api.get(&format!("/api/requests/{id}/output.csv")).await;
    assert_eq!(not_yet.status(), 404, "no output CSV before the request is final");

    let (status, seen) = api.wait_until_final(&id, Duration::from_secs(120)).await;
    let expected = ["pending", "processing", "completed_with_errors"];
    let order: Vec<usize> =
        seen.iter().map(|s| expected.iter().position(|e| e == s).expect("a known status")).collect();
    assert!(order.is_sorted() && seen.contains(&"processing".into()), "statuses seen, in order: {seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("completed_with_errors"));
    let total = inputs.len() as u64;
    assert_eq!(
        (status["total"].as_u64(), status["succeeded"].as_u64(), status["failed"].as_u64(), status["pending"].as_u64()),
        (Some(total), Some(total - 2), Some(2), Some(0)),
        "{status}"
    );
    assert!(status["completed_at"].is_string());

    // The failure reasons are visible in the status, at the right images.
    let failures = status["failures"].as_array().expect("failed images are listed");
    let mut reported: Vec<(u64, &str)> =
        failures.iter().map(|f| (f["image_index"].as_u64().unwrap(), f["error_code"].as_str().unwrap())).collect();
    reported.sort();
    let expected: Vec<(u64, &str)> =
        inputs.iter().enumerate().filter_map(|(i, input)| input.failure.map(|code| (i as u64, code))).collect();
    assert_eq!(reported, expected);

    // The output CSV: same rows, same order, one slot per input URL, empty where it failed.
    let output_url = status["output_csv_url"].as_str().expect("an output CSV link");
    let output = api.download(output_url).await;
    let mut reader = csv::Reader::from_reader(output.as_slice());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), OUTPUT_HEADER);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (i, (record, row)) in records.iter().zip(&rows).enumerate() {
        assert_eq!(&record[0], (i + 1).to_string());
        assert_eq!(&record[1], format!("Product {}", i + 1));
        let slots: Vec<&str> = record[3].split(',').collect();
        assert_eq!(slots.len(), row.len().max(1), "row {}: {:?}", i + 1, &record[3]);
        for (slot, input) in slots.iter().zip(row) {
            match &input.source {
                Some(source) => assert_compressed(&api, slot, source).await,
                None => assert_eq!(*slot, "", "a failed image leaves its slot empty"),
            }
        }
    }

    // The errors report names each failed image with its code.
    let report = api.download(status["errors_csv_url"].as_str().expect("an errors report")).await;
    let report = String::from_utf8(report).unwrap();
    let failed_lines: Vec<&str> = report.lines().skip(1).collect();
    assert_eq!(failed_lines.len(), 2, "{report}");
    assert!(failed_lines[0].contains("img/missing.jpg,http_status_404,"), "{report}");
    assert!(failed_lines[1].contains("html/login.jpg,not_an_image,"), "{report}");

    // Exactly one webhook, with the final counts.
    let hook = wait_for_one_webhook(stack, &hooks, "catalogue", &id).await;
    assert_eq!(hook["request_id"], id.as_str());
    assert_eq!(hook["status"], "completed_with_errors");
    assert_eq!(
        (hook["total"].as_u64(), hook["succeeded"].as_u64(), hook["failed"].as_u64()),
        (Some(total), Some(total - 2), Some(2))
    );
    assert_eq!(api.download(hook["output_csv_url"].as_str().unwrap()).await, output);
    // Signed with the secret the upload's answer gave (Standard Webhooks).
    let secret = WebhookSecret::parse(accepted.body["webhook_secret"].as_str().expect("a signing secret")).unwrap();
    let delivery = &hooks.deliveries("catalogue")[0];
    assert_eq!(delivery.verify(&secret), Ok(()), "signed with the upload's secret");
    assert_eq!(api.download(hook["errors_csv_url"].as_str().unwrap()).await, report.as_bytes());
}

/// The output is a JPEG of the same picture, smaller than its source; transparency is white.
async fn assert_compressed(api: &ApiClient, url: &str, source: &[u8]) {
    assert!(!url.is_empty(), "a successful image has an output URL");
    let output = api.download(url).await;
    assert_eq!(image::guess_format(&output).unwrap(), image::ImageFormat::Jpeg);
    let decoded = image::load_from_memory(&output).expect("the output decodes");
    let original = image::load_from_memory(source).unwrap();
    assert_eq!(decoded.dimensions(), original.dimensions());
    assert!(output.len() < source.len(), "{} bytes out, {} in", output.len(), source.len());
    if original.color().has_alpha() {
        let corner = decoded.to_rgb8().get_pixel(2, 2).0;
        assert!(corner.iter().all(|&c| c > 245), "transparent areas come out white, got {corner:?}");
    }
}

/// The one webhook POST of a request, once the notifier has handled the stream record that
/// took the request's `remaining` to 0 (it logs `finished`, or `replay` if a sweep finished the
/// request first): no finishing of the request is then left in flight that could send another.
/// (The sweeper's schedule is off on the test stack; a test that sweeps waits for its answer.)
pub async fn wait_for_one_webhook(stack: &LocalStack, hooks: &WebhookReceiver, token: &str, request_id: &str) -> Value {
    wait_for("a webhook POST", Duration::from_secs(60), || async { hooks.received(token).first().cloned() }).await;
    let handled = || stack.logged(request_id, "finished") + stack.logged(request_id, "replay");
    wait_for("the notifier to handle the finishing stream record", Duration::from_secs(60), || async {
        (handled() > 0).then_some(())
    })
    .await;
    let received = hooks.received(token);
    assert_eq!(received.len(), 1, "exactly one webhook POST");
    serde_json::from_slice(&received[0]).expect("a JSON webhook body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_catalogue_sent_as_raw_csv_is_completed() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let files = HashMap::from([
        ("a.jpg".to_string(), (photo_jpeg(640, 480, 7), "image/jpeg")),
        ("b.png".to_string(), (cutout_png(200), "image/png")),
    ]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let csv = format!(
        "\u{feff}Serial Number,Product Name,Input Image Urls\n7,Lamp,\"{},{}\"\n",
        server.url("img/a.jpg"),
        server.url("img/b.png")
    );

    let accepted = api.upload_raw(csv.as_bytes(), "text/csv").await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().unwrap();

    let (status, _) = api.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed");
    assert_eq!((status["succeeded"].as_u64(), status["failed"].as_u64()), (Some(2), Some(0)));
    assert!(status.get("failures").is_none());
    let output = api.download(status["output_csv_url"].as_str().unwrap()).await;
    let text = String::from_utf8(output).unwrap();
    let row = text.lines().nth(1).unwrap();
    assert!(row.starts_with("7,Lamp,"), "{row}");
}

/// Waits for an object to appear in the stack's bucket.
async fn wait_for_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let object = wait_for(&format!("{key} in the bucket"), Duration::from_secs(60), || async {
        s3.get_object().bucket(bucket).key(key).send().await.ok()
    })
    .await;
    object.body.collect().await.expect("the object's body").into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_dropped_into_the_bucket_is_processed_and_a_bad_one_gets_its_problems() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    // Alone: that nothing came of two files is seen once the jobs queue is empty.
    let _alone = STACK_USE.write().await;
    let s3 = stack.s3_client().await;
    let files = HashMap::from([("a.jpg".to_string(), (photo_jpeg(400, 300, 3), "image/jpeg"))]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let csv = format!(
        "S. No.,Product Name,Input Image Urls\n1,Lamp,\"{},{}\"\n",
        server.url("img/a.jpg"),
        server.url("img/a.jpg")
    );
    let bad = "S. No.,Product Name,Input Image Urls\n1,Lamp,ftp://example.com/a.jpg\n";
    let put = |key: &'static str, body: Vec<u8>| {
        s3.put_object().bucket(&stack.bucket_name).key(key).body(body.into()).content_type("text/csv").send()
    };
    // Not under incoming/, or not a .csv: nothing happens to these (put first, so that any
    // notification of them is queued before those of the two CSVs).
    put("elsewhere/other.csv", bad.as_bytes().to_vec()).await.expect("put another CSV");
    put("incoming/notes.txt", b"hello".to_vec()).await.expect("put a text file");
    put("incoming/tests/spring sale.csv", csv.clone().into_bytes()).await.expect("drop the CSV");
    put("incoming/tests/broken.csv", bad.as_bytes().to_vec()).await.expect("drop the bad CSV");
    // A folder that names no known tenant: refused, whatever the CSV.
    put("incoming/nobody/spring sale.csv", csv.into_bytes()).await.expect("drop for an unknown tenant");

    let receipt: Value =
        serde_json::from_slice(&wait_for_object(&s3, &stack.bucket_name, "receipts/tests/spring sale.json").await)
            .unwrap();
    assert_eq!((receipt["status"].as_str(), receipt["images"].as_u64()), (Some("accepted"), Some(2)), "{receipt}");
    let id = receipt["request_id"].as_str().expect("a request id");
    let (status, _) = api.wait_until_final(id, Duration::from_secs(60)).await;
    assert_eq!((status["status"].as_str(), status["succeeded"].as_u64()), (Some("completed"), Some(2)), "{status}");
    let output = wait_for_object(&s3, &stack.bucket_name, receipt["output_csv_key"].as_str().unwrap()).await;
    let mut rows = csv::Reader::from_reader(output.as_slice());
    let row = rows.records().next().expect("one row").expect("a CSV row");
    assert_eq!(row[3].split(',').count(), 2, "one output per input URL: {row:?}");

    let rejected: Value =
        serde_json::from_slice(&wait_for_object(&s3, &stack.bucket_name, "receipts/tests/broken.json").await).unwrap();
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["problems"][0]["line"], 2, "{rejected}");
    let unknown: Value =
        serde_json::from_slice(&wait_for_object(&s3, &stack.bucket_name, "receipts/nobody/spring sale.json").await)
            .unwrap();
    assert_eq!(unknown["status"], "rejected", "{unknown}");
    assert!(unknown["error"].as_str().unwrap().contains("no tenant nobody"), "{unknown}");

    // Every notification handled (the two CSVs' jobs too): the two files that do not qualify
    // got no receipt.
    stack.wait_until_empty(&stack.jobs_queue_url, Duration::from_secs(300)).await;
    let listed = s3.list_objects_v2().bucket(&stack.bucket_name).prefix("receipts/").send().await.unwrap();
    // (Those of reserved uploads, receipts/<tenant>/uploads/, are large.rs's and cli.rs's.)
    let receipts: Vec<&str> =
        listed.contents().iter().filter_map(|object| object.key()).filter(|key| !key.contains("/uploads/")).collect();
    assert_eq!(
        receipts,
        ["receipts/nobody/spring sale.json", "receipts/tests/broken.json", "receipts/tests/spring sale.json"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_that_was_down_gets_it_later_from_the_sweeper() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let files = HashMap::from([("a.jpg".to_string(), (photo_jpeg(320, 240, 5), "image/jpeg"))]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let hooks = WebhookReceiver::start().await;
    hooks.set_down(true);
    let csv = format!("S. No.,Product Name,Input Image Urls\n1,Lamp,{}\n", server.url("img/a.jpg"));
    let accepted = api.upload(csv.as_bytes(), Some(&hooks.url("late"))).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().expect("a request id").to_string();
    let (status, _) = api.wait_until_final(&id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");

    // The notifier's own attempts (3, over about 3 s) all meet the receiver down; it then
    // keeps the webhook for the sweeper and logs the request finished.
    stack.wait_for_logged(&id, "finished", 1).await;
    assert!(hooks.refused() >= 3, "the notifier tried {} times", hooks.refused());
    assert!(hooks.received("late").is_empty());

    // Back up, and the redelivery due (it is kept for a second on the local stack): the sweep
    // delivers it, once.
    hooks.set_down(false);
    assert!(stack.make_webhook_due(&id).await, "the webhook is owed");
    let sweep = serde_json::json!({"sweep": {"idle_seconds": 900}});
    let report = stack.invoke(&stack.notifier_function_name, &sweep).await;
    assert!(report["webhooks_tried"].as_u64().unwrap() >= 1, "{report}");
    let hook = wait_for_one_webhook(stack, &hooks, "late", &id).await;
    // Were it still owed, it would be delivered again once due: make it due if it is, and sweep.
    stack.make_webhook_due(&id).await;
    stack.invoke(&stack.notifier_function_name, &sweep).await;
    assert_eq!(hooks.received("late").len(), 1, "a delivered webhook is not delivered again");
    assert_eq!((hook["request_id"].as_str(), hook["status"].as_str()), (Some(id.as_str()), Some("completed")));
    let secret = WebhookSecret::parse(accepted.body["webhook_secret"].as_str().expect("a signing secret")).unwrap();
    let delivery = &hooks.deliveries("late")[0];
    let header = |name: &str| delivery.headers[name].to_str().unwrap().to_string();
    assert_eq!(header("webhook-id"), format!("msg_{id}"), "the same id as the first attempts");
    assert_eq!(delivery.verify(&secret), Ok(()), "signed afresh with the upload's secret");
}
