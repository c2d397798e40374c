//! The results of a batch's jobs, recorded with as few writes as exactly-once allows.
//!
//! A result used to be its own transaction: the image's item and its request's counters, two
//! items at twice the price of a plain write. The results of one request in one batch now share
//! one transaction (`RecordResult::record_all`): each image's item, conditional on not existing,
//! and one update of the counters by their sums, so the counters' price is paid once per batch.
//! When a condition cancels it (one image had its result already, or the request is final),
//! nothing was written, and each image is recorded alone as before (`RecordResult::record`): the
//! duplicates change nothing, the others are recorded, a closed request's are dropped.

use std::time::Instant;

use chrono::Utc;

use crate::domain::errors::StoreError;
use crate::domain::fetch_jobs::{FetchJob, MAX_RESULTS_PER_WRITE};
use crate::domain::request::{ImageJob, ImageOutcome, Progress, Transition};
use crate::domain::request_id::RequestId;
use crate::ports::RecordResult;

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
