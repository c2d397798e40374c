use std::sync::atomic::Ordering;

use super::*;
use crate::adapters::memory::{MemoryBlobs, MemoryQueue, MemoryTable, MemoryWebhooks};
use crate::domain::http_url::HttpUrl;
use crate::domain::request::{ImageJob, ImageState, RequestStatus};
use crate::ports::{BlobStore, CreateRequest, ReadRequest, ReadResults};
use crate::test_support::{NO_QUOTA, tenant};

const CSV: &str =
    "S. No.,Product Name,Input Image Urls\n1,Shirt,\"https://img.example/a.jpg,https://img.example/b.jpg\"\n";

#[derive(Default)]
struct Fakes {
    table: MemoryTable,
    blobs: MemoryBlobs,
    webhooks: MemoryWebhooks,
    queue: MemoryQueue,
}

impl Fakes {
    async fn request(&self, age: chrono::Duration) -> RequestId {
        self.request_with(age, CSV, None).await
    }

    /// A request of `csv`'s images, created `age` ago with no progress since.
    async fn request_with(&self, age: chrono::Duration, csv: &str, hook: Option<&str>) -> RequestId {
        let id = RequestId::new_random();
        let hook = hook.map(|url| HttpUrl::parse(url).unwrap());
        let request = RequestRecord::new(id, tenant(), count_images(csv), hook, Utc::now() - age);
        self.blobs.put(&request.input_csv_key, csv.into(), "text/csv").await.unwrap();
        self.table.create(&request, &NO_QUOTA).await.unwrap();
        id
    }

    async fn sweep(&self) -> SweepReport {
        self.sweep_within(Duration::from_secs(60)).await
    }

    async fn sweep_within(&self, budget: Duration) -> SweepReport {
        let table = &self.table;
        let finish = FinishPorts::with_table(table, &self.blobs, &self.webhooks);
        let ports = SweepPorts { idle: table, recorder: table, backlog: &self.queue, finish };
        let links = Links::Presigned { lifetime: Duration::from_secs(60) };
        run_sweep(ports, Duration::from_secs(900), &links, Utc::now(), Instant::now() + budget).await
    }

    async fn status(&self, id: RequestId) -> RequestStatus {
        self.table.get(id).await.unwrap().unwrap().status
    }
}

fn count_images(csv: &str) -> u64 {
    csv.matches("https://").count() as u64
}

fn job(id: RequestId, index: u32) -> ImageJob {
    let url = HttpUrl::parse(&format!("https://img.example/{}.jpg", ["a", "b"][index as usize])).unwrap();
    ImageJob { request_id: id, tenant_id: tenant(), image_index: index, row: 0, url }
}

fn done(index: u32) -> ImageOutcome {
    ImageOutcome::Done { output_key: format!("out/{index}.jpg"), bytes_in: 9, bytes_out: 4, note: None }
}

#[tokio::test]
async fn a_stuck_request_has_its_pending_images_timed_out_and_ends() {
    let fakes = Fakes::default();
    let stuck = fakes.request(chrono::Duration::minutes(20)).await;
    let at = Utc::now() - chrono::Duration::minutes(16);
    fakes.table.record(&job(stuck, 0), &done(0), at, Progress::Made).await.unwrap();
    let recent = fakes.request(chrono::Duration::minutes(1)).await;

    let report = fakes.sweep().await;

    assert_eq!(
        report,
        SweepReport { requests_finished: 1, images_timed_out: 1, webhooks_tried: 0, ..Default::default() }
    );
    let stuck_request = fakes.table.get(stuck).await.unwrap().unwrap();
    assert_eq!(stuck_request.status, RequestStatus::CompletedWithErrors);
    let images = fakes.table.recorded_images(stuck).await.unwrap();
    assert_eq!(images[1].input_url.as_str(), "https://img.example/b.jpg", "rebuilt from the CSV");
    assert_eq!(images[1].error_code.as_deref(), Some(TIMED_OUT));
    assert_eq!(images[0].state, ImageState::Done, "recorded results are kept");
    assert_eq!(fakes.status(recent).await, RequestStatus::Pending, "recent progress is left alone");
}

#[tokio::test]
async fn a_finished_request_that_missed_its_stream_record_is_finished() {
    let fakes = Fakes::default();
    let id = fakes.request(chrono::Duration::minutes(30)).await;
    for index in 0..2 {
        let at = Utc::now() - chrono::Duration::minutes(20);
        fakes.table.record(&job(id, index), &done(index), at, Progress::Made).await.unwrap();
    }

    let report = fakes.sweep().await;

    assert_eq!(
        report,
        SweepReport { requests_finished: 1, images_timed_out: 0, webhooks_tried: 0, ..Default::default() }
    );
    assert_eq!(fakes.status(id).await, RequestStatus::Completed);
    assert_eq!(fakes.sweep().await, SweepReport::default(), "a second sweep changes nothing");
}

#[tokio::test]
async fn a_request_without_its_csv_is_failed() {
    let fakes = Fakes::default();
    let id = RequestId::new_random();
    fakes
        .table
        .create(&RequestRecord::new(id, tenant(), 2, None, Utc::now() - chrono::Duration::hours(1)), &NO_QUOTA)
        .await
        .unwrap();

    assert_eq!(fakes.sweep().await.requests_finished, 1);
    assert_eq!(fakes.status(id).await, RequestStatus::Failed);
}

#[tokio::test]
async fn one_request_that_cannot_be_swept_holds_up_neither_the_others_nor_the_webhooks() {
    let fakes = Fakes::default();
    let broken = fakes.request(chrono::Duration::minutes(40)).await;
    fakes.table.refused_results.lock().unwrap().insert(broken);
    let other = fakes.request(chrono::Duration::minutes(30)).await;
    let hooked = fakes.request_with(chrono::Duration::hours(2), CSV, Some("https://hooks.example/a")).await;
    fakes.table.edit(hooked, |request| request.status = RequestStatus::Failed);
    fakes.table.edit(hooked, |request| request.webhook_next_at = Some(Utc::now() - chrono::Duration::minutes(1)));

    let report = fakes.sweep().await;

    assert_eq!((report.errors, report.requests_finished, report.webhooks_tried), (1, 1, 1), "{report:?}");
    assert_eq!(fakes.status(other).await, RequestStatus::Failed, "its two images timed out");
    assert_eq!(fakes.status(broken).await, RequestStatus::Pending, "tried again next time");
    assert_eq!(fakes.webhooks.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_request_that_cannot_be_swept_several_times_in_a_row_is_failed_with_the_reason() {
    let fakes = Fakes::default();
    let broken = fakes.request_with(chrono::Duration::minutes(40), CSV, Some("https://hooks.example/a")).await;
    fakes.table.refused_results.lock().unwrap().insert(broken);

    for run in 1..MAX_SWEEP_FAILURES {
        assert_eq!(fakes.sweep().await.requests_given_up, 0, "run {run}");
    }
    let last = fakes.sweep().await;

    assert_eq!((last.errors, last.requests_given_up), (1, 1));
    let request = fakes.table.get(broken).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Failed);
    assert!(request.failure_reason.unwrap().contains("could not be swept 5 times in a row"));
    assert_eq!(fakes.sweep().await, SweepReport::default(), "final: never swept again");
    let sent = fakes.webhooks.sent.lock().unwrap();
    assert_eq!(sent.len(), 1, "its webhook is sent once");
    assert_eq!((sent[0].1.status, sent[0].1.output_csv_url.as_deref()), (RequestStatus::Failed, None));
}

#[tokio::test]
async fn a_request_failed_without_its_images_announces_it_once() {
    let fakes = Fakes::default();
    let id = RequestId::new_random();
    let hook = HttpUrl::parse("https://hooks.example/a").unwrap();
    let request = RequestRecord::new(id, tenant(), 2, Some(hook), Utc::now() - chrono::Duration::hours(1));
    fakes.table.create(&request, &NO_QUOTA).await.unwrap();

    fakes.sweep().await;
    fakes.sweep().await;

    let sent = fakes.webhooks.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1.request_id, sent[0].1.status), (id, RequestStatus::Failed));
    assert!(sent[0].1.failure_reason.as_deref().unwrap().contains("input CSV"));
}

#[tokio::test]
async fn a_backlog_is_not_idleness_but_lost_jobs_still_end() {
    let fakes = Fakes::default();
    let waiting = fakes.request(chrono::Duration::minutes(30)).await;
    let all_recorded = fakes.request(chrono::Duration::minutes(30)).await;
    for index in 0..2 {
        let at = Utc::now() - chrono::Duration::minutes(20);
        fakes.table.record(&job(all_recorded, index), &done(index), at, Progress::Made).await.unwrap();
    }
    fakes.queue.waiting.store(5_000, Ordering::SeqCst);

    let report = fakes.sweep().await;

    assert_eq!((report.waiting_on_backlog, report.images_timed_out, report.requests_finished), (1, 0, 1));
    assert_eq!(fakes.status(waiting).await, RequestStatus::Pending);
    assert_eq!(fakes.status(all_recorded).await, RequestStatus::Completed, "it needs nothing from the queue");

    fakes.queue.waiting.store(0, Ordering::SeqCst);
    let report = fakes.sweep().await;
    assert_eq!((report.images_timed_out, report.requests_finished), (2, 1));
    assert_eq!(fakes.status(waiting).await, RequestStatus::Failed);
}

#[tokio::test]
async fn a_large_sweep_resumes_where_it_stopped_and_its_own_results_are_not_progress() {
    let fakes = Fakes::default();
    let urls: Vec<String> = (0..3_000).map(|i| format!("https://img.example/{i}.jpg")).collect();
    let csv = format!("S. No.,Product Name,Input Image Urls\n1,Shirt,\"{}\"\n", urls.join(","));
    let id = fakes.request_with(chrono::Duration::minutes(30), &csv, None).await;
    let created = fakes.table.get(id).await.unwrap().unwrap().updated_at;
    fakes.table.record_delay.store(1, Ordering::SeqCst);

    let first = fakes.sweep_within(Duration::from_millis(600)).await;

    assert_eq!(first.left_for_next_run, 1, "{first:?}");
    assert!(first.images_timed_out > 0 && first.images_timed_out < 3_000, "{first:?}");
    let request = fakes.table.get(id).await.unwrap().unwrap();
    assert_eq!((request.status, request.updated_at), (RequestStatus::Pending, created), "still idle");

    let mut timed_out = first.images_timed_out;
    for _ in 0..100 {
        if fakes.status(id).await.is_final() {
            break;
        }
        timed_out += fakes.sweep_within(Duration::from_millis(600)).await.images_timed_out;
    }
    assert_eq!(timed_out, 3_000, "each image timed out once");
    assert_eq!(fakes.status(id).await, RequestStatus::Failed);
    assert_eq!(fakes.table.recorded_images(id).await.unwrap().len(), 3_000);
}
