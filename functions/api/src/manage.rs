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

use imgpipe_core::domain::request_id::RequestId;

use crate::answers::{Accepted, ErrorAnswer, RetryAccepted, Status, error};
use crate::caller::OwnRequest;
use crate::openapi::GatewayRefusal;
use crate::requests::status_answer;
use crate::routes::{AppState, origin, unavailable};
use crate::upload::over_quota;

/// 200 with the request's status, now `cancelled`; 409 `already_final` when it has ended.
#[utoipa::path(
    post,
    path = "/api/requests/{request_id}/cancel",
    tag = "requests",
    summary = "Cancel a request in progress",
    description = "Images without a result end with the error code `cancelled`; the request becomes final with \
                   the status `cancelled`, and its webhook is sent. No body.",
    params(("request_id" = RequestId, Path, description = "The request's id, from the upload's answer.")),
    responses(
        (status = 200, description = "The request, now `cancelled`.", body = Status),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found`: no request of yours with this id.", body = ErrorAnswer),
        (status = 409, description = "`already_final`: the request has ended, or every image has its result.",
         body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/api/requests/{request_id}/retry",
    tag = "requests",
    summary = "Retry a final request's failed images as a new request",
    description = "The new request has the same rows; the images that succeeded are carried over without being \
                   fetched again, and only the others are processed. No body.",
    params(("request_id" = RequestId, Path, description = "The id of the request to retry.")),
    responses(
        (status = 202, description = "Accepted: the new request, and the request it retries.", body = RetryAccepted),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found`: no request of yours with this id.", body = ErrorAnswer),
        (status = 409, description = "`not_final`: the request has not ended; `nothing_to_retry`: every image \
                                      succeeded.", body = ErrorAnswer),
        (status = 410, description = "`input_gone`: the request's input CSV is no longer stored.", body = ErrorAnswer),
        (status = 429, description = "`quota_exceeded`.", body = ErrorAnswer,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again."))),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
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
