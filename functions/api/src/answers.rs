//! Every JSON body the API answers with, as a type: what docs/api.md documents, and what the
//! OpenAPI description (openapi.rs) is generated from, is what the code serialises.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use imgpipe_core::domain::csv_rules::CsvProblem;
use imgpipe_core::domain::http_url::HttpUrl;
use imgpipe_core::domain::locations::{errors_csv_path, image_path, images_path, output_csv_path, status_path};
use imgpipe_core::domain::request::{ImageRecord, ImageState, RequestRecord, RequestStatus};
use imgpipe_core::domain::request_id::RequestId;
use imgpipe_core::domain::upload_reservation::UploadReservation;
use imgpipe_core::ports::RequestPage;
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: a stable code, a readable message and, for refused input, each problem by line.
#[derive(Serialize, ToSchema)]
pub struct ErrorAnswer {
    /// A stable code; each route's responses in the description list the codes it answers.
    #[schema(example = "not_found")]
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<CsvProblem>>,
}

pub fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    (status, Json(ErrorAnswer { error: code, message: message.into(), problems: None })).into_response()
}

/// 422: the input was read and broke rules, each listed.
pub fn invalid(code: &'static str, message: &str, problems: Vec<CsvProblem>) -> Response {
    let body = ErrorAnswer { error: code, message: message.into(), problems: Some(problems) };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// 202 to an accepted upload.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub request_id: RequestId,
    pub status_url: String,
    pub images: u64,
    /// Shown once: the webhook is signed with it (Standard Webhooks). `null` without a webhook.
    pub webhook_secret: Option<String>,
}

impl Accepted {
    pub fn new(origin: &str, request_id: RequestId, images: u64, webhook_secret: Option<String>) -> Self {
        Self { request_id, status_url: format!("{origin}{}", status_path(request_id)), images, webhook_secret }
    }
}

/// 201 to `POST /api/uploads`: where to PUT the CSV, and the request it will become.
#[derive(Serialize, ToSchema)]
pub struct UploadReserved {
    /// The id of the request the CSV becomes; `GET status_url` answers 404 `not_ready` until
    /// it is accepted.
    pub request_id: RequestId,
    /// A presigned S3 URL: PUT the CSV's bytes to it, with no other header required.
    pub upload_url: String,
    /// When `upload_url` stops working.
    pub expires_at: DateTime<Utc>,
    pub status_url: String,
    /// The largest CSV accepted through this path, in bytes.
    pub max_bytes: u64,
    /// Shown once: the webhook is signed with it (Standard Webhooks). `null` without a webhook.
    pub webhook_secret: Option<String>,
}

impl UploadReserved {
    pub fn new(
        origin: &str,
        reservation: &UploadReservation,
        upload_url: String,
        max_bytes: u64,
        webhook_secret: Option<String>,
    ) -> Self {
        let id = reservation.request_id;
        Self {
            request_id: id,
            upload_url,
            expires_at: reservation.upload_expires_at,
            status_url: format!("{origin}{}", status_path(id)),
            max_bytes,
            webhook_secret,
        }
    }
}

/// 202 to a retry (`POST /api/requests/<id>/retry`): the new request, accepted as an upload is,
/// and the request it retries.
#[derive(Serialize, ToSchema)]
pub struct RetryAccepted {
    #[serde(flatten)]
    pub accepted: Accepted,
    pub retry_of: RequestId,
}

/// What every view of a request shows: its state and counts.
#[derive(Serialize, ToSchema)]
pub struct Progress {
    pub request_id: RequestId,
    pub status: RequestStatus,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Images without a result when the request was cancelled; 0 unless `status` is `cancelled`.
    pub cancelled: u64,
    pub pending: u64,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The request this one retries (`POST /api/requests/<id>/retry`); `null` otherwise.
    pub retry_of: Option<RequestId>,
}

impl From<&RequestRecord> for Progress {
    fn from(request: &RequestRecord) -> Self {
        Self {
            request_id: request.request_id,
            status: request.status,
            total: request.total,
            succeeded: request.succeeded,
            failed: request.failed,
            cancelled: request.cancelled,
            pending: request.pending_images(),
            created_at: request.created_at,
            completed_at: request.completed_at,
            retry_of: request.retry_of,
        }
    }
}

/// `GET /api/status/<id>/`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    #[serde(flatten)]
    pub progress: Progress,
    pub updated_at: DateTime<Utc>,
    pub output_csv_url: Option<String>,
    pub errors_csv_url: Option<String>,
    pub images_url: String,
    /// Why the request was failed without waiting for its images (its fan-out could not be
    /// queued, its CSV was lost, or it could not be swept); `null` otherwise.
    pub failure_reason: Option<String>,
    /// Only when images failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<Vec<Failure>>,
}

impl Status {
    pub fn new(origin: &str, request: &RequestRecord, failures: Option<Vec<Failure>>) -> Self {
        let id = request.request_id;
        Self {
            progress: request.into(),
            updated_at: request.updated_at,
            output_csv_url: request.output_csv_key.as_ref().map(|_| format!("{origin}{}", output_csv_path(id))),
            errors_csv_url: request.has_errors_report().then(|| format!("{origin}{}", errors_csv_path(id))),
            images_url: format!("{origin}{}", images_path(id)),
            failure_reason: request.failure_reason.clone(),
            failures,
        }
    }
}

/// One failed image in a status answer.
#[derive(Serialize, ToSchema)]
pub struct Failure {
    pub image_index: u32,
    /// 1-based data row.
    pub row: u32,
    pub input_url: HttpUrl,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl From<ImageRecord> for Failure {
    fn from(image: ImageRecord) -> Self {
        Self {
            image_index: image.image_index,
            row: image.row + 1,
            input_url: image.input_url,
            error_code: image.error_code,
            error_message: image.error_message,
        }
    }
}

/// `GET /api/requests/<id>/images`: one page.
#[derive(Serialize, ToSchema)]
pub struct ImagesPage {
    pub request_id: RequestId,
    pub total: u64,
    pub images: Vec<Image>,
    /// The `after` of the next page; `null` on the last.
    pub next_after: Option<u32>,
}

/// One image, with its state and result.
#[derive(Serialize, ToSchema)]
pub struct Image {
    pub image_index: u32,
    /// 1-based data row.
    pub row: u32,
    pub input_url: HttpUrl,
    pub state: ImageState,
    /// The API link that redirects to the output image, for DONE images.
    pub output_url: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub note: Option<String>,
}

impl Image {
    pub fn new(origin: &str, image: ImageRecord) -> Self {
        let output_url = (image.state == ImageState::Done)
            .then(|| format!("{origin}{}", image_path(image.request_id, image.image_index)));
        Self {
            image_index: image.image_index,
            row: image.row + 1,
            input_url: image.input_url,
            state: image.state,
            output_url,
            error_code: image.error_code,
            error_message: image.error_message,
            bytes_in: image.bytes_in,
            bytes_out: image.bytes_out,
            note: image.note,
        }
    }
}

/// `GET /api/health`, the one route without a key.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /api/requests`: one page of the caller's requests, newest first.
#[derive(Serialize, ToSchema)]
pub struct RequestsPage {
    pub requests: Vec<RequestSummary>,
    /// The `after` of the next page; `null` on the last.
    pub next: Option<String>,
}

/// One request in a listing; its status answer has the rest.
#[derive(Serialize, ToSchema)]
pub struct RequestSummary {
    #[serde(flatten)]
    pub progress: Progress,
    pub status_url: String,
}

impl RequestSummary {
    pub fn new(origin: &str, request: &RequestRecord) -> Self {
        Self { progress: request.into(), status_url: format!("{origin}{}", status_path(request.request_id)) }
    }
}

/// A page's end as the API shows it: opaque text (base64url of the last request's creation time
/// and id), so callers pass it back and never build one.
pub struct Cursor;

impl Cursor {
    pub fn encode(page: &RequestPage) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", page.created_at.to_rfc3339(), page.request_id))
    }

    pub fn decode(text: &str) -> Option<RequestPage> {
        let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let (created_at, request_id) = decoded.split_once('|')?;
        let created_at = DateTime::parse_from_rfc3339(created_at).ok()?.with_timezone(&Utc);
        Some(RequestPage { created_at, request_id: request_id.parse().ok()? })
    }
}
