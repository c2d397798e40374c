//! The misbehaving side of the image host: redirects (to anywhere, in chains), bodies that
//! never end or barely move, lying headers, error statuses and empty answers. Every
//! `ImageServer` serves these next to its fixtures, so a test can point at any of them.
//!
//! - `/redirect?to=<url-encoded>[&status=<3xx>]`: redirects to `to` (302 by default);
//! - `/chain/{n}`: 302 to `/chain/{n-1}`; `/chain/0` serves [`chain_image`];
//! - `/endless`: 200 `image/jpeg`, a JPEG start and then zeros, forever;
//! - `/huge`: announces `Content-Length: 1000000000`, sends a JPEG start and then nothing;
//! - `/trickle`: 200 `image/jpeg`, [`chain_image`] at one byte per second;
//! - `/status/{code}`: that status, with a short text body;
//! - `/empty`: 200 `image/jpeg` with an empty body;
//! - `/typed/{name}?as=<type>`: the fixture `name` with the Content-Type `as` (default
//!   `image/jpeg`), whatever it really is.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{StreamExt, stream};

use crate::fixtures::photo_jpeg;
use crate::servers::Files;

/// Start of a baseline JPEG: SOI, then an APP0 marker.
const JPEG_START: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00";

/// The image at the end of `/chain/0` and trickled by `/trickle`: a 120 x 90 photo.
pub fn chain_image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| photo_jpeg(120, 90, 3))
}

pub fn routes(files: Arc<Files>) -> Router {
    Router::new()
        .route("/redirect", get(redirect))
        .route("/chain/{n}", get(chain))
        .route("/endless", get(endless))
        .route("/huge", get(huge))
        .route("/trickle", get(trickle))
        .route("/status/{code}", get(status))
        .route("/empty", get(|| async { ([(header::CONTENT_TYPE, "image/jpeg")], Bytes::new()) }))
        .route("/typed/{name}", get(typed))
        .with_state(files)
}

async fn redirect(Query(query): Query<HashMap<String, String>>) -> Response {
    let status = query.get("status").and_then(|s| s.parse().ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let Some(to) = query.get("to") else { return (StatusCode::BAD_REQUEST, "?to= is required").into_response() };
    (status.unwrap_or(StatusCode::FOUND), [(header::LOCATION, to.as_str())]).into_response()
}

async fn chain(Path(n): Path<u32>) -> Response {
    match n {
        0 => ([(header::CONTENT_TYPE, "image/jpeg")], chain_image()).into_response(),
        n => (StatusCode::FOUND, [(header::LOCATION, format!("/chain/{}", n - 1))]).into_response(),
    }
}

async fn endless() -> Response {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let zeros = stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from_static(&ZEROS)));
    let body = stream::once(async { Ok(Bytes::from_static(JPEG_START)) }).chain(zeros);
    ([(header::CONTENT_TYPE, "image/jpeg")], Body::from_stream(body)).into_response()
}

async fn huge() -> Response {
    let body = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(JPEG_START)) }).chain(stream::pending());
    let headers = [(header::CONTENT_TYPE, "image/jpeg"), (header::CONTENT_LENGTH, "1000000000")];
    (headers, Body::from_stream(body)).into_response()
}

async fn trickle() -> Response {
    let bytes = stream::iter(chain_image().iter().copied()).then(|byte| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Bytes::copy_from_slice(&[byte]))
    });
    let first = stream::once(async { Ok(Bytes::from_static(&chain_image()[..1])) });
    // The first byte goes out at once, so the headers do too: the server answered, slowly.
    ([(header::CONTENT_TYPE, "image/jpeg")], Body::from_stream(first.chain(bytes.skip(1)))).into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(status) => (status, format!("status {code}")).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "not a status code").into_response(),
    }
}

async fn typed(
    State(files): State<Arc<Files>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let content_type = query.get("as").map_or("image/jpeg", String::as_str).to_owned();
    match files.get(&name) {
        Some((bytes, _)) => ([(header::CONTENT_TYPE, content_type)], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
