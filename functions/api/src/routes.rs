//! Routes and their answers. Status codes are decided here, from the core's error variants;
//! clients get stable `error` codes and readable messages, never internal details.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::config::ApiConfig;
use imgpipe_core::domain::csv_rules::{CsvProblem, CsvRejection};
use imgpipe_core::domain::locations::errors_csv_key;
use imgpipe_core::domain::request::{ImageState, RequestRecord};
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::ports::{BlobStore, ReadRequest, ReadResults};
use imgpipe_core::use_cases::accept_upload::{AcceptError, AcceptPorts, accept_csv};
use imgpipe_core::use_cases::list_images::list_images;
use serde::Deserialize;
use std::sync::Arc;

use crate::answers::{Accepted, Failure, Image, ImagesPage, Status, error, invalid};
use crate::upload_form::read_upload;

pub struct AppState {
    pub blobs: S3Blobs,
    pub table: DynamoTable,
    pub queue: SqsQueue,
    pub config: ApiConfig,
}

/// Failed images listed in a status answer, so the reasons are visible without a download.
const MAX_LISTED_FAILURES: usize = 100;
/// Images per page of `/images`, by default and at most.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/upload/", post(upload))
        .route("/api/upload", post(upload))
        .route("/api/status/{request_id}/", get(status))
        .route("/api/status/{request_id}", get(status))
        .route("/api/requests/{request_id}/output.csv", get(output_csv))
        .route("/api/requests/{request_id}/errors.csv", get(errors_csv))
        .route("/api/requests/{request_id}/images", get(images_page))
        .route("/api/requests/{request_id}/images/{image_index}", get(image))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        // The CSV rules enforce the size limit with a clear answer; API Gateway caps bodies anyway.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(state))
}

fn unavailable(what: &str, cause: &dyn std::error::Error) -> Response {
    tracing::error!(stage = what, error = %cause);
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service is unavailable; try again shortly")
}

/// The API's own origin as the client reached it, for absolute links in answers.
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("http");
    format!("{scheme}://{host}")
}

#[derive(Deserialize)]
struct UploadQuery {
    webhook_url: Option<String>,
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_upload(&headers, query.webhook_url, body).await {
        Ok(form) => form,
        Err(rejection) => return error(rejection.status, rejection.code, rejection.message),
    };
    let ports =
        AcceptPorts { blobs: &state.blobs, new_requests: &state.table, lifecycle: &state.table, queue: &state.queue };
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
            invalid("invalid_webhook_url", "webhook_url is not an absolute http(s) URL", vec![problem])
        }
        Err(cause @ (AcceptError::Store(_) | AcceptError::NoRandomness(_))) => unavailable("accept", &cause),
    }
}

async fn find_request(state: &AppState, raw_id: &str) -> Result<RequestRecord, Response> {
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no request with this id");
    let id: RequestId = raw_id.parse().map_err(|_| not_found())?;
    match state.table.get(id).await {
        Ok(Some(request)) => Ok(request),
        Ok(None) => Err(not_found()),
        Err(cause) => Err(unavailable("status", &cause)),
    }
}

async fn status(State(state): State<Arc<AppState>>, Path(raw_id): Path<String>, headers: HeaderMap) -> Response {
    let request = match find_request(&state, &raw_id).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let failures = if request.failed > 0 {
        match state.table.failed_images(request.request_id, MAX_LISTED_FAILURES).await {
            Ok(images) => Some(images.into_iter().map(Failure::from).collect()),
            Err(cause) => return unavailable("status", &cause),
        }
    } else {
        None
    };
    Json(Status::new(&origin(&headers), &request, failures)).into_response()
}

async fn output_csv(State(state): State<Arc<AppState>>, Path(raw_id): Path<String>) -> Response {
    let request = match find_request(&state, &raw_id).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let Some(key) = request.output_csv_key else {
        let message =
            format!("the output CSV is written when the request finishes (status: {})", request.status.as_str());
        return error(StatusCode::NOT_FOUND, "not_ready", message);
    };
    match state.blobs.presigned_get_url(&key, state.config.url_lifetime).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(cause) => unavailable("output_csv", &cause),
    }
}

/// Redirects to the errors report of a finished request with failed images.
async fn errors_csv(State(state): State<Arc<AppState>>, Path(raw_id): Path<String>) -> Response {
    let request = match find_request(&state, &raw_id).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if request.has_errors_report() {
        return redirect_to(&state, &errors_csv_key(request.request_id)).await;
    }
    if request.output_csv_key.is_none() {
        let message =
            format!("the errors report is written when the request finishes (status: {})", request.status.as_str());
        return error(StatusCode::NOT_FOUND, "not_ready", message);
    }
    error(StatusCode::NOT_FOUND, "no_errors", "no image of this request failed")
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<u32>,
    /// The `next_after` of the previous page.
    after: Option<u32>,
}

/// Every image of a request with its state and result, in output order, a page at a time.
async fn images_page(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let request = match find_request(&state, &raw_id).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (images, next_after) = match list_images(&state.table, &state.blobs, &request, page.after, limit).await {
        Ok(page) => page,
        Err(cause) => return unavailable("images", &cause),
    };
    let origin = origin(&headers);
    let images = images.into_iter().map(|image| Image::new(&origin, image)).collect();
    Json(ImagesPage { request_id: request.request_id, total: request.total, images, next_after }).into_response()
}

/// Redirects to a fresh presigned URL of one output image.
async fn image(State(state): State<Arc<AppState>>, Path((raw_id, image_index)): Path<(String, u32)>) -> Response {
    let request = match find_request(&state, &raw_id).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if u64::from(image_index) >= request.total {
        return error(StatusCode::NOT_FOUND, "not_found", "no image with this index");
    }
    let image = match state.table.recorded_images_between(request.request_id, image_index, image_index).await {
        Ok(images) => images.into_iter().next(),
        Err(cause) => return unavailable("image", &cause),
    };
    let Some(image) = image else { return error(StatusCode::NOT_FOUND, "not_ready", "this image has no result yet") };
    match (image.state, image.output_key) {
        (ImageState::Done, Some(key)) => redirect_to(&state, &key).await,
        (ImageState::Failed, _) => error(
            StatusCode::NOT_FOUND,
            "image_failed",
            format!("this image failed: {}", image.error_message.unwrap_or_default()),
        ),
        _ => error(StatusCode::NOT_FOUND, "not_ready", "this image has no result yet"),
    }
}

async fn redirect_to(state: &AppState, key: &str) -> Response {
    match state.blobs.presigned_get_url(key, state.config.url_lifetime).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(cause) => unavailable("download", &cause),
    }
}
