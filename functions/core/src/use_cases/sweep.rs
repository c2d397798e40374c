//! The sweeper, run every minute by the schedule: it ends requests that stopped making
//! progress, so none waits forever, then makes the webhook deliveries that are due
//! (`deliver_webhook`).
//!
//! Ending an idle request: images still PENDING long after the request's last progress (their
//! jobs lost, or stuck retrying) are failed as `timed_out`, and a request whose last result was
//! recorded but which never reached its final state (its stream record lost) is finished.
//!
//! - Each request is swept on its own: an error on one is logged and counted, and the others
//!   and the webhooks go on. A request that could not be swept `MAX_SWEEP_FAILURES` times in a
//!   row is failed with the reason, rather than tried every minute for ever.
//! - A backlog is not idleness: while the jobs queue has messages waiting for a worker, images
//!   may still be in it, so no image is timed out in that run.
//! - A run has a time budget (its deadline): half for requests, the rest for webhooks. What it
//!   does not reach waits for the next run, which resumes where it stopped: the sweeper's own
//!   `timed_out` results are not progress, so the request stays idle until it is final.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::errors::StoreError;
use crate::domain::locations::Links;
use crate::domain::request::{ImageOutcome, Progress, RequestRecord, Transition, image_jobs};
use crate::domain::request_id::RequestId;
use crate::ports::{FindIdleRequests, QueueBacklog, RecordResult};
use crate::use_cases::deliver_webhook;
use crate::use_cases::fail_request::{FailPorts, fail_request};
use crate::use_cases::finish_request::{FinishError, FinishPorts, Finished, finish_request};
use crate::use_cases::stored_csv::{StoredCsvError, read_stored_csv};

/// The code recorded for images failed by the sweeper.
pub const TIMED_OUT: &str = "timed_out";
/// Failed sweeps in a row after which a request is failed.
pub const MAX_SWEEP_FAILURES: u32 = 5;

pub struct SweepPorts<'a> {
    pub idle: &'a dyn FindIdleRequests,
    pub recorder: &'a dyn RecordResult,
    pub backlog: &'a dyn QueueBacklog,
    pub finish: FinishPorts<'a>,
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Requests this run made final (failed ones whose input CSV is gone included).
    pub requests_finished: usize,
    pub images_timed_out: usize,
    /// Requests failed because they could not be swept `MAX_SWEEP_FAILURES` times in a row.
    pub requests_given_up: usize,
    /// Requests whose sweep failed in this run (and the listings that failed).
    pub errors: usize,
    /// Idle requests left alone because the jobs queue has a backlog.
    pub waiting_on_backlog: usize,
    /// Idle requests not finished within the run's budget: the next run goes on with them.
    pub left_for_next_run: usize,
    /// Owed webhooks whose delivery was made.
    pub webhooks_tried: usize,
}

/// What sweeping one request did.
enum Swept {
    Finished,
    Failed,
    WaitingOnBacklog,
    OutOfTime,
    /// It was final, or moved on, already.
    Nothing,
}

#[derive(Debug, thiserror::Error)]
enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Finish(#[from] FinishError),
}

/// Ends every request with no progress for `idle` (as of `now`), then makes the due webhook
/// deliveries, all before `deadline`. Safe to run at any time and as often as wanted: each image
/// and request moves once, whoever moves it.
pub async fn run_sweep(
    ports: SweepPorts<'_>,
    idle: Duration,
    links: &Links,
    now: DateTime<Utc>,
    deadline: Instant,
) -> SweepReport {
    let started = Instant::now();
    let requests_deadline = started + deadline.saturating_duration_since(started) / 2;
    let mut report = SweepReport::default();
    let cutoff = now - chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
    let mut sweep = RequestSweep { ports: &ports, idle, links, now, deadline: requests_deadline, backlog: None };
    match ports.idle.idle_requests(cutoff).await {
        Ok(ids) => {
            for id in ids {
                sweep.one(id, &mut report).await;
            }
        }
        Err(error) => {
            tracing::error!(stage = "sweep", error = %error, "the idle requests could not be listed");
            report.errors += 1;
        }
    }
    match deliver_webhook::deliver_due_webhooks(&ports.finish.delivery(), links, now, deadline).await {
        Ok(tried) => report.webhooks_tried = tried,
        Err(error) => {
            tracing::error!(stage = "sweep", error = %error, "owed webhooks");
            report.errors += 1;
        }
    }
    report
}

struct RequestSweep<'a> {
    ports: &'a SweepPorts<'a>,
    idle: Duration,
    links: &'a Links,
    now: DateTime<Utc>,
    deadline: Instant,
    /// Whether the jobs queue has messages waiting, asked once per run when first needed.
    backlog: Option<bool>,
}

impl RequestSweep<'_> {
    async fn one(&mut self, id: RequestId, report: &mut SweepReport) {
        if Instant::now() >= self.deadline {
            report.left_for_next_run += 1;
            return;
        }
        match self.sweep(id, report).await {
            Ok(Swept::Finished | Swept::Failed) => report.requests_finished += 1,
            Ok(Swept::WaitingOnBacklog) => report.waiting_on_backlog += 1,
            Ok(Swept::OutOfTime) => report.left_for_next_run += 1,
            Ok(Swept::Nothing) => {}
            Err(error) => {
                report.errors += 1;
                tracing::error!(request_id = %id, stage = "sweep", error = %error);
                if self.give_up_on(id, &error).await {
                    report.requests_given_up += 1;
                }
            }
        }
        tracing::info!(request_id = %id, stage = "swept");
    }

    async fn sweep(&mut self, id: RequestId, report: &mut SweepReport) -> Result<Swept, SweepError> {
        let finish = self.ports.finish;
        let Some(request) = finish.requests.get(id).await? else { return Ok(Swept::Nothing) };
        if request.status.is_final() {
            return Ok(Swept::Nothing);
        }
        if request.remaining > 0 {
            if self.has_backlog().await? {
                return Ok(Swept::WaitingOnBacklog);
            }
            if let Some(swept) = self.time_out_pending_images(&request, report).await? {
                return Ok(swept);
            }
        }
        match finish_request(finish, id, self.links).await {
            Ok(Finished::Now(_)) => Ok(Swept::Finished),
            Ok(Finished::Already) => Ok(Swept::Nothing),
            Err(FinishError::Corrupt(_, why)) => self.fail(id, &why).await,
            Err(error) => Err(error.into()),
        }
    }

    /// Fails every image of `request` without a result as `timed_out`. `Some` when the request
    /// ends here or must wait for the next run.
    async fn time_out_pending_images(
        &self,
        request: &RequestRecord,
        report: &mut SweepReport,
    ) -> Result<Option<Swept>, SweepError> {
        let id = request.request_id;
        let csv = match read_stored_csv(self.ports.finish.blobs, request).await {
            Ok(csv) => csv,
            Err(StoredCsvError::Store(error)) => return Err(error.into()),
            // Without its CSV there is nothing to fail image by image or to write out.
            Err(corrupt) => return self.fail(id, &corrupt.to_string()).await.map(Some),
        };
        let recorded: HashSet<u32> =
            self.ports.finish.results.recorded_images(id).await?.iter().map(|image| image.image_index).collect();
        let message = format!("no result within {} s of the request's last progress", self.idle.as_secs());
        for job in image_jobs(request, &csv).iter().filter(|job| !recorded.contains(&job.image_index)) {
            if Instant::now() >= self.deadline {
                return Ok(Some(Swept::OutOfTime));
            }
            let outcome = ImageOutcome::Failed { error_code: TIMED_OUT.into(), error_message: message.clone() };
            if self.ports.recorder.record(job, &outcome, self.now, Progress::None).await? == Transition::Applied {
                report.images_timed_out += 1;
            }
        }
        if request.sweep_failures > 0 {
            self.ports.idle.clear_sweep_failures(id).await?;
        }
        Ok(None)
    }

    async fn has_backlog(&mut self) -> Result<bool, StoreError> {
        if self.backlog.is_none() {
            self.backlog = Some(self.ports.backlog.waiting_messages().await? > 0);
        }
        Ok(self.backlog == Some(true))
    }

    async fn fail(&self, id: RequestId, why: &str) -> Result<Swept, SweepError> {
        let ports = FailPorts { requests: self.ports.finish.requests, lifecycle: self.ports.finish.lifecycle };
        Ok(match fail_request(ports, id, why, self.now).await? {
            Transition::Applied => Swept::Failed,
            Transition::AlreadyDone => Swept::Nothing,
        })
    }

    /// Counts the failed sweep; fails the request once it has failed `MAX_SWEEP_FAILURES` in a
    /// row. Whether it was failed now.
    async fn give_up_on(&self, id: RequestId, error: &SweepError) -> bool {
        let failures = match self.ports.idle.note_sweep_failure(id).await {
            Ok(failures) => failures,
            Err(count_error) => {
                tracing::error!(request_id = %id, stage = "sweep", error = %count_error, "failed sweep not counted");
                return false;
            }
        };
        if failures < MAX_SWEEP_FAILURES {
            return false;
        }
        let why = format!("the request could not be swept {failures} times in a row: {error}");
        matches!(self.fail(id, &why).await, Ok(Swept::Failed))
    }
}

#[cfg(test)]
mod tests;
