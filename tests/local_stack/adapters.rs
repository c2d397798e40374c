//! The AWS adapters against the emulator, each test on resources of its own (a table, a
//! bucket, a queue created here), so the deployed functions never see them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::domain::fetch_jobs::{FetchJob, Slot};
use imgpipe_core::domain::http_url::HttpUrl;
use imgpipe_core::domain::idempotency::{IdempotencyKey, IdempotencyRecord, Repeat, StoredAnswer, fingerprint};
use imgpipe_core::domain::quota::TenantQuota;
use imgpipe_core::domain::request::{
    FinalState, ImageJob, ImageOutcome, ImageState, Progress, QueueMessage, RequestRecord, RequestStatus, Transition,
};
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::domain::tenant::TenantId;
use imgpipe_core::ports::{
    Admission, BlobStore, CarryOverResults, CreateRequest, FindIdleRequests, IdempotencyKeys, JobQueue, JobStanding,
    ListRequests, MoveRequest, QueueBacklog, ReadRequest, ReadResults, RecordResult, WebhookOutbox,
};
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::tables::fresh_table;

/// A tenant of these tests' own tables, with no quota in the way.
fn tenant() -> TenantId {
    "adapters".parse().unwrap()
}

const NO_QUOTA: TenantQuota = TenantQuota { max_open_images: u64::MAX };

fn url(i: u32) -> HttpUrl {
    HttpUrl::parse(&format!("https://img.example/{i}.jpg")).unwrap()
}

async fn request_with_images(table: &DynamoTable, count: u32) -> RequestId {
    request_created_at(table, count, Utc::now()).await
}

async fn request_created_at(table: &DynamoTable, count: u32, created_at: DateTime<Utc>) -> RequestId {
    let id = RequestId::new_random();
    table.create(&RequestRecord::new(id, tenant(), count as u64, None, created_at), &NO_QUOTA).await.unwrap();
    id
}

/// A request of one image, done, and the request completed; owing its webhook from `webhook_due_at`.
async fn completed_request(table: &DynamoTable, webhook_due_at: Option<chrono::DateTime<Utc>>) -> RequestId {
    let id = request_with_images(table, 1).await;
    table.record(&job(id, 0), &done(0), Utc::now(), Progress::Made).await.unwrap();
    table.finish(id, &ending(RequestStatus::Completed, webhook_due_at), Utc::now()).await.unwrap();
    id
}

fn ending(status: RequestStatus, webhook_due_at: Option<chrono::DateTime<Utc>>) -> FinalState {
    FinalState {
        status,
        output_csv_key: Some("requests/x/output.csv".into()),
        failure_reason: None,
        webhook_due_at,
        tenant_id: tenant(),
        open_images: 1,
    }
}

fn job(id: RequestId, i: u32) -> ImageJob {
    ImageJob { request_id: id, tenant_id: tenant(), image_index: i, row: i / 3, url: url(i) }
}

fn done(i: u32) -> ImageOutcome {
    ImageOutcome::Done { output_key: format!("output/{i}.jpg"), bytes_in: 1000, bytes_out: 400, note: None }
}

#[tokio::test]
async fn table_stores_a_request_and_lists_its_results_in_order() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 12).await;

    let request = table.get(id).await.unwrap().expect("request stored");
    assert_eq!((request.status, request.total, request.remaining), (RequestStatus::Pending, 12, 12));
    assert!(table.recorded_images(id).await.unwrap().is_empty(), "no result, no image item");
    // Results arrive in any order; they are listed in output order.
    for i in [5, 11, 0, 7, 3] {
        table.record(&job(id, i), &done(i), Utc::now(), Progress::Made).await.unwrap();
    }
    let images = table.recorded_images(id).await.unwrap();
    assert_eq!(images.iter().map(|image| image.image_index).collect::<Vec<_>>(), [0, 3, 5, 7, 11]);
    assert!(images.iter().all(|image| image.state == ImageState::Done));
    assert_eq!((images[3].input_url.clone(), images[3].row), (url(7), 2));
    let between = table.recorded_images_between(id, 3, 7).await.unwrap();
    assert_eq!(between.iter().map(|image| image.image_index).collect::<Vec<_>>(), [3, 5, 7]);
    assert!(table.get(RequestId::new_random()).await.unwrap().is_none());
}

#[tokio::test]
async fn table_records_each_image_once_and_counts_exactly() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 3).await;

    assert_eq!(table.record(&job(id, 0), &done(0), Utc::now(), Progress::Made).await.unwrap(), Transition::Applied);
    assert_eq!(table.record(&job(id, 0), &done(0), Utc::now(), Progress::Made).await.unwrap(), Transition::AlreadyDone);
    let failed = ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() };
    assert_eq!(table.record(&job(id, 1), &failed, Utc::now(), Progress::Made).await.unwrap(), Transition::Applied);
    // A late duplicate with a different result must not change the recorded one.
    assert_eq!(table.record(&job(id, 1), &done(1), Utc::now(), Progress::Made).await.unwrap(), Transition::AlreadyDone);

    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!((request.succeeded, request.failed, request.remaining), (1, 1, 1));
    let images = table.recorded_images(id).await.unwrap();
    assert_eq!(images[0].output_key.as_deref(), Some("output/0.jpg"));
    assert_eq!((images[0].bytes_in, images[0].bytes_out), (Some(1000), Some(400)));
    assert_eq!(images[1].state, ImageState::Failed);
    assert_eq!(images[1].error_code.as_deref(), Some("http_status_404"));
    assert_eq!(images.len(), 2, "image 2 has no result yet");
}

#[tokio::test]
async fn failed_images_are_listed_in_order_without_the_successes() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 30).await;
    let other = request_with_images(&table, 1).await;
    let failed = |i: u32| ImageOutcome::Failed { error_code: format!("code_{i}"), error_message: "gone".into() };
    for i in (0..30).rev() {
        let outcome = if i % 7 == 3 { failed(i) } else { done(i) };
        table.record(&job(id, i), &outcome, Utc::now(), Progress::Made).await.unwrap();
    }
    table.record(&job(other, 0), &failed(0), Utc::now(), Progress::Made).await.unwrap();

    let listed = table.failed_images(id, 100).await.unwrap();
    let indexes: Vec<u32> = listed.iter().map(|image| image.image_index).collect();
    assert_eq!(indexes, vec![3, 10, 17, 24], "only this request's failures, in image order");
    assert_eq!(listed[1].error_code.as_deref(), Some("code_10"));
    assert_eq!(listed[1].input_url, url(10));
    assert_eq!(table.failed_images(id, 2).await.unwrap().len(), 2, "limited");
}

#[tokio::test]
async fn concurrent_duplicates_are_applied_exactly_once() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 1).await;

    let (duplicate, outcome) = (job(id, 0), done(0));
    let attempts: Vec<_> = (0..8).map(|_| table.record(&duplicate, &outcome, Utc::now(), Progress::Made)).collect();
    let results = join_all(attempts).await;
    let applied = results.iter().filter(|r| matches!(r, Ok(Transition::Applied))).count();
    assert_eq!(applied, 1, "{results:?}");
    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!((request.succeeded, request.remaining), (1, 0));
}

#[tokio::test]
async fn a_request_reaches_its_final_state_once() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 1).await;

    assert_eq!(table.mark_processing(id, Utc::now()).await.unwrap(), Transition::Applied);
    assert_eq!(table.mark_processing(id, Utc::now()).await.unwrap(), Transition::AlreadyDone);
    let table = &table;
    let finish = |status| async move { table.finish(id, &ending(status, None), Utc::now()).await };
    assert_eq!(finish(RequestStatus::Completed).await.unwrap(), Transition::Applied);
    assert_eq!(finish(RequestStatus::Failed).await.unwrap(), Transition::AlreadyDone);
    assert_eq!(table.mark_processing(id, Utc::now()).await.unwrap(), Transition::AlreadyDone);

    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Completed);
    assert_eq!(request.output_csv_key.as_deref(), Some("requests/x/output.csv"));
    assert!(request.completed_at.is_some());
}

#[tokio::test]
async fn a_cancel_applies_only_to_the_counts_seen_and_then_no_result_is_counted() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 3).await;
    let seen = table.get(id).await.unwrap().unwrap();
    table.record(&job(id, 0), &done(0), Utc::now(), Progress::Made).await.unwrap();

    // A result came in after the request was read: the cancel must read it again.
    let ending = FinalState::cancelled(&seen, Utc::now());
    assert_eq!(table.cancel(&seen, &ending, Utc::now()).await.unwrap(), Transition::AlreadyDone);
    let seen = table.get(id).await.unwrap().unwrap();
    assert_eq!(table.cancel(&seen, &ending, Utc::now()).await.unwrap(), Transition::Applied);
    let cancelled = table.get(id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, RequestStatus::Cancelled);
    let counts = (cancelled.succeeded, cancelled.failed, cancelled.cancelled, cancelled.remaining);
    assert_eq!(counts, (1, 0, 2, 0));

    // A job still queued records nothing; a second cancel and a finish find it final.
    assert_eq!(table.record(&job(id, 1), &done(1), Utc::now(), Progress::Made).await.unwrap(), Transition::AlreadyDone);
    assert_eq!(table.cancel(&cancelled, &ending, Utc::now()).await.unwrap(), Transition::AlreadyDone);
    let finish = table.finish(id, &self::ending(RequestStatus::Completed, None), Utc::now()).await.unwrap();
    assert_eq!(finish, Transition::AlreadyDone);
    let after = table.get(id).await.unwrap().unwrap();
    assert_eq!((after.succeeded, after.failed, after.cancelled, after.remaining), (1, 0, 2, 0));
    assert_eq!(table.recorded_images(id).await.unwrap().len(), 1);
    // Its output CSV is recorded once, after the cancelling write.
    assert_eq!(table.record_output_csv(id, "out.csv").await.unwrap(), Transition::Applied);
    assert_eq!(table.record_output_csv(id, "again.csv").await.unwrap(), Transition::AlreadyDone);
    assert_eq!(table.get(id).await.unwrap().unwrap().output_csv_key.as_deref(), Some("out.csv"));
}

/// The job of images `indexes` of request `id`, all naming one URL.
fn fetch(id: RequestId, indexes: &[u32]) -> FetchJob {
    let mut fetch = FetchJob::from(job(id, indexes[0]));
    fetch.images = indexes.iter().map(|&image_index| Slot { image_index, row: image_index / 3 }).collect();
    fetch
}

#[tokio::test]
async fn a_job_stands_to_do_until_each_of_its_images_has_a_result_or_its_request_ends() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 3).await;
    assert_eq!(table.job_standing(&fetch(id, &[0])).await.unwrap(), JobStanding::ToDo);
    table.record(&job(id, 0), &done(0), Utc::now(), Progress::Made).await.unwrap();
    assert_eq!(table.job_standing(&fetch(id, &[0])).await.unwrap(), JobStanding::Recorded);
    assert_eq!(table.job_standing(&fetch(id, &[1])).await.unwrap(), JobStanding::ToDo);
    assert_eq!(table.job_standing(&fetch(id, &[0, 1])).await.unwrap(), JobStanding::ToDo, "image 1 has none");

    let seen = table.get(id).await.unwrap().unwrap();
    table.cancel(&seen, &FinalState::cancelled(&seen, Utc::now()), Utc::now()).await.unwrap();
    assert_eq!(table.job_standing(&fetch(id, &[1])).await.unwrap(), JobStanding::RequestEnded);
    let unknown = RequestId::new_random();
    assert_eq!(table.job_standing(&fetch(unknown, &[0])).await.unwrap(), JobStanding::RequestEnded);
}

#[tokio::test]
async fn results_written_together_are_all_recorded_with_summed_counts_or_none_at_all() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 101).await;
    let failed = ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() };
    // The most one write holds: 99 images (DynamoDB's 100 actions with the counters).
    let results: Vec<(ImageJob, ImageOutcome)> =
        (0..99).map(|i| (job(id, i), if i % 10 == 0 { failed.clone() } else { done(i) })).collect();
    assert_eq!(table.record_all(&results, Utc::now(), Progress::Made).await.unwrap(), Transition::Applied);
    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!((request.succeeded, request.failed, request.remaining), (89, 10, 2));
    assert_eq!(table.failed_images(id, 100).await.unwrap().len(), 10);

    // One image of the write has its result: nothing of it is written.
    let again = [(job(id, 98), done(98)), (job(id, 99), done(99))];
    assert_eq!(table.record_all(&again, Utc::now(), Progress::Made).await.unwrap(), Transition::AlreadyDone);
    assert_eq!(table.recorded_images(id).await.unwrap().len(), 99);
    assert_eq!(table.get(id).await.unwrap().unwrap().remaining, 2);

    // A final request takes no more.
    let seen = table.get(id).await.unwrap().unwrap();
    table.cancel(&seen, &FinalState::cancelled(&seen, Utc::now()), Utc::now()).await.unwrap();
    let late = [(job(id, 99), done(99)), (job(id, 100), done(100))];
    assert_eq!(table.record_all(&late, Utc::now(), Progress::Made).await.unwrap(), Transition::AlreadyDone);
    assert_eq!(table.recorded_images(id).await.unwrap().len(), 99);
}

#[tokio::test]
async fn results_carried_over_become_the_retrys_own_items_beyond_one_batch() {
    let table = fresh_table().await;
    let first = request_with_images(&table, 30).await;
    for i in 0..30 {
        table.record(&job(first, i), &done(i), Utc::now(), Progress::Made).await.unwrap();
    }
    let retry = RequestId::new_random();
    let mut carried = table.recorded_images(first).await.unwrap();
    for image in &mut carried {
        image.request_id = retry;
    }
    table.carry_over(&carried).await.unwrap();
    table.carry_over(&carried).await.unwrap();

    let items = table.recorded_images(retry).await.unwrap();
    assert_eq!(items, carried, "30 items, more than one batch of 25, written as they were");
    assert_eq!(items[29].output_key.as_deref(), Some("output/29.jpg"));
}

#[tokio::test]
async fn blobs_round_trip_and_presigned_urls_serve_the_object() {
    let stack = LocalStack::shared();
    let sdk = stack.sdk_config().await;
    let bucket = format!("adapter-test-{}", uuid::Uuid::new_v4());
    let s3 = stack.s3_client().await;
    s3.create_bucket().bucket(&bucket).send().await.expect("create a test bucket");
    let blobs = S3Blobs::new(&sdk, &bucket);

    blobs.put("a/b.jpg", b"\xff\xd8jpeg bytes".to_vec(), "image/jpeg").await.unwrap();
    assert_eq!(blobs.get("a/b.jpg").await.unwrap().as_deref(), Some(&b"\xff\xd8jpeg bytes"[..]));
    assert_eq!(blobs.get("a/missing.jpg").await.unwrap(), None);

    let url = blobs.presigned_get_url("a/b.jpg", Duration::from_secs(60)).await.unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(&response.bytes().await.unwrap()[..], b"\xff\xd8jpeg bytes");
}

#[tokio::test]
async fn queue_delivers_every_job_of_a_fan_out() {
    let stack = LocalStack::shared();
    let sdk = stack.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = format!("adapter-test-{}", uuid::Uuid::new_v4());
    let queue_url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let id = RequestId::new_random();
    // 23 jobs: two full batches of 10 and a partial one.
    let jobs: Vec<FetchJob> = (0..23).map(|i| fetch(id, &[i, 100 + i])).collect();

    SqsQueue::new(&sdk, &queue_url).enqueue(&jobs).await.unwrap();

    let mut received = Vec::new();
    for _ in 0..20 {
        let batch = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
        for message in batch.messages() {
            match serde_json::from_str(message.body().unwrap()).unwrap() {
                QueueMessage::Fetch { fetch } => received.push(fetch),
                other => panic!("not a job: {other:?}"),
            }
        }
        if received.len() >= jobs.len() {
            break;
        }
    }
    received.sort_by_key(|job| job.images[0].image_index);
    assert_eq!(received, jobs);
}

#[tokio::test]
async fn a_deferred_webhook_is_listed_apart_from_open_requests_until_it_ends() {
    let table = fresh_table().await;
    let id = completed_request(&table, Some(Utc::now())).await;
    let open = request_with_images(&table, 1).await;
    let next_at = Utc::now() + chrono::Duration::seconds(60);
    table.defer_webhook(id, 1, next_at).await.unwrap();
    // Not final: nothing to deliver yet, so it is not deferred.
    table.defer_webhook(open, 1, next_at).await.unwrap();

    assert_eq!(table.owed_webhooks().await.unwrap(), vec![id]);
    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!(
        (request.webhook_failed_deliveries, request.webhook_next_at.map(|t| t.timestamp())),
        (1, Some(next_at.timestamp()))
    );
    let far_future = Utc::now() + chrono::Duration::days(1);
    let idle = table.idle_requests(far_future).await.unwrap();
    assert!(idle.contains(&open) && !idle.contains(&id), "a final request is not idle: {idle:?}");

    table.end_webhook(id).await.unwrap();
    assert!(table.owed_webhooks().await.unwrap().is_empty());
    assert_eq!(table.get(id).await.unwrap().unwrap().webhook_next_at, None);
}

#[tokio::test]
async fn idle_requests_are_the_open_ones_without_recent_progress() {
    let table = fresh_table().await;
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    let idle = request_created_at(&table, 1, an_hour_ago).await;
    // Finished an hour ago too: idle since, but final.
    let finished = request_created_at(&table, 1, an_hour_ago).await;
    table.record(&job(finished, 0), &done(0), an_hour_ago, Progress::Made).await.unwrap();
    table.finish(finished, &ending(RequestStatus::Completed, None), an_hour_ago).await.unwrap();
    let cutoff = Utc::now() - chrono::Duration::minutes(30);
    let busy = request_with_images(&table, 2).await;

    let found = table.idle_requests(cutoff).await.unwrap();
    assert!(found.contains(&idle), "{found:?}");
    assert!(!found.contains(&finished), "final requests leave the index");
    assert!(!found.contains(&busy), "recent progress is not idle");

    // Progress moves a request out of the idle range.
    table.record(&job(idle, 0), &done(0), Utc::now(), Progress::Made).await.unwrap();
    assert!(!table.idle_requests(cutoff).await.unwrap().contains(&idle));
}

#[tokio::test]
async fn the_final_write_records_the_webhook_owed_and_one_sender_claims_it() {
    let table = fresh_table().await;
    let due_at = Utc::now() - chrono::Duration::seconds(1);
    let id = completed_request(&table, Some(due_at)).await;
    let quiet = completed_request(&table, None).await;

    let owed = table.owed_webhooks().await.unwrap();
    assert!(owed.contains(&id) && !owed.contains(&quiet), "{owed:?}");
    let stored_due = table.get(id).await.unwrap().unwrap().webhook_next_at.expect("owed");
    let until = Utc::now() + chrono::Duration::seconds(60);
    assert_eq!(table.claim_webhook(id, stored_due, until).await.unwrap(), Transition::Applied);
    assert_eq!(table.claim_webhook(id, stored_due, until).await.unwrap(), Transition::AlreadyDone, "taken");
    table.end_webhook(id).await.unwrap();
    assert!(!table.owed_webhooks().await.unwrap().contains(&id));
    table.defer_webhook(id, 1, until).await.unwrap();
    assert_eq!(table.get(id).await.unwrap().unwrap().webhook_next_at, None, "an ended webhook is not deferred again");
}

#[tokio::test]
async fn a_failed_request_keeps_its_reason_and_failed_sweeps_are_counted_while_open() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 2).await;
    assert_eq!(table.note_sweep_failure(id).await.unwrap(), 1);
    assert_eq!(table.note_sweep_failure(id).await.unwrap(), 2);
    table.clear_sweep_failures(id).await.unwrap();
    assert_eq!(table.note_sweep_failure(id).await.unwrap(), 1);

    let request = table.get(id).await.unwrap().unwrap();
    let failed = FinalState::failed(&request, "the input CSV is missing", Utc::now());
    assert_eq!(table.finish(id, &failed, Utc::now()).await.unwrap(), Transition::Applied);
    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!(request.failure_reason.as_deref(), Some("the input CSV is missing"));
    assert!(table.note_sweep_failure(id).await.is_err(), "a final request is not swept");
}

#[tokio::test]
async fn the_sweepers_results_do_not_move_the_requests_progress() {
    let table = fresh_table().await;
    let id = request_with_images(&table, 2).await;
    let created = table.get(id).await.unwrap().unwrap().updated_at;
    let timed_out = ImageOutcome::Failed { error_code: "timed_out".into(), error_message: "no result".into() };
    table.record(&job(id, 0), &timed_out, Utc::now(), Progress::None).await.unwrap();
    let request = table.get(id).await.unwrap().unwrap();
    assert_eq!((request.remaining, request.failed, request.updated_at), (1, 1, created));
    table.record(&job(id, 1), &done(1), Utc::now(), Progress::Made).await.unwrap();
    assert!(table.get(id).await.unwrap().unwrap().updated_at > created);
}

#[tokio::test]
async fn the_queue_reports_the_messages_waiting_for_a_worker() {
    let stack = LocalStack::shared();
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config().await);
    let name = format!("backlog-test-{}", uuid::Uuid::new_v4());
    let queue_url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let queue = SqsQueue::new(&stack.sdk_config().await, &queue_url);
    assert_eq!(queue.waiting_messages().await.unwrap(), 0);
    let id = RequestId::new_random();
    queue.enqueue(&(0..3).map(|i| fetch(id, &[i])).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(queue.waiting_messages().await.unwrap(), 3);
}

#[tokio::test]
async fn a_request_takes_its_images_from_the_quota_and_its_final_state_gives_them_back_once() {
    let table = fresh_table().await;
    let quota = TenantQuota { max_open_images: 5 };
    let first = RequestRecord::new(RequestId::new_random(), tenant(), 3, None, Utc::now());
    assert_eq!(table.create(&first, &quota).await.unwrap(), Admission::Created);
    let second = RequestRecord::new(RequestId::new_random(), tenant(), 3, None, Utc::now());
    assert_eq!(table.create(&second, &quota).await.unwrap(), Admission::OverQuota);
    assert!(table.get(second.request_id).await.unwrap().is_none(), "nothing written over quota");

    let ending = FinalState::failed(&first, "test", Utc::now());
    assert_eq!(table.finish(first.request_id, &ending, Utc::now()).await.unwrap(), Transition::Applied);
    assert_eq!(table.finish(first.request_id, &ending, Utc::now()).await.unwrap(), Transition::AlreadyDone);
    assert_eq!(table.create(&second, &quota).await.unwrap(), Admission::Created, "given back once");
    let third = RequestRecord::new(RequestId::new_random(), tenant(), 3, None, Utc::now());
    assert_eq!(table.create(&third, &quota).await.unwrap(), Admission::OverQuota, "not twice");
}

#[tokio::test]
async fn a_tenants_requests_are_listed_newest_first_a_page_at_a_time_and_no_one_elses() {
    let table = fresh_table().await;
    let other: TenantId = "someone-else".parse().unwrap();
    let start = Utc::now() - chrono::Duration::minutes(10);
    let mut mine = Vec::new();
    for minute in 0..5 {
        let request =
            RequestRecord::new(RequestId::new_random(), tenant(), 1, None, start + chrono::Duration::minutes(minute));
        table.create(&request, &NO_QUOTA).await.unwrap();
        mine.push(request.request_id);
    }
    table.create(&RequestRecord::new(RequestId::new_random(), other, 1, None, start), &NO_QUOTA).await.unwrap();
    // The index keeps keys only: the listing reads each request's counters as they are now.
    table.record(&job(mine[4], 0), &done(0), Utc::now(), Progress::Made).await.unwrap();

    let (page, next) = table.requests_of(&tenant(), None, 3).await.unwrap();
    let (rest, last) = table.requests_of(&tenant(), next.as_ref(), 3).await.unwrap();
    let listed: Vec<RequestId> = page.iter().chain(&rest).map(|request| request.request_id).collect();
    mine.reverse();
    assert_eq!(listed, mine, "newest first, each once, only the tenant's");
    assert!(next.is_some() && last.is_none());
    assert_eq!((page[0].succeeded, page[0].remaining, page[0].status), (1, 0, RequestStatus::Pending));
}

#[tokio::test]
async fn a_listing_longer_than_one_batch_read_keeps_the_newest_first_order() {
    let table = fresh_table().await;
    let start = Utc::now() - chrono::Duration::hours(1);
    // BatchGetItem reads at most 100 keys: 150 requests take two calls.
    let created = (0..150).map(|second| request_created_at(&table, 1, start + chrono::Duration::seconds(second)));
    let mut mine = join_all(created).await;
    mine.reverse();
    let (listed, next) = table.requests_of(&tenant(), None, 1000).await.unwrap();
    assert_eq!(listed.iter().map(|request| request.request_id).collect::<Vec<_>>(), mine);
    assert_eq!(next, None);
}

#[tokio::test]
async fn an_idempotency_key_is_claimed_once_answered_and_freed_only_by_its_upload() {
    let table = fresh_table().await;
    let key = IdempotencyKey::parse("order-7").unwrap();
    let now = Utc::now();
    let first = IdempotencyRecord::start(tenant(), &key, fingerprint(b"csv", None), now);
    assert_eq!(table.claim_key(&first, now).await.unwrap(), None, "claimed");
    let second = IdempotencyRecord::start(tenant(), &key, fingerprint(b"csv", None), now);
    let held = table.claim_key(&second, now).await.unwrap().expect("held by the first");
    assert_eq!(held.meet(&second.fingerprint, now), Repeat::InProgress);

    let answer = StoredAnswer { request_id: RequestId::new_random(), images: 2, has_webhook: false };
    table.complete_key(&first, &answer).await.unwrap();
    let held = table.claim_key(&second, now).await.unwrap().expect("answered");
    assert_eq!(held.meet(&second.fingerprint, now), Repeat::Replay(answer));
    table.release_key(&second).await.unwrap();
    assert!(table.claim_key(&second, now).await.unwrap().is_some(), "an answered key is not freed");

    let other_key = IdempotencyKey::parse("order-8").unwrap();
    let refused = IdempotencyRecord::start(tenant(), &other_key, fingerprint(b"bad", None), now);
    assert_eq!(table.claim_key(&refused, now).await.unwrap(), None);
    table.release_key(&refused).await.unwrap();
    let corrected = IdempotencyRecord::start(tenant(), &other_key, fingerprint(b"good", None), now);
    assert_eq!(table.claim_key(&corrected, now).await.unwrap(), None, "freed for the corrected upload");
}
