//! The API's routes, and what every answer shares. Status codes are decided in the handlers
//! (`upload`, `requests`), from the core's error variants; clients get stable `error` codes and
//! readable messages, never internal details.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue};
use imgpipe_core::config::ApiConfig;
use imgpipe_core::domain::webhook_signature::WebhookSigningKey;
use imgpipe_core::ports::BlobStore;

use crate::answers::{Health, error};
use crate::list::list_requests;
use crate::manage::{cancel, retry};
use crate::openapi::openapi_json;
use crate::requests::{errors_csv, image, images_page, output_csv, status};
use crate::upload::upload;
use crate::uploads::reserve;

pub struct AppState {
    pub blobs: S3Blobs,
    pub table: DynamoTable,
    pub queue: SqsQueue,
    /// Each request's webhook secret is derived from it, to show in the upload's answer.
    pub signing_key: WebhookSigningKey,
    pub config: ApiConfig,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/upload/", post(upload))
        .route("/api/upload", post(upload))
        .route("/api/uploads", post(reserve))
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/requests", get(list_requests))
        .route("/api/status/{request_id}/", get(status))
        .route("/api/status/{request_id}", get(status))
        .route("/api/requests/{request_id}/output.csv", get(output_csv))
        .route("/api/requests/{request_id}/errors.csv", get(errors_csv))
        .route("/api/requests/{request_id}/images", get(images_page))
        .route("/api/requests/{request_id}/images/{image_index}", get(image))
        .route("/api/requests/{request_id}/cancel", post(cancel))
        .route("/api/requests/{request_id}/retry", post(retry))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        // After the routes: it applies to those registered before it. The framework adds `Allow`.
        .method_not_allowed_fallback(|method: Method| async move {
            let message = format!("this endpoint does not accept {method}; the Allow header lists what it does");
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
        })
        // The CSV rules enforce the size limit with a clear answer; API Gateway caps bodies anyway.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(state))
}

/// For load balancers and uptime checks: answers without a key and reads nothing.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "service",
    summary = "The API is up",
    security(()),
    responses((status = 200, description = "Always `{\"status\": \"ok\"}`.", body = Health)),
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

pub fn unavailable(what: &str, cause: &dyn std::error::Error) -> Response {
    tracing::error!(stage = what, error = %cause);
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service is unavailable; try again shortly")
}

/// The API's own origin as the client reached it, for absolute links in answers.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("http");
    format!("{scheme}://{host}")
}

pub async fn redirect_to(state: &AppState, key: &str) -> Response {
    match state.blobs.presigned_get_url(key, state.config.url_lifetime).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(cause) => unavailable("download", &cause),
    }
}
