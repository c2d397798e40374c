//! The request and image state machine: what a request and each of its images can be,
//! which moves between states are allowed, and where their artefacts live in the bucket.
//!
//! A request is `pending` from its acceptance until its image jobs are queued (the fan-out),
//! `processing` then, and final (`completed`, `completed_with_errors`, `failed`) exactly once,
//! when the last image gets a result, or `cancelled` when its owner stops it first (its images
//! without a result then end as `cancelled`, see [`image_as_shown`]). Each image moves `PENDING -> DONE | FAILED` exactly
//! once. An image is PENDING until its result is recorded: its item is written only then,
//! conditionally on not existing, in the same transaction as the request's counters, so
//! redelivered messages and replayed stream records change nothing, and a fan-out that runs
//! twice cannot reset a result.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::errors::CANCELLED;
use crate::domain::http_url::HttpUrl;
use crate::domain::locations::input_csv_key;
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Processing,
    Completed,
    CompletedWithErrors,
    Failed,
    /// Stopped by its owner before every image had a result (`use_cases::cancel_request`).
    Cancelled,
}

impl RequestStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::CompletedWithErrors | Self::Failed | Self::Cancelled)
    }

    /// The honest summary once every image has a result: `completed` only if every image
    /// made it, `failed` if none did.
    pub fn final_for(succeeded: u64, failed: u64) -> Self {
        match (succeeded, failed) {
            (_, 0) => Self::Completed,
            (0, _) => Self::Failed,
            _ => Self::CompletedWithErrors,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::CompletedWithErrors => "completed_with_errors",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageState {
    Pending,
    Done,
    Failed,
}

impl ImageState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Done => "DONE",
            Self::Failed => "FAILED",
        }
    }
}

/// One uploaded CSV and its progress. `remaining` counts images without a result; the
/// request is finished by the write that takes it to 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: RequestId,
    /// Whose request it is: only that tenant's keys see it.
    pub tenant_id: TenantId,
    pub status: RequestStatus,
    pub total: u64,
    pub remaining: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Images that had no result when the request was cancelled; set by the cancelling write.
    #[serde(default)]
    pub cancelled: u64,
    /// The request this one retries (`use_cases::retry_request`): its successes are carried
    /// over, counted in `succeeded` from the start and `carried_over`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RequestId>,
    #[serde(default)]
    pub carried_over: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    pub input_csv_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_csv_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<HttpUrl>,
    /// Failed deliveries of the webhook so far, and when the next one is due while one is owed
    /// (`use_cases::deliver_webhook`). Set in the same write that makes the request final.
    #[serde(default)]
    pub webhook_failed_deliveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_next_at: Option<DateTime<Utc>>,
    /// Why the request was failed without waiting for its images (`use_cases::fail_request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Sweeps of this request that failed in a row (`use_cases::sweep`).
    #[serde(default)]
    pub sweep_failures: u32,
}

impl RequestRecord {
    pub fn new(
        request_id: RequestId,
        tenant_id: TenantId,
        total: u64,
        webhook_url: Option<HttpUrl>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            input_csv_key: input_csv_key(&tenant_id, request_id),
            request_id,
            tenant_id,
            status: RequestStatus::Pending,
            total,
            remaining: total,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            retry_of: None,
            carried_over: 0,
            created_at: now,
            updated_at: now,
            completed_at: None,
            output_csv_key: None,
            webhook_url,
            webhook_failed_deliveries: 0,
            webhook_next_at: None,
            failure_reason: None,
            sweep_failures: 0,
        }
    }

    /// A retry of `first` (final), under `request_id`: the same rows and webhook, with the
    /// images `first` made counted as succeeded from the start; only the others are to process.
    pub fn retry_of(request_id: RequestId, first: &RequestRecord, now: DateTime<Utc>) -> Self {
        let mut retry = Self::new(request_id, first.tenant_id.clone(), first.total, first.webhook_url.clone(), now);
        retry.retry_of = Some(first.request_id);
        retry.carried_over = first.succeeded;
        retry.succeeded = first.succeeded;
        retry.remaining = first.total - first.succeeded;
        retry
    }

    /// Images without a result, derived from the counters so the four always add up to total.
    pub fn pending_images(&self) -> u64 {
        self.total.saturating_sub(self.succeeded + self.failed + self.cancelled)
    }

    /// The images this request holds of its tenant's quota while it is not final: those it has
    /// to process (a retry's carried-over successes are not processed again).
    pub fn open_images(&self) -> u64 {
        self.total.saturating_sub(self.carried_over)
    }

    /// Images a retry would process again: every one that did not succeed.
    pub fn images_to_retry(&self) -> u64 {
        self.total.saturating_sub(self.succeeded)
    }

    /// Whether the errors report exists: it is written with the output CSV, when images failed
    /// or were cancelled.
    pub fn has_errors_report(&self) -> bool {
        self.output_csv_key.is_some() && self.failed + self.cancelled > 0
    }
}

/// One image of a request, in output order (`image_index` counts across all rows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub request_id: RequestId,
    pub image_index: u32,
    /// 0-based data row of the input CSV the image belongs to.
    pub row: u32,
    pub input_url: HttpUrl,
    pub state: ImageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Something worth knowing about a DONE image, e.g. `no_gain`: the input was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ImageRecord {
    /// An image without a result yet (its item is written only with its result).
    pub fn pending_for(job: &ImageJob) -> Self {
        Self {
            request_id: job.request_id,
            image_index: job.image_index,
            row: job.row,
            input_url: job.url.clone(),
            state: ImageState::Pending,
            output_key: None,
            error_code: None,
            error_message: None,
            bytes_in: None,
            bytes_out: None,
            note: None,
        }
    }

    /// An image of a cancelled request that had no result when it was cancelled.
    pub fn cancelled_for(job: &ImageJob) -> Self {
        Self {
            state: ImageState::Failed,
            error_code: Some(CANCELLED.into()),
            error_message: Some(CANCELLED_MESSAGE.into()),
            ..Self::pending_for(job)
        }
    }

    /// The item recorded for the job's result.
    pub fn with_outcome(job: &ImageJob, outcome: &ImageOutcome) -> Self {
        let mut record = Self::pending_for(job);
        record.state = outcome.state();
        match outcome {
            ImageOutcome::Done { output_key, bytes_in, bytes_out, note } => {
                record.output_key = Some(output_key.clone());
                record.bytes_in = Some(*bytes_in);
                record.bytes_out = Some(*bytes_out);
                record.note = note.map(String::from);
            }
            ImageOutcome::Failed { error_code, error_message } => {
                record.error_code = Some(error_code.clone());
                record.error_message = Some(bounded_message(error_message));
            }
        }
        record
    }
}

/// The error message of an image that had no result when its request was cancelled.
pub const CANCELLED_MESSAGE: &str = "the request was cancelled before this image had a result";

/// What an image of `request` is to its owner, given its recorded result if it has one: that
/// result; else `cancelled` if the request was cancelled, PENDING otherwise. The one place that
/// decides it, for the status, the images pages, the output CSV and the errors report.
pub fn image_as_shown(request: &RequestRecord, job: &ImageJob, recorded: Option<ImageRecord>) -> ImageRecord {
    match recorded {
        Some(image) => image,
        None if request.status == RequestStatus::Cancelled => ImageRecord::cancelled_for(job),
        None => ImageRecord::pending_for(job),
    }
}

/// The most of a failure message an image's record keeps, in bytes. Messages quote what
/// servers and libraries say (a transfer error, a redirect's `Location`), of any length; the
/// record goes into one DynamoDB item of at most 400 KB, and into the status and errors report.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// `message`, or as much of it as fits [`MAX_ERROR_MESSAGE_BYTES`] with a closing `…`, cut
/// at a character boundary. For a request's `failure_reason` too (it quotes errors).
pub fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut cut = MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &message[..cut])
}

/// The result of one image, recorded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageOutcome {
    Done { output_key: String, bytes_in: u64, bytes_out: u64, note: Option<&'static str> },
    Failed { error_code: String, error_message: String },
}

impl ImageOutcome {
    pub fn state(&self) -> ImageState {
        match self {
            Self::Done { .. } => ImageState::Done,
            Self::Failed { .. } => ImageState::Failed,
        }
    }
}

/// What the write that makes a request final sets, all in one conditional write, so that
/// nothing owed after it can be lost or paid twice: a webhook owed is recorded with it, due at
/// `webhook_due_at` (left to whoever sends it first; the sweeper delivers it if that one dies),
/// and the request's images are given back to its tenant's quota (`domain::quota`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalState {
    pub status: RequestStatus,
    pub output_csv_key: Option<String>,
    /// Set when the request was failed without waiting for its images.
    pub failure_reason: Option<String>,
    /// `Some` when the request has a webhook.
    pub webhook_due_at: Option<DateTime<Utc>>,
    /// The tenant whose open images the request held, and how many (`RequestRecord::open_images`).
    pub tenant_id: TenantId,
    pub open_images: u64,
}

impl FinalState {
    /// Every image of `request` has a result and its output CSV is written: the honest summary
    /// of its counts (`RequestStatus::final_for`).
    pub fn finished(request: &RequestRecord, output_csv_key: String, webhook_due_at: DateTime<Utc>) -> Self {
        Self {
            status: RequestStatus::final_for(request.succeeded, request.failed),
            output_csv_key: Some(output_csv_key),
            failure_reason: None,
            webhook_due_at: request.webhook_url.is_some().then_some(webhook_due_at),
            tenant_id: request.tenant_id.clone(),
            open_images: request.open_images(),
        }
    }

    /// Its owner cancelled `request`: its images without a result end as cancelled. The output
    /// CSV and errors report are written after this write (by the notifier, which the write wakes
    /// by taking `remaining` to 0), and the webhook is delivered then; `webhook_due_at` is when
    /// the sweeper delivers it instead if that never happens.
    pub fn cancelled(request: &RequestRecord, webhook_due_at: DateTime<Utc>) -> Self {
        Self {
            status: RequestStatus::Cancelled,
            output_csv_key: None,
            failure_reason: None,
            webhook_due_at: request.webhook_url.is_some().then_some(webhook_due_at),
            tenant_id: request.tenant_id.clone(),
            open_images: request.open_images(),
        }
    }

    /// `request` failed without waiting for its images, for `reason` (kept bounded); nothing
    /// else will announce it, so its webhook is due at once.
    pub fn failed(request: &RequestRecord, reason: &str, now: DateTime<Utc>) -> Self {
        Self {
            status: RequestStatus::Failed,
            output_csv_key: None,
            failure_reason: Some(bounded_message(reason)),
            webhook_due_at: request.webhook_url.is_some().then_some(now),
            tenant_id: request.tenant_id.clone(),
            open_images: request.open_images(),
        }
    }
}

/// Whether recording a result counts as progress of its request (see `RecordResult::record`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Made,
    None,
}

/// Whether a conditional write changed anything, or found its work already done
/// (a duplicate delivery or a replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Applied,
    AlreadyDone,
}

/// The job for one image. It carries what its result item needs, so the worker reads nothing first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageJob {
    pub request_id: RequestId,
    /// Its request's tenant, whose part of the bucket the output goes to.
    pub tenant_id: TenantId,
    pub image_index: u32,
    /// 0-based data row of the input CSV.
    pub row: u32,
    pub url: HttpUrl,
}

/// What the jobs queue carries: the fan-out of an accepted request, one chunk of it, or the job
/// of one URL (for every image that names it); one image's job too, as queued before jobs were
/// grouped by URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueMessage {
    FanOut {
        fan_out: RequestId,
    },
    /// One range of a large request's images (`domain::fan_out_chunks`).
    FanOutChunk {
        fan_out_chunk: crate::domain::fan_out_chunks::FanOutChunk,
    },
    /// One URL of a request, for every image that names it (`domain::fetch_jobs`).
    Fetch {
        fetch: crate::domain::fetch_jobs::FetchJob,
    },
    Image(ImageJob),
}

/// Every image job of a validated CSV, in output order.
pub fn image_jobs(request: &RequestRecord, csv: &crate::domain::csv_rules::ValidatedCsv) -> Vec<ImageJob> {
    jobs_of(request, csv).collect()
}

/// The image jobs of a validated CSV one at a time, in output order (a chunk takes a range).
pub fn jobs_of<'a>(
    request: &'a RequestRecord,
    csv: &'a crate::domain::csv_rules::ValidatedCsv,
) -> impl Iterator<Item = ImageJob> + 'a {
    csv.images().map(|(index, row, url)| ImageJob {
        request_id: request.request_id,
        tenant_id: request.tenant_id.clone(),
        image_index: index as u32,
        row: row as u32,
        url: url.clone(),
    })
}

/// The request is finished by the write that takes `remaining` from above 0 to 0. Acting on
/// that transition, not on the state, means replays and later writes never finish it twice.
pub fn finishes_request(old_remaining: Option<u64>, new_remaining: Option<u64>) -> bool {
    matches!((old_remaining, new_remaining), (Some(old), Some(0)) if old > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tenant;

    #[test]
    fn final_status_is_honest_about_failures() {
        assert_eq!(RequestStatus::final_for(3, 0), RequestStatus::Completed);
        assert_eq!(RequestStatus::final_for(2, 1), RequestStatus::CompletedWithErrors);
        assert_eq!(RequestStatus::final_for(0, 3), RequestStatus::Failed);
    }

    #[test]
    fn only_the_transition_to_zero_finishes_a_request() {
        assert!(finishes_request(Some(1), Some(0)));
        assert!(!finishes_request(Some(0), Some(0)), "a later write on a finished request");
        assert!(!finishes_request(Some(2), Some(1)));
        assert!(!finishes_request(None, Some(0)), "the insert of an empty request");
        assert!(!finishes_request(Some(1), None));
    }

    #[test]
    fn counts_always_add_up() {
        let mut request = RequestRecord::new(RequestId::new_random(), tenant(), 5, None, Utc::now());
        request.succeeded = 2;
        request.failed = 1;
        assert_eq!(request.pending_images() + request.succeeded + request.failed, request.total);
    }

    #[test]
    fn statuses_serialise_as_the_api_shows_them() {
        let json = serde_json::to_string(&RequestStatus::CompletedWithErrors).unwrap();
        assert_eq!(json, "\"completed_with_errors\"");
        assert_eq!(RequestStatus::CompletedWithErrors.as_str(), "completed_with_errors");
        assert!(!RequestStatus::Processing.is_final());
    }

    #[test]
    fn a_failed_image_keeps_at_most_max_error_message_bytes_of_its_message() {
        let job = ImageJob {
            tenant_id: crate::test_support::tenant(),
            request_id: RequestId::new_random(),
            image_index: 0,
            row: 0,
            url: HttpUrl::parse("https://a.example/x.png").unwrap(),
        };
        // A transfer error can quote a whole redirect URL or a server's answer: any length.
        let long = format!("the download failed: {}", "é".repeat(300_000));
        let outcome = ImageOutcome::Failed { error_code: "download_error".into(), error_message: long.clone() };
        let stored = ImageRecord::with_outcome(&job, &outcome).error_message.unwrap();
        assert!(stored.len() <= MAX_ERROR_MESSAGE_BYTES, "{} bytes", stored.len());
        assert!(stored.ends_with('…'), "{stored}");
        assert!(long.starts_with(stored.trim_end_matches('…')));
        assert!(stored.len() > 1000, "cut at the last whole character, not earlier: {} bytes", stored.len());

        let short = ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() };
        assert_eq!(ImageRecord::with_outcome(&job, &short).error_message.as_deref(), Some("gone"));
    }

    #[test]
    fn queue_messages_tell_fan_outs_from_image_jobs() {
        let id = RequestId::new_random();
        let job = ImageJob {
            tenant_id: crate::test_support::tenant(),
            request_id: id,
            image_index: 3,
            row: 1,
            url: HttpUrl::parse("https://a.example/x.png").unwrap(),
        };
        let chunk = crate::domain::fan_out_chunks::FanOutChunk { request_id: id, first: 2_000, count: 2_000 };
        let messages = [
            QueueMessage::FanOut { fan_out: id },
            QueueMessage::FanOutChunk { fan_out_chunk: chunk },
            QueueMessage::Image(job),
        ];
        for message in messages {
            let body = serde_json::to_string(&message).unwrap();
            assert_eq!(serde_json::from_str::<QueueMessage>(&body).unwrap(), message, "{body}");
        }
    }
}
