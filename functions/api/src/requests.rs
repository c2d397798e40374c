//! The routes that read a request: its status, its images a page at a time, and redirects to
//! its output CSV, errors report and output images.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use imgpipe_core::domain::locations::errors_csv_key;
use imgpipe_core::domain::request::{CANCELLED_MESSAGE, ImageState, RequestRecord, RequestStatus};
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::domain::upload_reservation::ReservedStatus;
use imgpipe_core::ports::{ReadRequest, ReadResults, UploadReservations};
use imgpipe_core::use_cases::list_images::{first_failures, list_images};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::answers::{ErrorAnswer, Failure, Image, ImagesPage, Status, error, invalid};
use crate::caller::{Caller, OwnRequest};
use crate::openapi::GatewayRefusal;
use crate::routes::{AppState, origin, redirect_to, unavailable};

/// Failed images listed in a status answer, so the reasons are visible without a download.
const MAX_LISTED_FAILURES: usize = 100;
/// Images per page of `/images`, and requests per page of `/api/requests`, by default and at most.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

/// The request's status; for an id `POST /api/uploads` reserved whose CSV has no request yet,
/// 404 `not_ready`, or 422 with why its CSV was refused.
#[utoipa::path(
    get,
    path = "/api/status/{request_id}/",
    tag = "requests",
    summary = "A request's state and counts",
    description = "Also at `/api/status/{request_id}`.",
    params(("request_id" = RequestId, Path, description = "The request's id, from the upload's answer.")),
    responses(
        (status = 200, description = "The request.", body = Status),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found`: no request of yours with this id; `not_ready`: an id reserved by `POST /api/uploads` whose CSV has not been accepted yet.", body = ErrorAnswer),
        (status = 422, description = "The CSV PUT to a reserved upload was refused: the code and `problems` an inline upload of it gets.", body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no request with this id");
    let Ok(id) = raw_id.parse::<RequestId>() else { return not_found() };
    match state.table.get(id).await {
        Ok(Some(request)) if request.tenant_id == caller.0 => return status_answer(&state, &request, &headers).await,
        Ok(Some(_)) => return not_found(),
        Ok(None) => {}
        Err(cause) => return unavailable("find_request", &cause),
    }
    let reservation = match state.table.reservation(id).await {
        Ok(Some(reservation)) => reservation,
        Ok(None) => return not_found(),
        Err(cause) => return unavailable("find_reservation", &cause),
    };
    match reservation.status_for(&caller.0) {
        ReservedStatus::NotFound => not_found(),
        ReservedStatus::NotReady { upload_expires_at } => {
            let expires = upload_expires_at.to_rfc3339();
            let message = if upload_expires_at < Utc::now() {
                format!(
                    "no CSV has been accepted for this request; its upload_url expired at {expires}: a CSV PUT \
                     before then is still being accepted, otherwise reserve a new upload with POST /api/uploads"
                )
            } else {
                format!(
                    "no CSV has been accepted for this request yet: PUT it to its upload_url (valid until \
                     {expires}); it is accepted moments after it arrives"
                )
            };
            error(StatusCode::NOT_FOUND, "not_ready", message)
        }
        ReservedStatus::Refused(refusal) => {
            let message = format!("{}; reserve a new upload for the corrected CSV", refusal.message);
            invalid(refusal_code(&refusal.error), &message, refusal.problems.clone())
        }
    }
}

/// The stable code of a refused reserved upload: what the inline upload answers for the same
/// fault (`accept_dropped_csv` writes these).
fn refusal_code(code: &str) -> &'static str {
    match code {
        "invalid_csv" => "invalid_csv",
        "csv_too_large" => "csv_too_large",
        "quota_exceeded" => "quota_exceeded",
        "invalid_webhook_url" => "invalid_webhook_url",
        "unavailable" => "unavailable",
        _ => "upload_refused",
    }
}

/// 200 with the `Status` of `request`, its first failures listed.
pub async fn status_answer(state: &AppState, request: &RequestRecord, headers: &HeaderMap) -> Response {
    let failures = if request.failed + request.cancelled > 0 {
        match first_failures(&state.table, &state.blobs, request, MAX_LISTED_FAILURES).await {
            Ok(images) => Some(images.into_iter().map(Failure::from).collect()),
            Err(cause) => return unavailable("status", &cause),
        }
    } else {
        None
    };
    Json(Status::new(&origin(headers), request, failures)).into_response()
}

#[utoipa::path(
    get,
    path = "/api/requests/{request_id}/output.csv",
    tag = "outputs",
    summary = "Redirect to the output CSV",
    params(("request_id" = RequestId, Path, description = "The request's id, from the upload's answer.")),
    responses(
        (status = 302, description = "A presigned S3 GET URL in `Location`.", headers(("Location" = String, description = "The presigned URL."))),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found`; `not_ready`: the request has not finished.", body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn output_csv(State(state): State<Arc<AppState>>, OwnRequest(request): OwnRequest) -> Response {
    let Some(key) = request.output_csv_key else {
        let message =
            format!("the output CSV is written when the request finishes (status: {})", request.status.as_str());
        return error(StatusCode::NOT_FOUND, "not_ready", message);
    };
    redirect_to(&state, &key).await
}

/// Redirects to the errors report of a finished request with failed images.
#[utoipa::path(
    get,
    path = "/api/requests/{request_id}/errors.csv",
    tag = "outputs",
    summary = "Redirect to the errors report",
    params(("request_id" = RequestId, Path, description = "The request's id, from the upload's answer.")),
    responses(
        (status = 302, description = "A presigned S3 GET URL in `Location`.", headers(("Location" = String, description = "The presigned URL."))),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found`; `not_ready`: the request has not finished; `no_errors`: \
                                      no image of it failed.", body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn errors_csv(State(state): State<Arc<AppState>>, OwnRequest(request): OwnRequest) -> Response {
    if request.has_errors_report() {
        return redirect_to(&state, &errors_csv_key(&request.tenant_id, request.request_id)).await;
    }
    if request.output_csv_key.is_none() {
        let message =
            format!("the errors report is written when the request finishes (status: {})", request.status.as_str());
        return error(StatusCode::NOT_FOUND, "not_ready", message);
    }
    error(StatusCode::NOT_FOUND, "no_errors", "no image of this request failed")
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Images per page: 100 by default; below 1 counts as 1, above 1000 as 1000.
    pub limit: Option<u32>,
    /// The `next_after` of the previous page.
    pub after: Option<u32>,
}

/// Every image of a request with its state and result, in output order, a page at a time.
#[utoipa::path(
    get,
    path = "/api/requests/{request_id}/images",
    tag = "outputs",
    summary = "A request's images in output order, a page at a time",
    params(("request_id" = RequestId, Path, description = "The request's id, from the upload's answer."), PageQuery),
    responses(
        (status = 200, description = "One page.", body = ImagesPage),
        (status = 400, description = "A `limit` or `after` that is not a number, refused by the web framework.",
         content_type = "text/plain", body = String),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found`: no request of yours with this id.", body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn images_page(
    State(state): State<Arc<AppState>>,
    OwnRequest(request): OwnRequest,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
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
#[utoipa::path(
    get,
    path = "/api/requests/{request_id}/images/{image_index}",
    tag = "outputs",
    summary = "Redirect to one output image",
    params(("request_id" = RequestId, Path, description = "The request's id, from the upload's answer."), ("image_index" = u32, Path, description = "The image's `image_index`.")),
    responses(
        (status = 302, description = "A presigned S3 GET URL in `Location`.", headers(("Location" = String, description = "The presigned URL."))),
        (status = 400, description = "An `image_index` that is not a number, refused by the web framework.",
         content_type = "text/plain", body = String),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 404, description = "`not_found` (also an index not below `total`); `not_ready`: no result \
                                      yet; `image_failed`.", body = ErrorAnswer),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn image(
    State(state): State<Arc<AppState>>,
    OwnRequest(request): OwnRequest,
    Path((_, image_index)): Path<(String, u32)>,
) -> Response {
    if u64::from(image_index) >= request.total {
        return error(StatusCode::NOT_FOUND, "not_found", "no image with this index");
    }
    let image = match state.table.recorded_images_between(request.request_id, image_index, image_index).await {
        Ok(images) => images.into_iter().next(),
        Err(cause) => return unavailable("image", &cause),
    };
    let Some(image) = image else {
        if request.status == RequestStatus::Cancelled {
            let message = format!("this image failed: {CANCELLED_MESSAGE}");
            return error(StatusCode::NOT_FOUND, "image_failed", message);
        }
        return error(StatusCode::NOT_FOUND, "not_ready", "this image has no result yet");
    };
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
