use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::adapters::memory::MemoryTable;
use crate::domain::fetch_jobs::Slot;
use crate::domain::http_url::HttpUrl;
use crate::domain::request::{FinalState, ImageState, RequestRecord};
use crate::ports::{CreateRequest, MoveRequest, ReadRequest, ReadResults};
use crate::test_support::{NO_QUOTA, tenant};

async fn request(table: &MemoryTable, images: u64) -> RequestId {
    let id = RequestId::new_random();
    table.create(&RequestRecord::new(id, tenant(), images, None, Utc::now()), &NO_QUOTA).await.unwrap();
    id
}

/// The job of `url`'s images `indexes` of request `id`.
fn job(id: RequestId, url: &str, indexes: &[u32]) -> FetchJob {
    let images = indexes.iter().map(|&image_index| Slot { image_index, row: image_index }).collect();
    let url = HttpUrl::parse(&format!("https://img.example/{url}")).unwrap();
    FetchJob { request_id: id, tenant_id: tenant(), url, images }
}

fn done(key: &str) -> ImageOutcome {
    ImageOutcome::Done { output_key: key.into(), bytes_in: 10, bytes_out: 5, note: None }
}

fn missing() -> ImageOutcome {
    ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() }
}

async fn counts(table: &MemoryTable, id: RequestId) -> (u64, u64, u64) {
    let request = table.get(id).await.unwrap().unwrap();
    (request.succeeded, request.failed, request.remaining)
}

fn transitions(answers: Vec<Result<Transition, StoreError>>) -> Vec<Transition> {
    answers.into_iter().map(Result::unwrap).collect()
}

#[tokio::test]
async fn the_results_of_one_request_in_a_batch_are_one_write_and_every_image_gets_its_jobs_result() {
    let table = MemoryTable::default();
    let id = request(&table, 5).await;
    let (logo, shirt, gone) = (job(id, "logo.png", &[0, 2, 3]), job(id, "shirt.jpg", &[1]), job(id, "x.jpg", &[4]));
    let (logo_out, shirt_out) = (done("out/0.jpg"), done("out/1.jpg"));
    let answers = record_results(&table, &[(&logo, &logo_out), (&shirt, &shirt_out), (&gone, &missing())]).await;

    assert_eq!(transitions(answers), [Transition::Applied; 3]);
    assert_eq!(table.result_writes.load(Ordering::SeqCst), 1, "one write");
    assert_eq!(counts(&table, id).await, (4, 1, 0));
    let images = table.recorded_images(id).await.unwrap();
    let keys: Vec<Option<&str>> = images.iter().map(|image| image.output_key.as_deref()).collect();
    assert_eq!(keys, [Some("out/0.jpg"), Some("out/1.jpg"), Some("out/0.jpg"), Some("out/0.jpg"), None]);
    assert_eq!((images[4].state, images[4].error_code.as_deref()), (ImageState::Failed, Some("http_status_404")));
}

#[tokio::test]
async fn a_write_cancelled_by_a_duplicate_records_each_image_alone_and_counts_each_once() {
    let table = MemoryTable::default();
    let id = request(&table, 4).await;
    let (first, second) = (job(id, "a.jpg", &[0, 1]), job(id, "b.jpg", &[2, 3]));
    let outcome = done("out/a.jpg");
    // The first job's second image has its result already: an earlier delivery's one-by-one
    // records were cut short by a crash, say.
    table.record(&first.image_jobs().nth(1).unwrap(), &outcome, Utc::now(), Progress::Made).await.unwrap();

    let answers = record_results(&table, &[(&first, &outcome), (&second, &outcome)]).await;
    assert_eq!(transitions(answers), [Transition::Applied, Transition::Applied]);
    assert_eq!(counts(&table, id).await, (4, 0, 0), "image 1 counted once");

    let again = record_results(&table, &[(&first, &outcome), (&second, &outcome)]).await;
    assert_eq!(transitions(again), [Transition::AlreadyDone; 2]);
    assert_eq!(counts(&table, id).await, (4, 0, 0));
}

#[tokio::test]
async fn the_results_of_a_request_that_became_final_are_dropped() {
    let table = MemoryTable::default();
    let id = request(&table, 2).await;
    let seen = table.get(id).await.unwrap().unwrap();
    table.cancel(&seen, &FinalState::cancelled(&seen, Utc::now()), Utc::now()).await.unwrap();

    let answers = record_results(&table, &[(&job(id, "a.jpg", &[0, 1]), &done("out/a.jpg"))]).await;
    assert_eq!(transitions(answers), [Transition::AlreadyDone]);
    assert!(table.recorded_images(id).await.unwrap().is_empty());
    assert_eq!(table.get(id).await.unwrap().unwrap().cancelled, 2);
}

#[tokio::test]
async fn a_job_delivered_twice_in_one_batch_is_recorded_once() {
    let table = MemoryTable::default();
    let id = request(&table, 2).await;
    let twice = job(id, "a.jpg", &[0, 1]);
    let outcome = done("out/a.jpg");
    let answers = record_results(&table, &[(&twice, &outcome), (&twice, &outcome)]).await;
    assert_eq!(transitions(answers), [Transition::Applied, Transition::AlreadyDone]);
    assert_eq!(counts(&table, id).await, (2, 0, 0));
}

#[tokio::test]
async fn more_images_than_one_write_holds_and_other_requests_get_writes_of_their_own() {
    let table = MemoryTable::default();
    let (id, other) = (request(&table, 101).await, request(&table, 1).await);
    let many: Vec<u32> = (0..MAX_RESULTS_PER_WRITE as u32).collect();
    let (logo, shirt, elsewhere) =
        (job(id, "logo.png", &many), job(id, "a.jpg", &[99, 100]), job(other, "b.jpg", &[0]));
    let outcome = done("out/logo.jpg");
    let answers = record_results(&table, &[(&logo, &outcome), (&elsewhere, &outcome), (&shirt, &outcome)]).await;

    assert_eq!(transitions(answers), [Transition::Applied; 3]);
    assert_eq!(table.result_writes.load(Ordering::SeqCst), 3, "99 + 2 images of one request, 1 of another");
    assert_eq!(counts(&table, id).await, (101, 0, 0));
    assert_eq!(counts(&table, other).await, (1, 0, 0));
}

#[tokio::test]
async fn an_outage_fails_every_job_of_the_write_and_records_nothing() {
    let table = MemoryTable::default();
    let id = request(&table, 2).await;
    table.outage.set(true);
    let (a, b) = (job(id, "a.jpg", &[0]), job(id, "b.jpg", &[1]));
    let answers = record_results(&table, &[(&a, &done("out/a.jpg")), (&b, &missing())]).await;
    assert!(answers.iter().all(|answer| answer.as_ref().is_err_and(StoreError::is_transient)), "{answers:?}");
    table.outage.set(false);
    assert_eq!(counts(&table, id).await, (0, 0, 2));
}

fn ready(job: &FetchJob, latest: Instant, tag: u32) -> Ready<u32> {
    Ready { job: job.clone(), outcome: done("out/x.jpg"), latest, tag }
}

/// Waits (up to 5 s) until the table has taken `writes` writes of results.
async fn writes_reach(table: &MemoryTable, writes: u32) {
    let reached = async {
        while table.result_writes.load(Ordering::SeqCst) < writes {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reached).await.expect("the writes were made");
}

#[tokio::test]
async fn results_ready_within_the_window_are_one_write_and_a_late_one_does_not_hold_them_back() {
    let table = MemoryTable::default();
    let id = request(&table, 3).await;
    let (a, b, late) = (job(id, "a.jpg", &[0]), job(id, "b.jpg", &[1]), job(id, "c.jpg", &[2]));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let far = Instant::now() + Duration::from_secs(600);
    let arrive = async {
        tx.send(ready(&a, far, 0)).unwrap();
        tx.send(ready(&b, far, 1)).unwrap();
        // The late one (a slow download, say) is still running when the window ends.
        writes_reach(&table, 1).await;
        assert_eq!(counts(&table, id).await, (2, 0, 1), "the first two recorded together");
        tx.send(ready(&late, far, 2)).unwrap();
        drop(tx);
    };
    let ((), answers) = tokio::join!(arrive, record_as_they_come(&table, rx, Duration::from_millis(100)));

    let tags: Vec<u32> = answers.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(tags, [0, 1, 2]);
    assert!(answers.iter().all(|(_, answer)| matches!(answer, Ok(Transition::Applied))));
    assert_eq!(table.result_writes.load(Ordering::SeqCst), 2);
    assert_eq!(counts(&table, id).await, (3, 0, 0));
}

#[tokio::test]
async fn a_result_near_its_lambdas_deadline_is_recorded_without_waiting_for_the_window() {
    let table = MemoryTable::default();
    let id = request(&table, 2).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let table = &table;
    let arrive = async move {
        tx.send(ready(&job(id, "a.jpg", &[0]), Instant::now(), 0)).unwrap();
        writes_reach(table, 1).await;
        tx.send(ready(&job(id, "b.jpg", &[1]), Instant::now() + Duration::from_secs(600), 1)).unwrap();
    };
    // The window is ten minutes and the channel open until the first result is recorded: only
    // its own deadline makes it recorded; once the channel closes, the second one is too.
    let record = record_as_they_come(table, rx, Duration::from_secs(600));
    let answers = tokio::time::timeout(Duration::from_secs(5), async {
        let ((), answers) = tokio::join!(arrive, record);
        answers
    })
    .await
    .expect("recorded without waiting for the window");
    assert_eq!(answers.len(), 2);
    assert_eq!(table.result_writes.load(Ordering::SeqCst), 2);
}
