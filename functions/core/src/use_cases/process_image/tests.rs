use std::io::Cursor;

use chrono::Utc;

use super::*;
use crate::adapters::memory::{MemoryBlobs, MemoryFetcher, MemoryTable};
use crate::domain::http_url::HttpUrl;
use crate::domain::request::{ImageState, RequestRecord};
use crate::domain::request_id::RequestId;
use crate::ports::{CreateRequest, ReadRequest, ReadResults};
use crate::test_support::{NO_QUOTA, tenant};

fn png_bytes() -> Vec<u8> {
    let image = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]));
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

struct Fixture {
    fetcher: MemoryFetcher,
    blobs: MemoryBlobs,
    table: MemoryTable,
    job: ImageJob,
}

impl Fixture {
    async fn new(response: Result<Vec<u8>, u16>) -> Self {
        let url = HttpUrl::parse("https://img.example/a.png").unwrap();
        let request_id = RequestId::new_random();
        let table = MemoryTable::default();
        let request = RequestRecord::new(request_id, tenant(), 1, None, Utc::now());
        table.create(&request, &NO_QUOTA).await.unwrap();
        let fetcher = MemoryFetcher { responses: [(url.to_string(), response)].into(), ..Default::default() };
        let job = ImageJob { request_id, tenant_id: tenant(), image_index: 0, row: 0, url };
        Self { fetcher, blobs: MemoryBlobs::default(), table, job }
    }

    async fn run(&self, last_attempt: bool) -> JobResult {
        self.run_with(&CodecPool::new(CodecLimits::default(), 1), last_attempt).await
    }

    async fn run_with(&self, codec: &CodecPool, last_attempt: bool) -> JobResult {
        self.run_until(codec, last_attempt, &plenty_of_time()).await
    }

    async fn run_until(&self, codec: &CodecPool, last_attempt: bool, clock: &JobClock) -> JobResult {
        let ports =
            ProcessPorts { fetcher: &self.fetcher, blobs: &self.blobs, recorder: &self.table, results: &self.table };
        process_image(ports, &FetchJob::from(self.job.clone()), codec, last_attempt, clock).await
    }

    async fn request(&self) -> RequestRecord {
        self.table.get(self.job.request_id).await.unwrap().unwrap()
    }
}

fn reserves() -> TimeReserves {
    TimeReserves { fetch: Duration::from_secs(5), codec: Duration::from_secs(3), store: Duration::from_secs(4) }
}

fn plenty_of_time() -> JobClock {
    JobClock { deadline: Instant::now() + Duration::from_secs(60), reserves: reserves() }
}

#[tokio::test]
async fn an_image_is_compressed_stored_and_counted() {
    let fixture = Fixture::new(Ok(png_bytes())).await;
    assert!(matches!(fixture.run(false).await, JobResult::Recorded(ImageOutcome::Done { .. })));

    let key = output_image_key(&tenant(), fixture.job.request_id, 0);
    let stored = fixture.blobs.objects.lock().unwrap().get(&key).cloned().unwrap();
    assert_eq!(stored.1, "image/jpeg");
    assert_eq!(image::guess_format(&stored.0).unwrap(), image::ImageFormat::Jpeg);
    let request = fixture.request().await;
    assert_eq!((request.succeeded, request.failed, request.remaining), (1, 0, 0));
}

#[tokio::test]
async fn decoding_waits_for_a_free_codec_slot() {
    let fixture = Fixture::new(Ok(png_bytes())).await;
    let codec = CodecPool::new(CodecLimits::default(), 1);
    let held = codec.slots.acquire().await.unwrap();
    let mut run = std::pin::pin!(fixture.run_with(&codec, false));
    let waited = tokio::time::timeout(Duration::from_millis(200), &mut run).await;
    assert!(waited.is_err(), "the job finished while the only codec slot was taken");
    assert!(fixture.blobs.objects.lock().unwrap().is_empty(), "nothing stored before decoding");
    drop(held);
    assert!(matches!(run.await, JobResult::Recorded(ImageOutcome::Done { .. })));
    assert_eq!(fixture.request().await.succeeded, 1);
}

#[tokio::test]
async fn duplicate_delivery_counts_once() {
    let fixture = Fixture::new(Ok(png_bytes())).await;
    fixture.run(false).await;
    assert!(matches!(fixture.run(false).await, JobResult::Duplicate));
    let request = fixture.request().await;
    assert_eq!((request.succeeded, request.remaining), (1, 0));
}

#[tokio::test]
async fn a_duplicate_delivery_is_not_fetched_compressed_or_stored_again() {
    let fixture = Fixture::new(Ok(png_bytes())).await;
    fixture.run(false).await;
    fixture.blobs.objects.lock().unwrap().clear();
    assert!(matches!(fixture.run(false).await, JobResult::Duplicate));
    assert_eq!(fixture.fetcher.fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "fetched once");
    assert!(fixture.blobs.objects.lock().unwrap().is_empty(), "nothing uploaded again");
}

#[tokio::test]
async fn a_job_that_waited_too_long_for_the_codec_is_handed_back_before_decoding() {
    let fixture = Fixture::new(Ok(png_bytes())).await;
    let codec = CodecPool::new(CodecLimits::default(), 1);
    let held = codec.slots.acquire().await.unwrap();
    // Time enough to start, but the codec slot is held until less than decode + store is left.
    let clock = JobClock { deadline: Instant::now() + Duration::from_millis(7_300), reserves: reserves() };
    let mut run = std::pin::pin!(fixture.run_until(&codec, false, &clock));
    assert!(tokio::time::timeout(Duration::from_millis(400), &mut run).await.is_err(), "waits for the slot");
    drop(held);
    assert!(matches!(run.await, JobResult::OutOfTime));
    assert!(fixture.blobs.objects.lock().unwrap().is_empty(), "nothing stored");
    assert_eq!(fixture.request().await.remaining, 1, "nothing recorded");
}

#[tokio::test]
async fn a_slow_download_that_leaves_no_time_to_decode_is_handed_back() {
    let mut fixture = Fixture::new(Ok(png_bytes())).await;
    fixture.fetcher.delay = Duration::from_millis(300);
    let clock = JobClock { deadline: Instant::now() + Duration::from_millis(7_200), reserves: reserves() };
    let result = fixture.run_until(&CodecPool::new(CodecLimits::default(), 1), false, &clock).await;
    assert!(matches!(result, JobResult::OutOfTime), "{result:?}");
    assert!(fixture.blobs.objects.lock().unwrap().is_empty(), "nothing stored");
    assert_eq!(fixture.request().await.remaining, 1, "nothing recorded");
}

#[tokio::test]
async fn a_decode_that_leaves_no_time_to_store_is_handed_back_before_the_upload() {
    // 9 MP of noise takes well over 50 ms to decode and encode.
    let mut seed = 1u32;
    let noise = image::RgbImage::from_fn(3000, 3000, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        image::Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
    });
    let mut png = Vec::new();
    noise.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let fixture = Fixture::new(Ok(png)).await;
    let reserves = TimeReserves { codec: Duration::ZERO, ..reserves() };
    let clock = JobClock { deadline: Instant::now() + reserves.to_store() + Duration::from_millis(50), reserves };
    let result = fixture.run_until(&CodecPool::new(CodecLimits::default(), 1), false, &clock).await;
    assert!(matches!(result, JobResult::OutOfTime), "{result:?}");
    assert!(fixture.blobs.objects.lock().unwrap().is_empty(), "nothing stored");
    assert_eq!(fixture.request().await.remaining, 1, "nothing recorded");
}

#[tokio::test]
async fn a_missing_image_is_recorded_as_failed_not_retried() {
    let fixture = Fixture::new(Err(404)).await;
    let JobResult::Recorded(ImageOutcome::Failed { error_code, .. }) = fixture.run(false).await else {
        panic!("a 404 must be recorded");
    };
    assert_eq!(error_code, "http_status_404");
    assert_eq!(fixture.request().await.failed, 1);
}

#[tokio::test]
async fn not_an_image_is_recorded_as_failed() {
    let fixture = Fixture::new(Ok(b"<html><body>nope</body></html>".to_vec())).await;
    let JobResult::Recorded(ImageOutcome::Failed { error_code, .. }) = fixture.run(false).await else {
        panic!("HTML must be recorded as a failure");
    };
    assert_eq!(error_code, "not_an_image");
}

#[tokio::test]
async fn a_server_error_is_retried_until_the_last_attempt() {
    let fixture = Fixture::new(Err(503)).await;
    assert!(matches!(fixture.run(false).await, JobResult::Retry(_)));
    assert_eq!(fixture.request().await.remaining, 1, "a retry records nothing");

    let JobResult::Recorded(ImageOutcome::Failed { error_code, .. }) = fixture.run(true).await else {
        panic!("the last attempt must record a result");
    };
    assert_eq!(error_code, RETRIES_EXHAUSTED);
    let images = fixture.table.recorded_images(fixture.job.request_id).await.unwrap();
    assert_eq!(images[0].state, ImageState::Failed);
}

#[tokio::test]
async fn a_codec_panic_fails_that_image_only_and_the_pool_goes_on() {
    let marker = "test-fault-marker";
    let codec = CodecPool::new(CodecLimits::default(), 1).with_panic_marker(PanicMarker::new(marker));
    let marked = Fixture::new(Ok([png_bytes(), marker.as_bytes().to_vec()].concat())).await;
    let JobResult::Recorded(ImageOutcome::Failed { error_code, error_message }) = marked.run_with(&codec, false).await
    else {
        panic!("a codec panic must be recorded as the image's failure");
    };
    assert_eq!(error_code, "decode_error");
    assert!(error_message.contains("crashed"), "{error_message}");

    let plain = Fixture::new(Ok(png_bytes())).await;
    assert!(matches!(plain.run_with(&codec, false).await, JobResult::Recorded(ImageOutcome::Done { .. })));
}

#[tokio::test]
async fn a_job_of_a_cancelled_request_is_acknowledged_without_a_download() {
    let fixture = Fixture::new(Ok(png_bytes())).await;
    let seen = fixture.request().await;
    let ending = crate::domain::request::FinalState::cancelled(&seen, Utc::now());
    crate::ports::MoveRequest::cancel(&fixture.table, &seen, &ending, Utc::now()).await.unwrap();

    assert!(matches!(fixture.run(false).await, JobResult::Duplicate));
    assert_eq!(fixture.fetcher.fetches.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing fetched");
    assert!(fixture.blobs.objects.lock().unwrap().is_empty(), "nothing stored");
    assert_eq!(fixture.request().await.cancelled, 1);
}
