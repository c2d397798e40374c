//! Ending a request as `failed` without waiting for its images: when its jobs can never be
//! queued (the fan-out could not be sent at upload, or failed on every attempt) or its stored
//! CSV is gone. Like every final state, it is set once (`MoveRequest::finish`); no output CSV.

use chrono::Utc;

use crate::domain::errors::StoreError;
use crate::domain::request::{RequestStatus, Transition};
use crate::domain::request_id::RequestId;
use crate::ports::MoveRequest;

/// `why` is logged for the person on call; `AlreadyDone` if the request was final already.
pub async fn fail_request(lifecycle: &dyn MoveRequest, id: RequestId, why: &str) -> Result<Transition, StoreError> {
    tracing::error!(request_id = %id, stage = "fail_request", reason = why);
    lifecycle.finish(id, RequestStatus::Failed, None, Utc::now()).await
}
