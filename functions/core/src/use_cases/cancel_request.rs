//! Cancelling a request its owner no longer wants: one conditional write makes it final as
//! `cancelled` (`MoveRequest::cancel`), cheap whatever its size. Its images without a result end
//! as `cancelled` (derived, `domain::request::image_as_shown`: nothing is written per image), its
//! images go back to its tenant's quota and its webhook is owed, all in that write. Jobs still
//! queued then find the request final and record nothing (`RecordResult::record`); the notifier,
//! woken by the write, writes the output CSV and errors report and delivers the webhook
//! (`finish_request`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::errors::StoreError;
use crate::domain::request::{FinalState, RequestRecord, RequestStatus, Transition};
use crate::ports::{CarryOverResults, MoveRequest, ReadRequest, ReadResults};
use crate::use_cases::retry_request::carry_over_successes;

/// How long the notifier has to write a cancelled request's CSVs and deliver its webhook before
/// the sweeper delivers the webhook itself (with whatever links exist by then).
pub const WEBHOOK_GRACE: Duration = Duration::from_secs(120);

/// Cancelling writes tried while results keep changing the request's counts under it.
const CANCEL_ATTEMPTS: u32 = 10;

#[derive(Clone, Copy)]
pub struct CancelPorts<'a> {
    pub requests: &'a dyn ReadRequest,
    pub lifecycle: &'a dyn MoveRequest,
    /// A retry cancelled before its fan-out ran gets its carried-over successes here.
    pub results: &'a dyn ReadResults,
    pub carry: &'a dyn CarryOverResults,
}

impl<'a> CancelPorts<'a> {
    /// Every capability from one table (the DynamoDB adapter, or the fake).
    pub fn with_table<T>(table: &'a T) -> Self
    where
        T: ReadRequest + MoveRequest + ReadResults + CarryOverResults,
    {
        Self { requests: table, lifecycle: table, results: table, carry: table }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// The request is final, or every image has its result and it is being finished.
    #[error("the request has ended ({})", .0.as_str())]
    AlreadyFinal(RequestStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Cancels `request` (as read, the caller's own); the request as it is after the cancel.
pub async fn cancel_request(
    ports: CancelPorts<'_>,
    mut request: RequestRecord,
    now: DateTime<Utc>,
) -> Result<RequestRecord, CancelError> {
    let id = request.request_id;
    for _ in 0..CANCEL_ATTEMPTS {
        if request.status.is_final() || request.pending_images() == 0 {
            return Err(CancelError::AlreadyFinal(request.status));
        }
        if let (RequestStatus::Pending, Some(first)) = (request.status, request.retry_of) {
            // A retry whose fan-out has not run: its successes, counted from its creation, must
            // have their items before its CSVs are written (the fan-out writes the same ones).
            carry_over_successes(ports.results, ports.carry, &request, first).await?;
        }
        let due = now + chrono::Duration::from_std(WEBHOOK_GRACE).unwrap_or(chrono::Duration::MAX);
        let ending = FinalState::cancelled(&request, due);
        if ports.lifecycle.cancel(&request, &ending, now).await? == Transition::Applied {
            tracing::info!(request_id = %id, stage = "cancelled", cancelled = request.pending_images());
            break;
        }
        // A result was recorded, or the request ended, since it was read.
        request = ports.requests.get(id).await?.ok_or(CancelError::AlreadyFinal(request.status))?;
    }
    let after = ports.requests.get(id).await?.ok_or(CancelError::AlreadyFinal(request.status))?;
    if after.status != RequestStatus::Cancelled {
        let detail = format!("results kept arriving through {CANCEL_ATTEMPTS} attempts to cancel");
        return Err(StoreError::Unavailable { service: "DynamoDB", detail }.into());
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryTable;
    use crate::domain::http_url::HttpUrl;
    use crate::domain::quota::TenantQuota;
    use crate::domain::request::{ImageJob, ImageOutcome, Progress};
    use crate::domain::request_id::RequestId;
    use crate::ports::{CreateRequest, RecordResult};
    use crate::test_support::tenant;

    fn job(id: RequestId, index: u32) -> ImageJob {
        let url = HttpUrl::parse(&format!("https://img.example/{index}.jpg")).unwrap();
        ImageJob { request_id: id, tenant_id: tenant(), image_index: index, row: index, url }
    }

    async fn running(table: &MemoryTable, images: u64) -> RequestRecord {
        let hook = HttpUrl::parse("https://hooks.example/done").unwrap();
        let request = RequestRecord::new(RequestId::new_random(), tenant(), images, Some(hook), Utc::now());
        table.create(&request, &TenantQuota { max_open_images: 10 }).await.unwrap();
        request
    }

    #[tokio::test]
    async fn a_cancelled_request_counts_its_images_without_a_result_and_gives_its_quota_back() {
        let table = MemoryTable::default();
        let request = running(&table, 4).await;
        let id = request.request_id;
        let done = ImageOutcome::Done { output_key: "out/0.jpg".into(), bytes_in: 10, bytes_out: 5, note: None };
        table.record(&job(id, 0), &done, Utc::now(), Progress::Made).await.unwrap();
        let ports = CancelPorts::with_table(&table);

        // Read before the result above: the write finds the counts moved, reads again.
        let now = Utc::now();
        let cancelled = cancel_request(ports, request, now).await.unwrap();
        assert_eq!(cancelled.status, RequestStatus::Cancelled);
        assert_eq!((cancelled.succeeded, cancelled.failed, cancelled.cancelled, cancelled.remaining), (1, 0, 3, 0));
        assert_eq!(cancelled.pending_images(), 0);
        assert_eq!(table.open_images(&tenant()), 0, "the quota is given back");
        assert!(cancelled.webhook_next_at.is_some(), "the webhook is owed");

        // A job still in the queue records nothing; a second cancel is refused.
        let failed = ImageOutcome::Failed { error_code: "http_status_404".into(), error_message: "gone".into() };
        let late = table.record(&job(id, 1), &failed, Utc::now(), Progress::Made).await.unwrap();
        assert_eq!(late, Transition::AlreadyDone);
        let again = cancel_request(ports, cancelled, Utc::now()).await;
        assert!(matches!(again, Err(CancelError::AlreadyFinal(RequestStatus::Cancelled))), "{again:?}");
        let after = table.get(id).await.unwrap().unwrap();
        assert_eq!((after.succeeded, after.failed, after.cancelled), (1, 0, 3));
    }

    #[tokio::test]
    async fn a_request_whose_images_all_have_results_is_finishing_and_not_cancelled() {
        let table = MemoryTable::default();
        let request = running(&table, 1).await;
        let done = ImageOutcome::Done { output_key: "out/0.jpg".into(), bytes_in: 10, bytes_out: 5, note: None };
        table.record(&job(request.request_id, 0), &done, Utc::now(), Progress::Made).await.unwrap();

        let ports = CancelPorts::with_table(&table);
        let refused = cancel_request(ports, request.clone(), Utc::now()).await;
        assert!(matches!(refused, Err(CancelError::AlreadyFinal(RequestStatus::Pending))), "{refused:?}");
        assert_eq!(table.get(request.request_id).await.unwrap().unwrap().status, RequestStatus::Pending);
    }
}
