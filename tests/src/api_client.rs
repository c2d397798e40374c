//! The API as a client sees it: upload, poll, download, with an API key (the default test
//! tenant's unless told otherwise). Every answer of the API is held against its OpenAPI
//! description on the way (crate::openapi).

use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;
use serde_json::Value;

use crate::multipart_form;
use crate::openapi::check_answer;
use crate::stack::{DEFAULT_TENANT, LocalStack};

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    /// The `Authorization` header sent to the API (never to the presigned S3 URLs it redirects to).
    authorization: Option<String>,
}

/// An answer: HTTP status and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

const FINAL: [&str; 4] = ["completed", "completed_with_errors", "failed", "cancelled"];

impl ApiClient {
    /// A client of the default test tenant.
    pub fn new(stack: &LocalStack) -> Self {
        Self::for_tenant(stack, DEFAULT_TENANT)
    }

    /// A client with a key of `tenant` (made once per test process, `LocalStack::key_for`).
    pub fn for_tenant(stack: &LocalStack, tenant: &str) -> Self {
        Self::with_authorization(stack, Some(&format!("Bearer {}", stack.key_for(tenant))))
    }

    /// A client that sends no `Authorization` header.
    pub fn without_key(stack: &LocalStack) -> Self {
        Self::with_authorization(stack, None)
    }

    /// A client that sends this `Authorization` header as it is, or none.
    pub fn with_authorization(stack: &LocalStack, authorization: Option<&str>) -> Self {
        Self {
            http: stack.http_client_with(None),
            base: stack.api_url.clone(),
            authorization: authorization.map(str::to_string),
        }
    }

    /// A request with the key when `url` is the API's.
    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, &url);
        match &self.authorization {
            Some(value) if url.starts_with(&self.base) => request.header(AUTHORIZATION, value),
            _ => request,
        }
    }

    /// Sends a request; an answer of the API is checked against the description (and handed
    /// back whole, its body read once).
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
        let request = request.build().unwrap_or_else(|e| panic!("{what}: {e}"));
        let (method, url) = (request.method().clone(), request.url().to_string());
        let response = self.http.execute(request).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let Some(path) = url.strip_prefix(&self.base) else { return response };
        let path = path.split('?').next().unwrap_or(path);
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.bytes().await.unwrap_or_else(|e| panic!("{what}: read the body: {e}"));
        let content_type = headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        check_answer(method.as_str(), path, status.as_u16(), content_type, &body);
        let mut rebuilt = axum::http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.headers_mut() = headers;
        reqwest::Response::from(rebuilt)
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    /// POST /api/upload/ as a form with the CSV in `file` and an optional `webhook_url`.
    pub async fn upload(&self, csv: &[u8], webhook_url: Option<&str>) -> Answer {
        let mut fields = vec![("file", Some("products.csv"), csv)];
        if let Some(url) = webhook_url {
            fields.push(("webhook_url", None, url.as_bytes()));
        }
        let (content_type, body) = multipart_form(&fields);
        let request = self
            .request(reqwest::Method::POST, format!("{}/api/upload/", self.base))
            .header("content-type", content_type)
            .body(body);
        let response = self.send(request, "upload reaches the API").await;
        Self::answer(response).await
    }

    /// POST /api/upload/ as `upload` does, with an `Idempotency-Key`; whether the answer says
    /// it was replayed (`Idempotent-Replayed: true`).
    pub async fn upload_with_key(&self, csv: &[u8], idempotency_key: &str) -> (Answer, bool) {
        let (content_type, body) = multipart_form(&[("file", Some("products.csv"), csv)]);
        let request = self
            .request(reqwest::Method::POST, format!("{}/api/upload/", self.base))
            .header("content-type", content_type)
            .header("idempotency-key", idempotency_key)
            .body(body);
        let response = self.send(request, "upload reaches the API").await;
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|value| value == "true");
        (Self::answer(response).await, replayed)
    }

    /// POST /api/upload/ with the CSV as the whole body.
    pub async fn upload_raw(&self, csv: &[u8], content_type: &str) -> Answer {
        let request = self
            .request(reqwest::Method::POST, format!("{}/api/upload/", self.base))
            .header("content-type", content_type)
            .body(csv.to_vec());
        let response = self.send(request, "upload reaches the API").await;
        Self::answer(response).await
    }

    /// POST /api/uploads with this JSON body (or none): a reserved upload's presigned PUT.
    pub async fn reserve_upload(&self, body: &str) -> Answer {
        let response = self
            .request(reqwest::Method::POST, format!("{}/api/uploads", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the reservation reaches the API");
        Self::answer(response).await
    }

    /// PUTs `csv` to a reserved upload's presigned URL, as any HTTP client would: no key, no
    /// header but those of the body.
    pub async fn put_to(&self, upload_url: &str, csv: &[u8]) -> u16 {
        let response =
            reqwest::Client::new().put(upload_url).body(csv.to_vec()).send().await.expect("the PUT reaches S3");
        response.status().as_u16()
    }

    pub async fn get(&self, path_or_url: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        self.send(self.request(reqwest::Method::GET, url), "GET reaches the API").await
    }

    /// POST to an API path without a body (`/api/requests/<id>/cancel`, `/retry`).
    pub async fn post(&self, path: &str) -> Answer {
        let response = self
            .request(reqwest::Method::POST, format!("{}{path}", self.base))
            .send()
            .await
            .expect("POST reaches the API");
        Self::answer(response).await
    }

    pub async fn status(&self, request_id: &str) -> Answer {
        Self::answer(self.get(&format!("/api/status/{request_id}/")).await).await
    }

    /// Polls the status until it is final; returns it and every distinct status seen, in order.
    pub async fn wait_until_final(&self, request_id: &str, timeout: Duration) -> (Value, Vec<String>) {
        let started = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let answer = self.status(request_id).await;
            assert_eq!(answer.status, 200, "status answers: {:?}", answer.body);
            let status = answer.body["status"].as_str().expect("a status").to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if FINAL.contains(&status.as_str()) {
                return (answer.body, seen);
            }
            assert!(
                started.elapsed() < timeout,
                "request {request_id} still {status} after {timeout:?}: {}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Follows a link that redirects to a presigned S3 URL and returns the bytes there.
    pub async fn download(&self, url: &str) -> Vec<u8> {
        let mut response = self.get(url).await;
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().expect("a Location").to_string();
            response = self.get(&location).await;
        }
        assert_eq!(response.status(), 200, "download of {url}");
        response.bytes().await.expect("body").to_vec()
    }
}
