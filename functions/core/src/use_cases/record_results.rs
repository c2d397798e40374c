//! The results of a batch's jobs, recorded with as few writes as exactly-once allows.
//!
//! A result used to be its own transaction: the image's item and its request's counters, two
//! items at twice the price of a plain write. The results of one request in one batch now share
//! one transaction (`RecordResult::record_all`): each image's item, conditional on not existing,
//! and one update of the counters by their sums, so the counters' price is paid once per batch.
//! When a condition cancels it (one image had its result already, or the request is final),
//! nothing was written, and each image is recorded alone as before (`RecordResult::record`): the
//! duplicates change nothing, the others are recorded, a closed request's are dropped.
//!
//! A batch's results become ready one after another (the codec takes one image at a time) and
//! one slow download must not hold the others back: a result waits at most `RESULT_WINDOW` for
//! the batch's others (`record_as_they_come`), and never so long that its write could not finish
//! before its Lambda is stopped.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::domain::errors::StoreError;
use crate::domain::fetch_jobs::{FetchJob, MAX_RESULTS_PER_WRITE};
use crate::domain::request::{ImageJob, ImageOutcome, Progress, Transition};
use crate::domain::request_id::RequestId;
use crate::ports::RecordResult;

/// The longest a ready result waits for the others of its batch before it is recorded: a batch's
/// ten images are ready within about a second of each other (ten turns of the codec and their
/// uploads), a download that hangs until its timeout is not.
pub const RESULT_WINDOW: Duration = Duration::from_secs(2);

/// A job's outcome ready to be recorded, with what its caller needs back (`tag`).
pub struct Ready<T> {
    pub job: FetchJob,
    pub outcome: ImageOutcome,
    /// The latest its write may start: its Lambda's deadline less one write's time.
    pub latest: Instant,
    pub tag: T,
}

/// Records the results arriving on `ready`, together: each waits for the next ones until
/// `window` after the first of them, or its own `latest` if that comes first, and all that wait
/// then are recorded (`record_results`). Returns once `ready` is closed and every result is
/// recorded: each tag with its job's answer.
pub async fn record_as_they_come<T>(
    recorder: &dyn RecordResult,
    mut ready: UnboundedReceiver<Ready<T>>,
    window: Duration,
) -> Vec<(T, Result<Transition, StoreError>)> {
    let mut answers = Vec::new();
    let mut waiting: Vec<Ready<T>> = Vec::new();
    let mut record_at = Instant::now();
    let mut open = true;
    loop {
        let next = match (waiting.is_empty(), open) {
            (true, _) => match ready.recv().await {
                Some(result) => Some(result),
                None => break,
            },
            (false, true) => match tokio::time::timeout_at(record_at.into(), ready.recv()).await {
                Ok(Some(result)) => Some(result),
                Ok(None) => {
                    open = false;
                    None
                }
                Err(_time_to_record) => None,
            },
            (false, false) => None,
        };
        match next {
            Some(result) => {
                record_at = match waiting.is_empty() {
                    true => result.latest.min(Instant::now() + window),
                    false => record_at.min(result.latest),
                };
                waiting.push(result);
            }
            None => {
                let results: Vec<(&FetchJob, &ImageOutcome)> = waiting.iter().map(|r| (&r.job, &r.outcome)).collect();
                let written = record_results(recorder, &results).await;
                answers.extend(waiting.drain(..).map(|result| result.tag).zip(written));
            }
        }
    }
    answers
}

/// Records each job's outcome for every image it carries. For each job, in order: `Applied` when
/// this call recorded any of its images, `AlreadyDone` when all had their results (or the request
/// was final), or the error that kept one of them from being recorded (retry the job).
pub async fn record_results(
    recorder: &dyn RecordResult,
    results: &[(&FetchJob, &ImageOutcome)],
) -> Vec<Result<Transition, StoreError>> {
    let mut answers: Vec<Result<Transition, StoreError>> = vec![Ok(Transition::AlreadyDone); results.len()];
    for write in writes(results) {
        let (owners, images): (Vec<usize>, Vec<(ImageJob, ImageOutcome)>) = write.into_iter().unzip();
        let (now, started) = (Utc::now(), Instant::now());
        let written = match recorder.record_all(&images, now, Progress::Made).await {
            Ok(Transition::AlreadyDone) => {
                // A condition cancelled the write: each image alone, as a result always was.
                let mut each = Vec::with_capacity(images.len());
                for (image, outcome) in &images {
                    each.push(recorder.record(image, outcome, now, Progress::Made).await);
                }
                each
            }
            whole => vec![whole; images.len()],
        };
        // One line per write, for the person on call and the pipeline benchmark.
        tracing::info!(
            request_id = %images[0].0.request_id,
            stage = "record",
            images = images.len(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        for (owner, answer) in owners.into_iter().zip(written) {
            answers[owner] = match (&answers[owner], answer) {
                (Err(_), _) => continue,
                (_, Err(error)) => Err(error),
                (Ok(Transition::Applied), _) | (_, Ok(Transition::Applied)) => Ok(Transition::Applied),
                _ => Ok(Transition::AlreadyDone),
            };
        }
    }
    answers
}

/// An image's result to record, with the index of the job it came from.
type Owned = (usize, (ImageJob, ImageOutcome));

/// The writes of `results`: their images grouped by request, at most `MAX_RESULTS_PER_WRITE`
/// each, every image once (a job delivered twice in one batch is recorded once: one transaction
/// cannot name an item twice), each with the index of the job it came from.
fn writes(results: &[(&FetchJob, &ImageOutcome)]) -> Vec<Vec<Owned>> {
    let mut by_request: Vec<(RequestId, Vec<Owned>)> = Vec::new();
    for (owner, (job, outcome)) in results.iter().enumerate() {
        let at = match by_request.iter().position(|(id, _)| *id == job.request_id) {
            Some(at) => at,
            None => {
                by_request.push((job.request_id, Vec::new()));
                by_request.len() - 1
            }
        };
        let images = &mut by_request[at].1;
        for image in job.image_jobs() {
            if !images.iter().any(|(_, (seen, _))| seen.image_index == image.image_index) {
                images.push((owner, (image, (*outcome).clone())));
            }
        }
    }
    let mut writes = Vec::new();
    for (_, mut images) in by_request {
        while images.len() > MAX_RESULTS_PER_WRITE {
            let rest = images.split_off(MAX_RESULTS_PER_WRITE);
            writes.push(std::mem::replace(&mut images, rest));
        }
        writes.push(images);
    }
    writes
}

#[cfg(test)]
mod tests;
