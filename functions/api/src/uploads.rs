//! `POST /api/uploads`: a CSV too large for the API body goes to the bucket. The answer is the
//! request id the CSV will become and a presigned PUT for it (`use_cases::reserve_upload`);
//! the status answers `not_ready` until the CSV is accepted.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use imgpipe_core::domain::csv_rules::CsvProblem;
use imgpipe_core::use_cases::reserve_upload::{ReserveError, ReservePorts, ReserveRules, reserve_upload};
use serde::Deserialize;

use utoipa::ToSchema;

use crate::answers::{ErrorAnswer, UploadReserved, error, invalid};
use crate::caller::Caller;
use crate::openapi::GatewayRefusal;
use crate::routes::{AppState, origin, unavailable};

/// The body: `{}`, `{"webhook_url": "..."}`, or nothing at all.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// The URL to notify when the request ends.
    webhook_url: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/uploads",
    tag = "requests",
    summary = "Reserve a presigned upload for a large CSV",
    description = "For a CSV above the inline limit of `POST /api/upload/` (up to `max_bytes`): PUT its bytes \
                   to `upload_url`, then poll `status_url`, which answers 404 `not_ready` until the CSV is \
                   accepted, 422 with its problems if it was refused, then the request's status.",
    request_body(content((ReserveBody = "application/json")), description = "Optional; may be empty."),
    responses(
        (status = 201, description = "The request id the CSV becomes, and where to PUT it.", body = UploadReserved),
        (status = 400, description = "`bad_request_body`: the body is neither empty nor such a JSON object.",
         body = ErrorAnswer),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 422, description = "`invalid_webhook_url` (the problem in `problems`).", body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]

pub async fn reserve(State(state): State<Arc<AppState>>, caller: Caller, headers: HeaderMap, body: Bytes) -> Response {
    let body: ReserveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReserveBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(cause) => {
                let message = format!(
                    "the body must be empty or a JSON object such as {{\"webhook_url\": \"https://...\"}}: {cause}"
                );
                return error(StatusCode::BAD_REQUEST, "bad_request_body", message);
            }
        }
    };
    let rules = ReserveRules {
        max_url_length: state.config.csv_limits.max_url_length,
        url_lifetime: state.config.upload_url_lifetime,
    };
    let ports = ReservePorts { blobs: &state.blobs, reservations: &state.table };
    match reserve_upload(ports, &caller.0, body.webhook_url.as_deref(), &rules, Utc::now()).await {
        Ok(reserved) => {
            let reservation = &reserved.reservation;
            let id = reservation.request_id;
            tracing::info!(request_id = %id, tenant = %caller.0, stage = "upload_reserved");
            let secret = reservation.webhook_url.as_ref().map(|_| state.signing_key.secret_for(id).to_string());
            let answer = UploadReserved::new(
                &origin(&headers),
                reservation,
                reserved.upload_url,
                state.config.bucket_csv_limits.max_bytes as u64,
                secret,
            );
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(ReserveError::WebhookUrl(reason)) => {
            let problem = CsvProblem { line: None, column: None, message: format!("webhook_url: {reason}") };
            let limit = state.config.csv_limits.max_url_length;
            let message = format!("webhook_url is not an absolute http(s) URL of at most {limit} characters");
            invalid("invalid_webhook_url", &message, vec![problem])
        }
        Err(cause @ ReserveError::Store(_)) => unavailable("reserve_upload", &cause),
    }
}
