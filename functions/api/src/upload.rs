//! `POST /api/upload/`: a CSV in, a request id out (or every reason it was refused).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use imgpipe_core::domain::csv_rules::{CsvProblem, CsvRejection};
use imgpipe_core::use_cases::accept_upload::{AcceptError, AcceptPorts, accept_csv};
use serde::Deserialize;

use crate::answers::{Accepted, error, invalid};
use crate::routes::{AppState, origin, unavailable};
use crate::upload_form::read_upload;

#[derive(Deserialize)]
pub struct UploadQuery {
    pub webhook_url: Option<String>,
}

pub async fn upload(
    State(state): State<Arc<AppState>>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_upload(&headers, query.webhook_url, body).await {
        Ok(form) => form,
        Err(rejection) => return error(rejection.status, rejection.code, rejection.message),
    };
    let ports = AcceptPorts::with_table(&state.blobs, &state.queue, &state.table);
    match accept_csv(ports, &form.csv, form.webhook_url.as_deref(), &state.config.csv_limits).await {
        Ok(accepted) => {
            let id = accepted.request_id;
            tracing::info!(request_id = %id, stage = "accepted", images = accepted.image_count);
            let secret = accepted.webhook_secret.map(|secret| secret.to_string());
            let body = Accepted::new(&origin(&headers), id, accepted.image_count, secret);
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(AcceptError::Csv(CsvRejection::TooLarge { limit })) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, "csv_too_large", format!("the CSV is larger than {limit} bytes"))
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
        Err(cause @ (AcceptError::Store(_) | AcceptError::NoRandomness(_))) => unavailable("accept", &cause),
    }
}
