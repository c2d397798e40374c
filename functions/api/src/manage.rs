//! `POST /api/requests/<id>/cancel` and `POST /api/requests/<id>/retry`: the owner of a request
//! stops it, or runs its failed images again as a new request.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use imgpipe_core::use_cases::accept_upload::AcceptPorts;
use imgpipe_core::use_cases::cancel_request::{CancelError, CancelPorts, cancel_request};
use imgpipe_core::use_cases::retry_request::{RetryError, retry_request};

use crate::answers::{Accepted, RetryAccepted, error};
use crate::caller::OwnRequest;
use crate::requests::status_answer;
use crate::routes::{AppState, origin, unavailable};
use crate::upload::over_quota;

/// 200 with the request's status, now `cancelled`; 409 `already_final` when it has ended.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    OwnRequest(request): OwnRequest,
    headers: HeaderMap,
) -> Response {
    let ports = CancelPorts::with_table(&state.table);
    match cancel_request(ports, request, Utc::now()).await {
        Ok(cancelled) => status_answer(&state, &cancelled, &headers).await,
        Err(CancelError::AlreadyFinal(status)) if status.is_final() => error(
            StatusCode::CONFLICT,
            "already_final",
            format!(
                "the request has already ended (status: {}); only a request in progress can be cancelled",
                status.as_str()
            ),
        ),
        Err(CancelError::AlreadyFinal(_)) => error(
            StatusCode::CONFLICT,
            "already_final",
            "every image of the request has its result; it is being finished and cannot be cancelled",
        ),
        Err(cause @ CancelError::Store(_)) => unavailable("cancel", &cause),
    }
}

/// 202 with the new request, as an upload is answered, and the request it retries.
pub async fn retry(State(state): State<Arc<AppState>>, OwnRequest(first): OwnRequest, headers: HeaderMap) -> Response {
    let ports = AcceptPorts::with_table(&state.blobs, &state.queue, &state.table);
    match retry_request(ports, &first, &state.config.quota, &state.signing_key).await {
        Ok(accepted) => {
            let id = accepted.request_id;
            tracing::info!(request_id = %id, retry_of = %first.request_id, stage = "retry_accepted", images = accepted.image_count);
            let secret = accepted.webhook_secret.map(|secret| secret.to_string());
            let accepted = Accepted::new(&origin(&headers), id, accepted.image_count, secret);
            (StatusCode::ACCEPTED, Json(RetryAccepted { accepted, retry_of: first.request_id })).into_response()
        }
        Err(RetryError::NotFinal(status)) => error(
            StatusCode::CONFLICT,
            "not_final",
            format!("the request has not ended yet (status: {}); wait for it, or cancel it first", status.as_str()),
        ),
        Err(RetryError::NothingToRetry) => {
            error(StatusCode::CONFLICT, "nothing_to_retry", "every image of the request succeeded: nothing to retry")
        }
        Err(RetryError::InputGone) => error(
            StatusCode::GONE,
            "input_gone",
            "the request's input CSV is no longer stored (its retention ended); upload the CSV again",
        ),
        Err(RetryError::OverQuota { max_open_images }) => over_quota(max_open_images, "retry"),
        Err(cause @ RetryError::Store(_)) => unavailable("retry", &cause),
    }
}
