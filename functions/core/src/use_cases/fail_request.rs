//! Ending a request as `failed` without waiting for its images: when its jobs can never be
//! queued (the fan-out could not be sent at upload, or failed on every attempt), its stored CSV
//! is gone, or it could not be swept. Like every final state it is set once
//! (`MoveRequest::finish`), with no output CSV and with the reason; a webhook owed is recorded in
//! the same write, due at once, and the sweeper delivers it (`deliver_webhook`).

use chrono::{DateTime, Utc};

use crate::domain::errors::StoreError;
use crate::domain::request::{FinalState, Transition};
use crate::domain::request_id::RequestId;
use crate::ports::{MoveRequest, ReadRequest};

#[derive(Clone, Copy)]
pub struct FailPorts<'a> {
    /// To know whether a webhook is owed (the URL never changes once accepted).
    pub requests: &'a dyn ReadRequest,
    pub lifecycle: &'a dyn MoveRequest,
}

/// `why` is kept on the request for its status; `AlreadyDone` if the request was final already
/// (or is gone).
pub async fn fail_request(
    ports: FailPorts<'_>,
    id: RequestId,
    why: &str,
    now: DateTime<Utc>,
) -> Result<Transition, StoreError> {
    tracing::error!(request_id = %id, stage = "fail_request", reason = why);
    let Some(request) = ports.requests.get(id).await? else { return Ok(Transition::AlreadyDone) };
    let ending = FinalState::failed(&request, why, now);
    ports.lifecycle.finish(id, &ending, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryTable;
    use crate::domain::http_url::HttpUrl;
    use crate::domain::quota::TenantQuota;
    use crate::domain::request::{ImageOutcome, Progress};
    use crate::domain::request::{RequestRecord, RequestStatus};
    use crate::domain::tenant::TenantId;
    use crate::ports::{CreateRequest, ReadRequest, ReadResults, RecordResult};

    #[tokio::test]
    async fn a_failed_request_keeps_its_reason_and_owes_its_webhook_at_once() {
        let table = MemoryTable::default();
        let hook = HttpUrl::parse("https://hooks.example/done").unwrap();
        let (with_hook, without) = (RequestId::new_random(), RequestId::new_random());
        let tenant: TenantId = "acme".parse().unwrap();
        let quota = TenantQuota { max_open_images: 10 };
        table.create(&RequestRecord::new(with_hook, tenant.clone(), 2, Some(hook), Utc::now()), &quota).await.unwrap();
        table.create(&RequestRecord::new(without, tenant.clone(), 2, None, Utc::now()), &quota).await.unwrap();
        let ports = FailPorts { requests: &table, lifecycle: &table };
        let now = Utc::now();

        for id in [with_hook, without] {
            assert_eq!(fail_request(ports, id, "the input CSV is missing", now).await.unwrap(), Transition::Applied);
            assert_eq!(fail_request(ports, id, "again", now).await.unwrap(), Transition::AlreadyDone);
        }
        let failed = table.get(with_hook).await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.failure_reason.as_deref()),
            (RequestStatus::Failed, Some("the input CSV is missing"))
        );
        assert_eq!(failed.webhook_next_at, Some(now), "the webhook is owed, due at once");
        assert_eq!(table.get(without).await.unwrap().unwrap().webhook_next_at, None);
        assert_eq!(table.open_images(&tenant), 0, "the images are given back once");
    }

    #[tokio::test]
    async fn a_result_arriving_after_the_final_state_is_not_counted() {
        let table = MemoryTable::default();
        let id = RequestId::new_random();
        let request = RequestRecord::new(id, "acme".parse().unwrap(), 2, None, Utc::now());
        table.create(&request, &TenantQuota { max_open_images: 10 }).await.unwrap();
        fail_request(FailPorts { requests: &table, lifecycle: &table }, id, "its CSV is gone", Utc::now())
            .await
            .unwrap();

        // A job queued before the request failed records its result afterwards.
        let job = crate::domain::request::ImageJob {
            request_id: id,
            tenant_id: request.tenant_id.clone(),
            image_index: 0,
            row: 0,
            url: HttpUrl::parse("https://img.example/a.jpg").unwrap(),
        };
        let done = ImageOutcome::Done { output_key: "out/0.jpg".into(), bytes_in: 10, bytes_out: 5, note: None };
        let recorded = table.record(&job, &done, Utc::now(), Progress::Made).await.unwrap();
        assert_eq!(recorded, Transition::AlreadyDone, "a final request takes no more results");
        let failed = table.get(id).await.unwrap().unwrap();
        assert_eq!((failed.succeeded, failed.failed, failed.remaining), (0, 0, 2), "the final counts stay");
        assert!(table.recorded_images(id).await.unwrap().is_empty());
    }
}
