//! Failure made real on the local stack: duplicate deliveries, replayed stream records, a
//! worker killed mid-batch, a job in the dead-letter queue, an image host that never
//! answers, jobs lost altogether. Every request still ends, counted once, notified once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::requests::{csv_of, record_accepted_request};
use imgpipe_tests::servers::{Files, ImageServer, WebhookReceiver};
use imgpipe_tests::stack::{DEFAULT_TENANT, LocalStack};
use imgpipe_tests::waits::wait_for;
use serde_json::{Value, json};

use crate::STACK_USE;
use crate::pipeline::wait_for_one_webhook;

fn photos(count: u32) -> Files {
    (0..count).map(|n| (format!("p{n}.jpg"), (photo_jpeg(300 + 10 * n, 200 + 10 * n, n), "image/jpeg"))).collect()
}

async fn accept(api: &ApiClient, urls: &[String], webhook: Option<&str>) -> String {
    let answer = api.upload(csv_of(urls).as_bytes(), webhook).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["request_id"].as_str().unwrap().to_string()
}

fn counts(status: &Value) -> (u64, u64, u64, u64) {
    let n = |field: &str| status[field].as_u64().unwrap();
    (n("total"), n("succeeded"), n("failed"), n("pending"))
}

/// The finishing stream record of a request, as DynamoDB Streams delivers it.
fn finishing_record(request_id: &str) -> Value {
    json!({"Records": [{
        "eventID": "replayed-1",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/imgpipe/stream/replay",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_790_000_000,
            "Keys": {"pk": {"S": format!("REQ#{request_id}")}, "sk": {"S": "REQUEST"}},
            "OldImage": {"request_id": {"S": request_id}, "remaining": {"N": "1"}},
            "NewImage": {"request_id": {"S": request_id}, "remaining": {"N": "0"}},
            "SequenceNumber": "100000000000000000001",
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_and_replayed_records_count_once_and_notify_once() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    // Alone, and after the jobs earlier tests left are done: this test empties the jobs queue.
    let _alone = STACK_USE.write().await;
    stack.wait_until_empty(&stack.jobs_queue_url, Duration::from_secs(300)).await;
    let server = ImageServer::start(photos(6), Duration::from_millis(500)).await;
    let hooks = WebhookReceiver::start().await;
    let urls: Vec<String> = (0..6).map(|n| server.url(&format!("slow/p{n}.jpg"))).collect();
    let id = accept(&api, &urls, Some(&hooks.url("duplicates"))).await;

    // Every job delivered twice more, racing the original delivery.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config().await);
    for _ in 0..2 {
        for (index, url) in urls.iter().enumerate() {
            let job = json!({"request_id": id, "image_index": index, "row": index, "url": url});
            sqs.send_message().queue_url(&stack.jobs_queue_url).message_body(job.to_string()).send().await.unwrap();
        }
    }

    let (status, _) = api.wait_until_final(&id, Duration::from_secs(120)).await;
    assert_eq!(status["status"], "completed");
    assert_eq!(counts(&status), (6, 6, 0, 0), "{status}");
    wait_for_one_webhook(stack, &hooks, "duplicates", &id).await;

    // The finishing stream record, delivered again (twice) to the notifier: each is read as the
    // request's finishing record, and found already finished.
    let replays = stack.logged(&id, "replay");
    for _ in 0..2 {
        let answer = stack.invoke(&stack.notifier_function_name, &finishing_record(&id)).await;
        assert_eq!(answer, json!({"batchItemFailures": []}), "the replay was handled");
    }
    stack.wait_for_logged(&id, "replay", replays + 2).await;
    assert_eq!(hooks.received("duplicates").len(), 1, "a replay sends no second webhook");
    let after = api.status(&id).await.body;
    assert_eq!(
        (after["status"].clone(), after["completed_at"].clone()),
        (status["status"].clone(), status["completed_at"].clone())
    );
    // Each extra delivery was acknowledged (deleted), none left to come back later. One that was
    // not would stay in the queue for 5 visibility timeouts (over 2 minutes on the local stack)
    // before the dead-letter queue took it.
    stack.wait_until_empty(&stack.jobs_queue_url, Duration::from_secs(60)).await;
    let images = api.get(&format!("/api/requests/{id}/images")).await.json::<Value>().await.unwrap();
    assert!(images["images"].as_array().unwrap().iter().all(|image| image["state"] == "DONE"), "{images}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_counts_once() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _alone = STACK_USE.write().await;
    let server = ImageServer::start(photos(5), Duration::from_secs(4)).await;
    let urls: Vec<String> = (0..5).map(|n| server.url(&format!("slow/p{n}.jpg"))).collect();
    let id = accept(&api, &urls, None).await;

    // Once the worker is waiting for all five slow downloads (4 s each), kill it mid-batch.
    wait_for("the worker to start the five downloads", Duration::from_secs(60), || async {
        (server.requests() >= 5).then_some(())
    })
    .await;
    let killed = stack.kill_function_processes(&stack.worker_function_name);
    assert!(killed > 0, "no worker process was running");
    assert_eq!(counts(&api.status(&id).await.body).3, 5, "nothing was recorded before the kill");

    // The killed batch comes back after the queue's visibility timeout and is done once.
    let (status, _) = api.wait_until_final(&id, Duration::from_secs(120)).await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(counts(&status), (5, 5, 0, 0));
    assert!(server.requests() >= 10, "every image was downloaded again: {} downloads", server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_in_the_dead_letter_queue_fails_its_image_and_the_request_ends() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config().await);
    let redrive = sqs
        .get_queue_attributes()
        .queue_url(&stack.jobs_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(redrive.attributes().unwrap().values().next().unwrap()).unwrap();
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");

    let server = ImageServer::start(photos(1), Duration::ZERO).await;
    let urls = vec![server.url("img/p0.jpg"), server.url("hang/forever.jpg")];
    let id = accept(&api, &urls, None).await;
    // What SQS does after the last failed delivery: the job moves to the dead-letter queue.
    let job = json!({"request_id": id, "tenant_id": DEFAULT_TENANT, "image_index": 1, "row": 1, "url": urls[1]});
    sqs.send_message().queue_url(&stack.jobs_dead_letters_url).message_body(job.to_string()).send().await.unwrap();

    let (status, _) = api.wait_until_final(&id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed_with_errors");
    assert_eq!(counts(&status), (2, 1, 1, 0));
    assert_eq!(status["failures"][0]["error_code"], "retries_exhausted");
    assert_eq!(status["failures"][0]["image_index"], 1);
    let message = status["failures"][0]["error_message"].as_str().unwrap();
    assert!(message.contains("any of its attempts"), "recorded from the dead-letter queue: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_host_that_never_answers_still_lets_the_request_complete() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(1), Duration::ZERO).await;
    let urls = vec![server.url("img/p0.jpg"), server.url("hang/forever.jpg")];
    let started = Instant::now();
    let id = accept(&api, &urls, None).await;

    let (status, seen) = api.wait_until_final(&id, Duration::from_secs(240)).await;
    assert_eq!(status["status"], "completed_with_errors", "{seen:?}");
    assert_eq!(counts(&status), (2, 1, 1, 0));
    let failure = &status["failures"][0];
    assert_eq!(failure["error_code"], "retries_exhausted");
    assert!(failure["error_message"].as_str().unwrap().contains("did not finish"), "{failure}");
    println!("a never-answering image ended its request in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_jobs_were_lost_is_ended_by_the_sweeper() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    // Alone, and once the jobs earlier tests left are done: the sweeper times nothing out
    // while the jobs queue has a backlog.
    let _alone = STACK_USE.write().await;
    stack.wait_until_empty(&stack.jobs_queue_url, Duration::from_secs(300)).await;
    let hooks = WebhookReceiver::start().await;

    // A request accepted and recorded an hour ago whose fan-out never reached the queue.
    let urls = ["https://img.example/a.jpg", "https://img.example/b.jpg"];
    let csv = csv_of(&urls.map(String::from));
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let id = record_accepted_request(stack, &csv, 2, Some(&hooks.url("swept")), an_hour_ago).await;

    // The schedule's event, with a deadline of ten minutes.
    let sweep = json!({"sweep": {"idle_seconds": 600}});
    let report = stack.invoke(&stack.notifier_function_name, &sweep).await;
    assert!(report["images_timed_out"].as_u64().unwrap() >= 2, "{report}");

    let status = api.status(&id.to_string()).await.body;
    assert_eq!(status["status"], "failed", "every image timed out: {status}");
    assert_eq!(counts(&status), (2, 0, 2, 0));
    let codes: HashMap<u64, &str> = status["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["image_index"].as_u64().unwrap(), f["error_code"].as_str().unwrap()))
        .collect();
    assert_eq!(codes, HashMap::from([(0, "timed_out"), (1, "timed_out")]));
    let hook = wait_for_one_webhook(stack, &hooks, "swept", &id.to_string()).await;
    assert_eq!(hook["status"], "failed");

    let again = stack.invoke(&stack.notifier_function_name, &sweep).await;
    assert_eq!(
        again,
        json!({"requests_finished": 0, "images_timed_out": 0, "webhooks_tried": 0, "requests_given_up": 0,
               "errors": 0, "waiting_on_backlog": 0, "left_for_next_run": 0}),
        "a second sweep finds nothing"
    );
}
