//! One image job: fetch, compress, store, then record the result once.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;

use crate::domain::codec::{self, CodecError, CodecLimits, Compressed, PanicMarker};
use crate::domain::delivery::TimeReserves;
use crate::domain::errors::{ImageError, RETRIES_EXHAUSTED};
use crate::domain::locations::output_image_key;
use crate::domain::request::{ImageJob, ImageOutcome, Progress, Transition};
use crate::ports::{BlobStore, Fetcher, ReadResults, RecordResult};

/// What the queue should do with the job's message.
#[derive(Debug)]
pub enum JobResult {
    /// The result is recorded (or was already): delete the message.
    Recorded(ImageOutcome),
    /// Another delivery of this job recorded its result first: delete the message.
    Duplicate,
    /// A transient failure with attempts left: let the queue deliver it again.
    Retry(ImageError),
    /// Not enough time left before the Lambda is stopped to finish it: deliver it again at once.
    OutOfTime,
}

pub struct ProcessPorts<'a> {
    pub fetcher: &'a dyn Fetcher,
    pub blobs: &'a dyn BlobStore,
    pub recorder: &'a dyn RecordResult,
    /// To find a result recorded by an earlier delivery before doing the work again.
    pub results: &'a dyn ReadResults,
}

/// When the Lambda running the job is stopped, and what each step needs left of it.
#[derive(Clone, Copy, Debug)]
pub struct JobClock {
    pub deadline: Instant,
    pub reserves: TimeReserves,
}

impl JobClock {
    fn has_left(&self, needed: Duration) -> bool {
        self.deadline.saturating_duration_since(Instant::now()) >= needed
    }
}

/// The codec as the worker runs it: its limits, and how many images it decodes at once.
///
/// Fetches and uploads wait on the network and overlap freely, but decoding is CPU and memory:
/// a Lambda below 1,769 MB has less than one vCPU, so two images decoded at once take as long
/// as one after the other, while each holds its pixels (up to ~250 MB for a 50 MP image). With
/// one slot a batch's peak memory is one image's decode plus the fetched files waiting.
///
/// A panic while compressing (a decoder bug) fails that image only: the codec runs on a
/// blocking thread, whose panic unwinds into a `JoinError` here. That needs `panic = "unwind"`
/// in the release profile (Cargo.toml); tests/release_stack proves it on a release build.
pub struct CodecPool {
    limits: CodecLimits,
    slots: Semaphore,
    fault: PanicMarker,
}

impl CodecPool {
    pub fn new(limits: CodecLimits, slots: usize) -> Self {
        Self { limits, slots: Semaphore::new(slots.max(1)), fault: PanicMarker::default() }
    }

    /// Arms the test-only fault hook (CODEC_PANIC_MARKER): marked inputs make the codec panic.
    pub fn with_panic_marker(self, fault: PanicMarker) -> Self {
        Self { fault, ..self }
    }

    /// `codec::compress` on a blocking thread once a slot is free, if the clock still leaves
    /// time to decode and store; logs the wait.
    async fn compress(&self, job: &ImageJob, input: Vec<u8>, clock: &JobClock) -> Result<Compressed, Stop> {
        let stage = Stage::start(job, "codec_wait");
        let _slot = self.slots.acquire().await.expect("the codec semaphore is never closed");
        stage.end();
        if !clock.has_left(clock.reserves.to_decode()) {
            return Err(Stop::OutOfTime);
        }
        let (limits, fault) = (self.limits.clone(), self.fault.clone());
        let compressed = tokio::task::spawn_blocking(move || {
            fault.panic_if_marked(&input);
            codec::compress(&input, &limits)
        })
        .await
        .map_err(|panic| CodecError::Decode(format!("the decoder crashed: {panic}")))?;
        Ok(compressed?)
    }
}

/// Why a job stopped before its result.
enum Stop {
    Failed(ImageError),
    OutOfTime,
}

impl<E: Into<ImageError>> From<E> for Stop {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}

/// `last_attempt` is true when the queue will not deliver this message again: a transient
/// failure is then recorded as the image's final result rather than lost to the DLQ.
pub async fn process_image(
    ports: ProcessPorts<'_>,
    job: &ImageJob,
    codec: &CodecPool,
    last_attempt: bool,
    clock: &JobClock,
) -> JobResult {
    // A duplicate delivery costs one read, not a download, a decode and an upload.
    match ports.results.recorded_images_between(job.request_id, job.image_index, job.image_index).await {
        Ok(recorded) if !recorded.is_empty() => return JobResult::Duplicate,
        Ok(_) => {}
        Err(error) => return JobResult::Retry(error.into()),
    }
    let outcome = match compress_and_store(&ports, job, codec, clock).await {
        Ok(done) => done,
        Err(Stop::OutOfTime) => return JobResult::OutOfTime,
        Err(Stop::Failed(error)) if error.is_transient() && !last_attempt => return JobResult::Retry(error),
        Err(Stop::Failed(error)) if error.is_transient() => ImageOutcome::Failed {
            error_code: RETRIES_EXHAUSTED.into(),
            error_message: format!("gave up after the last attempt: {error}"),
        },
        Err(Stop::Failed(error)) => ImageOutcome::Failed { error_code: error.code(), error_message: error.to_string() },
    };
    let started = Instant::now();
    let recorded = ports.recorder.record(job, &outcome, Utc::now(), Progress::Made).await;
    tracing::info!(
        request_id = %job.request_id,
        image_index = job.image_index,
        stage = "record",
        duration_ms = milliseconds(started.elapsed()),
        state = outcome.state().as_str(),
    );
    match recorded {
        Ok(Transition::Applied) => JobResult::Recorded(outcome),
        Ok(Transition::AlreadyDone) => JobResult::Duplicate,
        Err(error) => JobResult::Retry(error.into()),
    }
}

async fn compress_and_store(
    ports: &ProcessPorts<'_>,
    job: &ImageJob,
    codec: &CodecPool,
    clock: &JobClock,
) -> Result<ImageOutcome, Stop> {
    let stage = Stage::start(job, "fetch");
    let input = ports.fetcher.fetch(&job.url).await?;
    stage.end();
    let bytes_in = input.len() as u64;

    let compressed = codec.compress(job, input, clock).await?;
    log_stage(job, "decode", compressed.timings.decode);
    log_stage(job, "encode", compressed.timings.encode);

    if !clock.has_left(clock.reserves.to_store()) {
        return Err(Stop::OutOfTime);
    }
    let stage = Stage::start(job, "upload");
    let output_key = output_image_key(job.request_id, job.image_index);
    let bytes_out = compressed.jpeg.len() as u64;
    let note = compressed.note();
    ports.blobs.put(&output_key, compressed.jpeg, "image/jpeg").await?;
    stage.end();
    Ok(ImageOutcome::Done { output_key, bytes_in, bytes_out, note })
}

/// Logs one line per stage with its duration, for the person on call.
struct Stage<'a> {
    job: &'a ImageJob,
    name: &'static str,
    started: Instant,
}

impl<'a> Stage<'a> {
    fn start(job: &'a ImageJob, name: &'static str) -> Self {
        Self { job, name, started: Instant::now() }
    }

    fn end(self) {
        log_stage(self.job, self.name, self.started.elapsed());
    }
}

/// One line per stage: fetch, codec_wait, decode, encode, upload (and record, with the state). The load
/// benchmark summarises them (`make bench-pipeline`).
fn log_stage(job: &ImageJob, stage: &'static str, duration: Duration) {
    tracing::info!(
        request_id = %job.request_id,
        image_index = job.image_index,
        stage,
        duration_ms = milliseconds(duration),
    );
}

/// Milliseconds with microsecond resolution: small images take less than one.
fn milliseconds(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryFetcher, MemoryTable};
    use crate::domain::http_url::HttpUrl;
    use crate::domain::request::{ImageState, RequestRecord};
    use crate::domain::request_id::RequestId;
    use crate::ports::{CreateRequest, ReadRequest, ReadResults};

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
            let request = RequestRecord::new(request_id, 1, None, Utc::now());
            table.create(&request).await.unwrap();
            let fetcher = MemoryFetcher { responses: [(url.to_string(), response)].into(), ..Default::default() };
            let job = ImageJob { request_id, image_index: 0, row: 0, url };
            Self { fetcher, blobs: MemoryBlobs::default(), table, job }
        }

        async fn run(&self, last_attempt: bool) -> JobResult {
            self.run_with(&CodecPool::new(CodecLimits::default(), 1), last_attempt).await
        }

        async fn run_with(&self, codec: &CodecPool, last_attempt: bool) -> JobResult {
            self.run_until(codec, last_attempt, &plenty_of_time()).await
        }

        async fn run_until(&self, codec: &CodecPool, last_attempt: bool, clock: &JobClock) -> JobResult {
            let ports = ProcessPorts {
                fetcher: &self.fetcher,
                blobs: &self.blobs,
                recorder: &self.table,
                results: &self.table,
            };
            process_image(ports, &self.job, codec, last_attempt, clock).await
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

        let key = output_image_key(fixture.job.request_id, 0);
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
    async fn a_codec_panic_fails_that_image_only_and_the_pool_goes_on() {
        let marker = "test-fault-marker";
        let codec = CodecPool::new(CodecLimits::default(), 1).with_panic_marker(PanicMarker::new(marker));
        let marked = Fixture::new(Ok([png_bytes(), marker.as_bytes().to_vec()].concat())).await;
        let JobResult::Recorded(ImageOutcome::Failed { error_code, error_message }) =
            marked.run_with(&codec, false).await
        else {
            panic!("a codec panic must be recorded as the image's failure");
        };
        assert_eq!(error_code, "decode_error");
        assert!(error_message.contains("crashed"), "{error_message}");

        let plain = Fixture::new(Ok(png_bytes())).await;
        assert!(matches!(plain.run_with(&codec, false).await, JobResult::Recorded(ImageOutcome::Done { .. })));
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
}
