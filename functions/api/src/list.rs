//! `GET /api/requests`: the caller's requests, newest first, a page at a time.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use imgpipe_core::ports::ListRequests;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::answers::{Cursor, ErrorAnswer, RequestSummary, RequestsPage, error};
use crate::caller::Caller;
use crate::openapi::GatewayRefusal;
use crate::requests::{DEFAULT_PAGE, MAX_PAGE};
use crate::routes::{AppState, origin, unavailable};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Requests per page: 100 by default; below 1 counts as 1, above 1000 as 1000.
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/requests",
    tag = "requests",
    summary = "Your requests, newest first, a page at a time",
    params(ListQuery),
    responses(
        (status = 200, description = "One page.", body = RequestsPage),
        (status = 400, description = "`invalid_cursor` (JSON); a `limit` that is not a number is refused by the \
                                      web framework in plain text.",
         content((ErrorAnswer = "application/json"), (String = "text/plain"))),
        (status = 401, description = "No API key (API Gateway).", body = GatewayRefusal),
        (status = 403, description = "The API key is not valid (API Gateway).", body = GatewayRefusal),
        (status = 503, description = "`unavailable`: try again shortly.", body = ErrorAnswer),
    ),
)]
pub async fn list_requests(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = match query.after.as_deref().map(Cursor::decode) {
        None => None,
        Some(Some(page)) => Some(page),
        Some(None) => return error(StatusCode::BAD_REQUEST, "invalid_cursor", "after must be a page's next value"),
    };
    match state.table.requests_of(&caller.0, after.as_ref(), limit).await {
        Ok((requests, next)) => {
            let origin = origin(&headers);
            let requests = requests.iter().map(|request| RequestSummary::new(&origin, request)).collect();
            Json(RequestsPage { requests, next: next.as_ref().map(Cursor::encode) }).into_response()
        }
        Err(cause) => unavailable("list_requests", &cause),
    }
}
