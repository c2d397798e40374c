//! The API's calls about one request, typed: status, its images page by page, cancel, retry.

use reqwest::Method;

use crate::answers::{Accepted, Image, ImagesPage, RequestsPage, Status};
use crate::client::{Api, error_body, error_from, read_json, unreachable};
use crate::errors::CliError;

/// The largest page the images listing serves.
const IMAGES_PAGE: u32 = 1000;

/// A status poll: the status, or not yet (a CSV sent the large-CSV way and not accepted yet).
pub enum Polled {
    NotReady,
    Status(Box<Status>),
}

pub fn status_path(id: &str) -> String {
    format!("/api/status/{}/", encode(id))
}

pub async fn poll(api: &Api, id: &str) -> Result<Polled, CliError> {
    let path = status_path(id);
    let what = format!("GET {path}");
    let response = api.call(Method::GET, &path).send().await.map_err(|error| unreachable(&what, &error))?;
    if response.status().is_success() {
        return read_json(&what, response).await.map(|status| Polled::Status(Box::new(status)));
    }
    let (status, body) = error_body(response).await;
    if status == 404 && body.as_ref().is_some_and(|body| body.error == "not_ready") {
        return Ok(Polled::NotReady);
    }
    Err(error_from(&what, status, body))
}

/// Every image of the request in output order, read page by page.
pub async fn all_images(api: &Api, id: &str) -> Result<Vec<Image>, CliError> {
    let mut images = Vec::new();
    let mut after: Option<u32> = None;
    loop {
        let mut path = format!("/api/requests/{}/images?limit={IMAGES_PAGE}", encode(id));
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        let page: ImagesPage = api.get_json(&path).await?;
        images.extend(page.images);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(images),
        }
    }
}

pub async fn list_page(api: &Api, limit: u32, after: Option<&str>) -> Result<RequestsPage, CliError> {
    let mut path = format!("/api/requests?limit={limit}");
    if let Some(after) = after {
        path.push_str(&format!("&after={}", encode(after)));
    }
    api.get_json(&path).await
}

/// `POST /api/requests/<id>/cancel`: the request's final status.
pub async fn cancel(api: &Api, id: &str) -> Result<Status, CliError> {
    let path = format!("/api/requests/{}/cancel", encode(id));
    let what = format!("POST {path}");
    read_json(&what, api.send(&what, api.call(Method::POST, &path)).await?).await
}

/// `POST /api/requests/<id>/retry`: the new request, with `retry_of`.
pub async fn retry(api: &Api, id: &str) -> Result<Accepted, CliError> {
    let path = format!("/api/requests/{}/retry", encode(id));
    let what = format!("POST {path}");
    read_json(&what, api.send(&what, api.call(Method::POST, &path)).await?).await
}

/// An id or cursor as one path segment or query value: whatever the user typed stays inside it.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
