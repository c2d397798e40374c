//! `POST /api/upload/`: a CSV in, a request id out (or every reason it was refused).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use imgpipe_core::domain::csv_rules::{CsvProblem, CsvRejection};
use imgpipe_core::domain::idempotency::{IdempotencyKey, InvalidIdempotencyKey};
use imgpipe_core::use_cases::accept_upload::{AcceptError, AcceptPorts, Upload, UploadRules, accept_upload};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::answers::{Accepted, ErrorAnswer, error, invalid};
use crate::caller::Caller;
use crate::openapi::{GatewayRefusal, UploadFormFields};
use crate::routes::{AppState, origin, unavailable};
use crate::upload_form::read_upload;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// With a `text/csv` body: the URL to notify when the request ends (a form sends it as a field).
    pub webhook_url: Option<String>,
}

/// How long a caller over its quota is asked to wait: requests end in minutes.
const QUOTA_RETRY_AFTER_SECS: u32 = 60;

#[utoipa::path(
    post,
    path = "/api/upload/",
    tag = "requests",
    summary = "Upload a CSV",
    description = "The CSV as a multipart form (field `file`, optional `webhook_url`) or as the whole body \
                   (`text/csv`, `webhook_url` in the query string). Also at `/api/upload`.",
    params(
        UploadQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried upload safe: the same key \
          and the same upload within 24 hours answer the first upload's request again."),
    ),
    request_body(content(
        (UploadFormFields = "multipart/form-data"),
        (String = "text/csv"),
    )),
    responses(
        (status = 202, description = "Accepted: the request id and where to poll it.", body = Accepted,
         headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier upload \
                   with the same Idempotency-Key, `false` otherwise."))),
        (status = 400, description = "`bad_upload` (a form without `file`, or malformed), \
                                      `invalid_idempotency_key`.", body = ErrorAnswer),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 409, description = "`idempotency_key_in_progress`.", body = ErrorAnswer),
        (status = 413, description = "`csv_too_large`.", body = ErrorAnswer),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorAnswer),
        (status = 422, description = "`invalid_csv`, `invalid_webhook_url` (each problem in `problems`), \
                                      `idempotency_key_reused`.", body = ErrorAnswer),
        (status = 429, description = "`quota_exceeded`.", body = ErrorAnswer,
         headers(("Retry-After" = u32, description = "Seconds to wait before uploading again."))),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_upload(&headers, query.webhook_url, body).await {
        Ok(form) => form,
        Err(rejection) => return error(rejection.status, rejection.code, rejection.message),
    };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str().ok().map(IdempotencyKey::parse) {
            Some(Ok(key)) => Some(key),
            _ => return error(StatusCode::BAD_REQUEST, "invalid_idempotency_key", InvalidIdempotencyKey.to_string()),
        },
    };
    let upload = Upload {
        tenant: &caller.0,
        csv: &form.csv,
        webhook_url: form.webhook_url.as_deref(),
        idempotency_key: idempotency_key.as_ref(),
    };
    let rules = UploadRules { limits: &state.config.csv_limits, quota: state.config.quota };
    let ports = AcceptPorts::with_table(&state.blobs, &state.queue, &state.table);
    match accept_upload(ports, &upload, &rules, &state.signing_key).await {
        Ok(accepted) => {
            let id = accepted.request_id;
            tracing::info!(request_id = %id, tenant = %caller.0, stage = "accepted", images = accepted.image_count, replayed = accepted.replayed);
            let secret = accepted.webhook_secret.map(|secret| secret.to_string());
            let body = Json(Accepted::new(&origin(&headers), id, accepted.image_count, secret));
            let replayed = [("idempotent-replayed", if accepted.replayed { "true" } else { "false" })];
            (StatusCode::ACCEPTED, replayed, body).into_response()
        }
        Err(AcceptError::OverQuota { max_open_images }) => over_quota(max_open_images, "upload"),
        Err(AcceptError::KeyReused) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different upload (another CSV or webhook_url)",
        ),
        Err(AcceptError::KeyInProgress) => error(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            "an upload with this Idempotency-Key is still in progress; try again in a moment",
        ),
        Err(AcceptError::Csv(CsvRejection::TooLarge { limit })) => {
            let large = state.config.bucket_csv_limits.max_bytes;
            let message = format!(
                "the CSV is larger than {limit} bytes, the most an upload's body can carry; send CSVs of up to \
                 {large} bytes with POST /api/uploads (a presigned upload)"
            );
            error(StatusCode::PAYLOAD_TOO_LARGE, "csv_too_large", message)
        }
        Err(AcceptError::Csv(CsvRejection::Invalid(problems))) => {
            invalid("invalid_csv", "the CSV was not accepted; nothing was queued", problems)
        }
        Err(AcceptError::WebhookUrl(reason)) => {
            let problem = CsvProblem { line: None, column: None, message: format!("webhook_url: {reason}") };
            let limit = state.config.csv_limits.max_url_length;
            let message = format!("webhook_url is not an absolute http(s) URL of at most {limit} characters");
            invalid("invalid_webhook_url", &message, vec![problem])
        }
        Err(cause @ AcceptError::Store(_)) => unavailable("accept", &cause),
    }
}

/// 429 to a new request (`what`: upload, retry) whose images would not fit the caller's quota.
pub fn over_quota(max_open_images: u64, what: &str) -> Response {
    let message = format!(
        "more than {max_open_images} images of yours would be in progress; nothing was stored: \
         {what} again once some of your requests have ended"
    );
    let retry_after = [(header::RETRY_AFTER, QUOTA_RETRY_AFTER_SECS.to_string())];
    (retry_after, error(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)).into_response()
}
