//! `GET /api/requests`: the caller's requests, newest first, a page at a time.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use imgpipe_core::ports::ListRequests;
use serde::Deserialize;

use crate::answers::{Cursor, RequestSummary, RequestsPage, error};
use crate::caller::Caller;
use crate::requests::{DEFAULT_PAGE, MAX_PAGE};
use crate::routes::{AppState, origin, unavailable};

#[derive(Deserialize)]
pub struct ListQuery {
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

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
