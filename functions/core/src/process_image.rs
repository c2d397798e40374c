//! One image job: fetch, compress, store, then record the result once.

use std::time::Instant;

use chrono::Utc;

use crate::codec::{self, CodecError, CodecLimits, Compressed};
use crate::errors::{ImageError, RETRIES_EXHAUSTED};
use crate::ports::{BlobStore, Fetcher, ImageResults};
use crate::request::{ImageJob, ImageOutcome, Transition, output_image_key};

/// What the queue should do with the job's message.
#[derive(Debug)]
pub enum JobResult {
    /// The result is recorded (or was already): delete the message.
    Recorded(ImageOutcome),
    /// Another delivery of this job recorded its result first: delete the message.
    Duplicate,
    /// A transient failure with attempts left: let the queue deliver it again.
    Retry(ImageError),
}

pub struct ProcessPorts<'a> {
    pub fetcher: &'a dyn Fetcher,
    pub blobs: &'a dyn BlobStore,
    pub results: &'a dyn ImageResults,
}

/// `last_attempt` is true when the queue will not deliver this message again: a transient
/// failure is then recorded as the image's final result rather than lost to the DLQ.
pub async fn process_image(
    ports: ProcessPorts<'_>,
    job: &ImageJob,
    limits: &CodecLimits,
    last_attempt: bool,
) -> JobResult {
    let outcome = match compress_and_store(&ports, job, limits).await {
        Ok(done) => done,
        Err(error) if error.is_transient() && !last_attempt => return JobResult::Retry(error),
        Err(error) if error.is_transient() => ImageOutcome::Failed {
            error_code: RETRIES_EXHAUSTED.into(),
            error_message: format!("gave up after the last attempt: {error}"),
        },
        Err(error) => ImageOutcome::Failed { error_code: error.code(), error_message: error.to_string() },
    };
    let started = Instant::now();
    let recorded = ports.results.record(job, &outcome, Utc::now()).await;
    tracing::info!(
        request_id = %job.request_id,
        image_index = job.image_index,
        stage = "record",
        duration_ms = started.elapsed().as_millis() as u64,
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
    limits: &CodecLimits,
) -> Result<ImageOutcome, ImageError> {
    let stage = Stage::start(job, "fetch");
    let input = ports.fetcher.fetch(&job.url).await?;
    stage.end();
    let bytes_in = input.len() as u64;

    let stage = Stage::start(job, "compress");
    let limits = limits.clone();
    let compressed: Compressed = tokio::task::spawn_blocking(move || codec::compress(&input, &limits))
        .await
        .map_err(|panic| CodecError::Decode(format!("the decoder crashed: {panic}")))??;
    stage.end();

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
        tracing::info!(
            request_id = %self.job.request_id,
            image_index = self.job.image_index,
            stage = self.name,
            duration_ms = self.started.elapsed().as_millis() as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::http_url::HttpUrl;
    use crate::memory::{MemoryBlobs, MemoryFetcher, MemoryTable};
    use crate::ports::RequestTable;
    use crate::request::{ImageState, RequestRecord};
    use crate::request_id::RequestId;

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
            let fetcher = MemoryFetcher { responses: [(url.to_string(), response)].into() };
            let job = ImageJob { request_id, image_index: 0, row: 0, url };
            Self { fetcher, blobs: MemoryBlobs::default(), table, job }
        }

        async fn run(&self, last_attempt: bool) -> JobResult {
            let ports = ProcessPorts { fetcher: &self.fetcher, blobs: &self.blobs, results: &self.table };
            process_image(ports, &self.job, &CodecLimits::default(), last_attempt).await
        }

        async fn request(&self) -> RequestRecord {
            self.table.get(self.job.request_id).await.unwrap().unwrap()
        }
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
    async fn duplicate_delivery_counts_once() {
        let fixture = Fixture::new(Ok(png_bytes())).await;
        fixture.run(false).await;
        assert!(matches!(fixture.run(false).await, JobResult::Duplicate));
        let request = fixture.request().await;
        assert_eq!((request.succeeded, request.remaining), (1, 0));
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
