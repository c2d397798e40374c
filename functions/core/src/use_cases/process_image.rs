//! One URL's job: fetch, compress and store once, then record the result once for every image
//! that names the URL. A batch's jobs are prepared each (`prepare_image`) and their results
//! recorded together (`use_cases::handle_queue_message::handle_queue_batch`).

use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::domain::codec::{self, CodecError, CodecLimits, Compressed, PanicMarker};
use crate::domain::delivery::TimeReserves;
use crate::domain::errors::{ImageError, RETRIES_EXHAUSTED};
use crate::domain::fetch_jobs::FetchJob;
use crate::domain::locations::output_image_key;
use crate::domain::request::{ImageJob, ImageOutcome, Transition};
use crate::ports::{BlobStore, Fetcher, JobStanding, ReadResults, RecordResult};
use crate::use_cases::record_results::record_results;

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
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The latest a result's write may start: one SDK call before the deadline.
    pub fn latest_to_record(&self) -> Instant {
        self.deadline.checked_sub(self.reserves.to_record()).unwrap_or_else(Instant::now)
    }

    fn has_left(&self, needed: Duration) -> bool {
        self.time_left() >= needed
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

/// One job alone: prepared (`prepare_image`), then its result recorded for its images.
/// `last_attempt` is true when the queue will not deliver this message again: a transient
/// failure is then recorded as the images' final result rather than lost to the DLQ.
pub async fn process_image(
    ports: ProcessPorts<'_>,
    job: &FetchJob,
    codec: &CodecPool,
    last_attempt: bool,
    clock: &JobClock,
) -> JobResult {
    let outcome = match prepare_image(&ports, job, codec, last_attempt, clock).await {
        Ok(outcome) => outcome,
        Err(stopped) => return stopped,
    };
    match record_results(ports.recorder, &[(job, &outcome)]).await.remove(0) {
        Ok(Transition::Applied) => JobResult::Recorded(outcome),
        Ok(Transition::AlreadyDone) => JobResult::Duplicate,
        Err(error) => JobResult::Retry(error.into()),
    }
}

/// Everything before recording: the job's standing read, then fetch, compress and store. The
/// outcome to record for its images, or what to do with its message instead (never `Recorded`).
pub async fn prepare_image(
    ports: &ProcessPorts<'_>,
    job: &FetchJob,
    codec: &CodecPool,
    last_attempt: bool,
    clock: &JobClock,
) -> Result<ImageOutcome, JobResult> {
    let first = job.first();
    // A duplicate delivery, or a job of a request cancelled meanwhile, costs one read, not a
    // download, a decode and an upload.
    match ports.results.job_standing(job).await {
        Ok(JobStanding::ToDo) => {}
        Ok(JobStanding::Recorded) => return Err(JobResult::Duplicate),
        Ok(JobStanding::RequestEnded) => {
            tracing::info!(request_id = %first.request_id, stage = "job_dropped", image_index = first.image_index);
            return Err(JobResult::Duplicate);
        }
        Err(error) => return Err(JobResult::Retry(error.into())),
    }
    match compress_and_store(ports, &first, codec, clock).await {
        Ok(done) => Ok(done),
        Err(Stop::OutOfTime) => Err(JobResult::OutOfTime),
        Err(Stop::Failed(error)) if error.is_transient() && !last_attempt => Err(JobResult::Retry(error)),
        Err(Stop::Failed(error)) if error.is_transient() => Ok(ImageOutcome::Failed {
            error_code: RETRIES_EXHAUSTED.into(),
            error_message: format!("gave up after the last attempt: {error}"),
        }),
        Err(Stop::Failed(error)) => {
            Ok(ImageOutcome::Failed { error_code: error.code(), error_message: error.to_string() })
        }
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
    let output_key = output_image_key(&job.tenant_id, job.request_id, job.image_index);
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
mod tests;
