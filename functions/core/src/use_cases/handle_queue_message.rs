//! What the worker does with one message of the jobs queue: queue a request's image jobs (the
//! fan-out), process one image, or accept CSVs dropped into the bucket; and, for a message from
//! the dead-letter queue, end what it was for rather than let its request wait forever.
//!
//! Each message is answered on its own: acknowledged (deleted), or handed back to the queue for
//! another delivery, so one image never holds up another. Only the writes of image results are
//! shared: those of a batch are recorded together once its messages are handled.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{StreamExt, stream};
use tokio::sync::Semaphore;

use crate::domain::delivery::{JobsMessage, RetryPolicy, TimeReserves};
use crate::domain::dropped_csv::DroppedCsv;
use crate::domain::errors::{ImageError, RETRIES_EXHAUSTED, StoreError};
use crate::domain::fan_out_chunks::FanOutChunk;
use crate::domain::fetch_jobs::FetchJob;
use crate::domain::request::{ImageJob, ImageOutcome, Transition};
use crate::domain::request_id::RequestId;
use crate::ports::{
    BlobStore, CarryOverResults, CreateRequest, Fetcher, IdempotencyKeys, JobQueue, KnownTenants, MoveRequest,
    ReadRequest, ReadResults, RecordResult, UploadReservations,
};
use crate::use_cases::accept_dropped_csv::{accept_dropped_csv, reject_dropped_csv};
use crate::use_cases::accept_upload::{AcceptPorts, UploadRules};
use crate::use_cases::fail_request::{FailPorts, fail_request};
use crate::use_cases::fan_out::{FanOutError, FanOutPorts, fan_out, fan_out_chunk};
use crate::use_cases::process_image::{CodecPool, JobClock, JobResult, ProcessPorts, prepare_image};
use crate::use_cases::record_results::{RESULT_WINDOW, Ready, record_as_they_come};

/// The accepting ports (for fan-outs and dropped CSVs), and those of image jobs.
#[derive(Clone, Copy)]
pub struct WorkerPorts<'a> {
    pub accept: AcceptPorts<'a>,
    pub fetcher: &'a dyn Fetcher,
    pub recorder: &'a dyn RecordResult,
    pub results: &'a dyn ReadResults,
    /// A retry's fan-out carries the successes of the request it retries over.
    pub carry: &'a dyn CarryOverResults,
}

impl<'a> WorkerPorts<'a> {
    /// Every table capability from one table (the DynamoDB adapter, or the fake).
    pub fn with_table<T>(
        fetcher: &'a dyn Fetcher,
        blobs: &'a dyn BlobStore,
        queue: &'a dyn JobQueue,
        table: &'a T,
    ) -> Self
    where
        T: CreateRequest
            + ReadRequest
            + MoveRequest
            + IdempotencyKeys
            + KnownTenants
            + UploadReservations
            + RecordResult
            + ReadResults
            + CarryOverResults,
    {
        let accept = AcceptPorts::with_table(blobs, queue, table);
        Self { accept, fetcher, recorder: table, results: table, carry: table }
    }
}

/// The worker's settings that decide what happens to a message.
pub struct WorkerRules<'a> {
    pub retry: &'a RetryPolicy,
    /// What a job needs left before each step; it is not started with less than all of it.
    pub reserves: TimeReserves,
    /// For CSVs dropped into the bucket.
    pub upload: UploadRules<'a>,
    /// Images whose jobs one invocation queues; a larger request's fan-out is split into chunks
    /// of this many (FAN_OUT_CHUNK_IMAGES).
    pub chunk_images: u32,
    /// Held while a fan-out or a chunk queues its jobs: one at a time per worker process, so the
    /// ten chunks of a batch do not make 160 SendMessageBatch calls at once (on the local stack
    /// they timed out together and failed their request).
    pub fan_out_slot: &'a Semaphore,
}

/// One delivery of a message, as the queue made it.
pub struct Delivery<'a> {
    pub body: &'a str,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receives: u32,
    /// It comes from the jobs' dead-letter queue: every delivery of it went unanswered.
    pub from_dead_letters: bool,
    /// Until the Lambda is stopped.
    pub time_left: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Done with (or nothing can ever be done with it): delete it.
    Acknowledge,
    /// Deliver it again: after `delay` when given, else after the queue's visibility timeout.
    HandBack { delay: Option<Duration> },
}

/// One message on its own: a batch of one.
pub async fn handle_queue_message(
    ports: WorkerPorts<'_>,
    rules: &WorkerRules<'_>,
    codec: &CodecPool,
    delivery: Delivery<'_>,
) -> Verdict {
    handle_queue_batch(ports, rules, codec, vec![delivery], 1).await.remove(0)
}

/// A batch of messages, each answered on its own, `concurrency` at a time; the verdicts in the
/// order of `deliveries`. The results of its image jobs are recorded together as they become
/// ready, one write per request for those ready within `RESULT_WINDOW` of each other
/// (`use_cases::record_results`): a result costs the request's counters once per batch instead
/// of once per image.
pub async fn handle_queue_batch(
    ports: WorkerPorts<'_>,
    rules: &WorkerRules<'_>,
    codec: &CodecPool,
    deliveries: Vec<Delivery<'_>>,
    concurrency: usize,
) -> Vec<Verdict> {
    // Every message's time is counted from the batch's start: with more messages than
    // `concurrency`, the last ones start later with less of it left.
    let received = Instant::now();
    let mut verdicts: Vec<Option<Verdict>> = deliveries.iter().map(|_| None).collect();
    let (ready_tx, ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let handle_each = async move {
        let answered: Vec<(usize, Verdict)> = stream::iter(deliveries.into_iter().enumerate())
            .map(|(index, delivery)| {
                let clock = JobClock { deadline: received + delivery.time_left, reserves: rules.reserves };
                async move { (index, first_step(ports, rules, codec, delivery, clock).await) }
            })
            .buffer_unordered(concurrency.max(1))
            .filter_map(|(index, step)| {
                let answered = match step {
                    Step::Answered(verdict) => Some((index, verdict)),
                    Step::ToRecord(ready) => {
                        let Ready { job, outcome, latest, tag: (receives, from_dead_letters) } = *ready;
                        let tag = (index, job.first(), receives, from_dead_letters);
                        // The receiver is dropped only after this stream ends: the send succeeds.
                        let _ = ready_tx.send(Ready { job, outcome, latest, tag });
                        None
                    }
                };
                std::future::ready(answered)
            })
            .collect()
            .await;
        // Every message is handled: what waits is recorded now.
        drop(ready_tx);
        answered
    };
    let record = record_as_they_come(ports.recorder, ready_rx, RESULT_WINDOW);
    let (answered, recorded) = tokio::join!(handle_each, record);
    for (index, verdict) in answered {
        verdicts[index] = Some(verdict);
    }
    for ((index, first, receives, from_dead_letters), answer) in recorded {
        verdicts[index] = Some(recorded_verdict(rules, &first, receives, from_dead_letters, answer));
    }
    verdicts.into_iter().map(|verdict| verdict.expect("every message is answered")).collect()
}

/// Where a message stands once it has been handled: answered, or an image job whose outcome is
/// to be recorded with the batch's others (tagged with its delivery's receive count and whether
/// it came from the dead-letter queue).
enum Step {
    Answered(Verdict),
    ToRecord(Box<Ready<(u32, bool)>>),
}

async fn first_step(
    ports: WorkerPorts<'_>,
    rules: &WorkerRules<'_>,
    codec: &CodecPool,
    delivery: Delivery<'_>,
    clock: JobClock,
) -> Step {
    let answered = match JobsMessage::read(delivery.body) {
        JobsMessage::Fetch(job) => return image_step(ports, rules, codec, job, &delivery, &clock).await,
        JobsMessage::Image(job) => return image_step(ports, rules, codec, job.into(), &delivery, &clock).await,
        JobsMessage::FanOut(request_id) if delivery.from_dead_letters => {
            // The fan-out failed on every attempt: fail the request rather than leave it waiting.
            let ports = FailPorts { requests: ports.accept.requests, lifecycle: ports.accept.lifecycle };
            let why = "its image jobs could not be queued in any attempt";
            let failed = fail_request(ports, request_id, why, Utc::now()).await;
            hand_back_if_transient(failed.err().is_some_and(|e| e.is_transient()))
        }
        JobsMessage::FanOut(request_id) => {
            let _slot = rules.fan_out_slot.acquire().await.expect("the fan-out slot is never closed");
            run_fan_out(ports, request_id, rules.chunk_images).await
        }
        JobsMessage::FanOutChunk(chunk) if delivery.from_dead_letters => {
            // Its images' jobs could not be queued: the request cannot end with all of them.
            let ports = FailPorts { requests: ports.accept.requests, lifecycle: ports.accept.lifecycle };
            let why = format!(
                "the jobs of images {} to {} could not be queued in any attempt",
                chunk.first,
                chunk.first + chunk.count - 1
            );
            let failed = fail_request(ports, chunk.request_id, &why, Utc::now()).await;
            hand_back_if_transient(failed.err().is_some_and(|e| e.is_transient()))
        }
        JobsMessage::FanOutChunk(chunk) => {
            let _slot = rules.fan_out_slot.acquire().await.expect("the fan-out slot is never closed");
            if clock.time_left() < rules.reserves.to_start() {
                return Step::Answered(requeue_chunk(ports, &chunk).await);
            }
            run_fan_out_chunk(ports, &chunk).await
        }
        JobsMessage::DroppedCsvs(dropped) if delivery.from_dead_letters => give_up_on_dropped(ports, &dropped).await,
        JobsMessage::DroppedCsvs(dropped) => accept_dropped(ports, rules, &dropped).await,
        JobsMessage::Unreadable(error) => {
            // Only our API and S3 write this queue; a body we cannot read will never become
            // readable, and names no image we could record a failure for.
            tracing::error!(stage = "decode_message", error = %error);
            Verdict::Acknowledge
        }
    };
    Step::Answered(answered)
}

/// An image job: fetched, compressed and stored, its outcome then recorded with the batch's.
async fn image_step(
    ports: WorkerPorts<'_>,
    rules: &WorkerRules<'_>,
    codec: &CodecPool,
    job: FetchJob,
    delivery: &Delivery<'_>,
    clock: &JobClock,
) -> Step {
    let receives = delivery.receives;
    if delivery.from_dead_letters {
        // Delivered `maxReceiveCount` times without a result (the worker crashed or timed out on
        // each): its images fail, so its request can end.
        let outcome = ImageOutcome::Failed {
            error_code: RETRIES_EXHAUSTED.into(),
            error_message: "the image could not be processed in any of its attempts".into(),
        };
        let latest = clock.latest_to_record();
        return Step::ToRecord(Box::new(Ready { job, outcome, latest, tag: (receives, true) }));
    }
    if clock.time_left() < rules.reserves.to_start() {
        return Step::Answered(out_of_time(&job.first()));
    }
    let process = ProcessPorts {
        fetcher: ports.fetcher,
        blobs: ports.accept.blobs,
        recorder: ports.recorder,
        results: ports.results,
    };
    match prepare_image(&process, &job, codec, rules.retry.is_last_attempt(receives), clock).await {
        Ok(outcome) => {
            Step::ToRecord(Box::new(Ready { job, outcome, latest: clock.latest_to_record(), tag: (receives, false) }))
        }
        Err(JobResult::OutOfTime) => Step::Answered(out_of_time(&job.first())),
        Err(JobResult::Retry(error)) => Step::Answered(retry(rules, &job.first(), receives, &error)),
        Err(JobResult::Recorded(_) | JobResult::Duplicate) => Step::Answered(Verdict::Acknowledge),
    }
}

/// What becomes of an image job's message once its result's write answered.
fn recorded_verdict(
    rules: &WorkerRules<'_>,
    first: &ImageJob,
    receives: u32,
    from_dead_letters: bool,
    answer: Result<Transition, StoreError>,
) -> Verdict {
    let (request_id, image_index) = (first.request_id, first.image_index);
    match answer {
        Ok(transition) if from_dead_letters => {
            tracing::info!(request_id = %request_id, image_index, stage = "dead_letter", ?transition);
            Verdict::Acknowledge
        }
        Ok(_) => Verdict::Acknowledge,
        Err(error) if from_dead_letters => {
            tracing::error!(request_id = %request_id, image_index, stage = "dead_letter", error = %error);
            hand_back_if_transient(error.is_transient())
        }
        Err(error) => retry(rules, first, receives, &error.into()),
    }
}

/// Too late to finish it before the Lambda is stopped: hand it back for another delivery now.
fn out_of_time(job: &ImageJob) -> Verdict {
    tracing::info!(request_id = %job.request_id, image_index = job.image_index, stage = "handed_back");
    Verdict::HandBack { delay: Some(Duration::ZERO) }
}

/// A transient failure: deliver it again after the policy's delay.
fn retry(rules: &WorkerRules<'_>, job: &ImageJob, receives: u32, error: &ImageError) -> Verdict {
    let delay = rules.retry.delay_after(receives);
    tracing::warn!(
        request_id = %job.request_id,
        image_index = job.image_index,
        stage = "retry",
        receives,
        retry_in_s = delay.as_secs(),
        error_code = error.code(),
        error = %error,
    );
    Verdict::HandBack { delay: Some(delay) }
}

fn hand_back_if_transient(transient: bool) -> Verdict {
    if transient { Verdict::HandBack { delay: None } } else { Verdict::Acknowledge }
}

fn fan_out_ports(ports: WorkerPorts<'_>) -> FanOutPorts<'_> {
    FanOutPorts {
        requests: ports.accept.requests,
        lifecycle: ports.accept.lifecycle,
        blobs: ports.accept.blobs,
        queue: ports.accept.queue,
        results: ports.results,
        carry: ports.carry,
    }
}

/// Queues the image jobs (or the chunks) of an accepted request.
async fn run_fan_out(ports: WorkerPorts<'_>, request_id: RequestId, chunk_images: u32) -> Verdict {
    let started = Instant::now();
    let result = fan_out(fan_out_ports(ports), request_id, chunk_images).await;
    fan_out_verdict(request_id, "fan_out", started, result)
}

/// Queues the image jobs of one chunk of a large request.
async fn run_fan_out_chunk(ports: WorkerPorts<'_>, chunk: &FanOutChunk) -> Verdict {
    let started = Instant::now();
    let result = fan_out_chunk(fan_out_ports(ports), chunk).await;
    fan_out_verdict(chunk.request_id, "fan_out_chunk", started, result)
}

/// A chunk with too little time left to queue its jobs (it waited for the fan-out slot) goes
/// back to the queue as a new message: handed back instead, each wait would spend one of its
/// deliveries, and the request would fail after `MAX_RECEIVES` of them.
async fn requeue_chunk(ports: WorkerPorts<'_>, chunk: &FanOutChunk) -> Verdict {
    match ports.accept.queue.enqueue_chunks(std::slice::from_ref(chunk)).await {
        Ok(()) => {
            tracing::info!(request_id = %chunk.request_id, stage = "fan_out_chunk_requeued", first = chunk.first);
            Verdict::Acknowledge
        }
        Err(error) => {
            tracing::warn!(request_id = %chunk.request_id, stage = "fan_out_chunk_requeued", error = %error);
            Verdict::HandBack { delay: None }
        }
    }
}

fn fan_out_verdict(
    request_id: RequestId,
    stage: &'static str,
    started: Instant,
    result: Result<Transition, FanOutError>,
) -> Verdict {
    match result {
        Ok(transition) => {
            let duration_ms = started.elapsed().as_millis() as u64;
            tracing::info!(request_id = %request_id, stage, duration_ms, ?transition);
            Verdict::Acknowledge
        }
        Err(FanOutError::Store(error)) if error.is_transient() => {
            tracing::warn!(request_id = %request_id, stage, error = %error);
            Verdict::HandBack { delay: None }
        }
        Err(error) => {
            tracing::error!(request_id = %request_id, stage, error = %error);
            Verdict::Acknowledge
        }
    }
}

/// CSVs dropped into the bucket under `incoming/`. Handed back on an outage; the receipt says
/// the rest.
async fn accept_dropped(ports: WorkerPorts<'_>, rules: &WorkerRules<'_>, dropped: &[DroppedCsv]) -> Verdict {
    let mut verdict = Verdict::Acknowledge;
    for csv in dropped {
        match accept_dropped_csv(ports.accept, csv, &rules.upload).await {
            Ok(outcome) => tracing::info!(stage = "dropped_csv", key = csv.key, ?outcome),
            Err(error) => {
                tracing::warn!(stage = "dropped_csv", key = csv.key, error = %error);
                verdict = Verdict::HandBack { delay: None };
            }
        }
    }
    verdict
}

/// A notification of dropped CSVs in the dead-letter queue: accepting them failed on every
/// delivery. Each one that made no request gets a receipt saying so, to drop the file again.
async fn give_up_on_dropped(ports: WorkerPorts<'_>, dropped: &[DroppedCsv]) -> Verdict {
    let mut verdict = Verdict::Acknowledge;
    for csv in dropped {
        match reject_dropped_csv(ports.accept, csv).await {
            Ok(outcome) => tracing::warn!(stage = "dropped_csv", key = csv.key, ?outcome, "from the dead-letter queue"),
            Err(error) => {
                tracing::warn!(stage = "dropped_csv", key = csv.key, error = %error);
                verdict = Verdict::HandBack { delay: None };
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests;
