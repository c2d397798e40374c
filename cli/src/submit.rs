//! `imgpipe submit`: a CSV up to the inline limit goes in the upload's body (`POST
//! /api/upload/`); a larger one, or one the API answers 413 `csv_too_large`, goes the
//! large-CSV way: `POST /api/uploads` for a presigned URL, then a plain PUT of the bytes.

use reqwest::Method;

use crate::answers::{Accepted, UploadSlot};
use crate::client::{Api, error_body, error_from, read_json, unreachable};
use crate::errors::CliError;

/// The API's inline limit (`MAX_CSV_BYTES`, docs/api.md): what an API Gateway HTTP API and a
/// synchronous Lambda invocation can carry. Above it the CLI does not try inline at all, so a
/// 100 MB CSV is not sent twice; at or below it, a 413 from a stack with a lower limit still
/// falls back to the large-CSV way.
pub const DEFAULT_INLINE_LIMIT: u64 = 4 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Way {
    Inline,
    Presigned,
}

pub fn way_for(size: u64, inline_limit: u64) -> Way {
    if size <= inline_limit { Way::Inline } else { Way::Presigned }
}

/// Whether an inline upload's refusal means "send it the large-CSV way".
pub fn is_too_large(status: u16, error_code: &str) -> bool {
    status == 413 && error_code == "csv_too_large"
}

pub struct Submission<'a> {
    pub csv: Vec<u8>,
    pub webhook_url: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub inline_limit: u64,
}

/// What was accepted: the request id, and the webhook secret when there is a webhook.
pub struct Submitted {
    pub request_id: String,
    pub webhook_secret: Option<String>,
    pub way: Way,
}

pub async fn submit(api: &Api, submission: Submission<'_>) -> Result<Submitted, CliError> {
    if way_for(submission.csv.len() as u64, submission.inline_limit) == Way::Inline {
        match upload_inline(api, &submission).await? {
            Inline::Accepted(accepted) => {
                return Ok(Submitted {
                    request_id: accepted.request_id,
                    webhook_secret: accepted.webhook_secret,
                    way: Way::Inline,
                });
            }
            Inline::TooLarge => {}
        }
    }
    upload_presigned(api, &submission).await
}

enum Inline {
    Accepted(Accepted),
    TooLarge,
}

async fn upload_inline(api: &Api, submission: &Submission<'_>) -> Result<Inline, CliError> {
    let what = "POST /api/upload/";
    let path = match submission.webhook_url {
        Some(webhook) => {
            let query =
                url::form_urlencoded::Serializer::new(String::new()).append_pair("webhook_url", webhook).finish();
            format!("/api/upload/?{query}")
        }
        None => "/api/upload/".to_string(),
    };
    let mut request =
        api.call(Method::POST, &path).header(reqwest::header::CONTENT_TYPE, "text/csv").body(submission.csv.clone());
    if let Some(key) = submission.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.map_err(|error| unreachable(what, &error))?;
    if response.status().is_success() {
        return read_json(what, response).await.map(Inline::Accepted);
    }
    let (status, body) = error_body(response).await;
    if is_too_large(status, body.as_ref().map_or("", |body| body.error.as_str())) {
        return Ok(Inline::TooLarge);
    }
    Err(error_from(what, status, body))
}

async fn upload_presigned(api: &Api, submission: &Submission<'_>) -> Result<Submitted, CliError> {
    let what = "POST /api/uploads";
    let body = match submission.webhook_url {
        Some(webhook) => serde_json::json!({ "webhook_url": webhook }),
        None => serde_json::json!({}),
    };
    if submission.idempotency_key.is_some() {
        eprintln!("note: POST /api/uploads keeps no Idempotency-Key: submitting this CSV again makes another request");
    }
    let request = api.call(Method::POST, "/api/uploads").json(&body);
    let slot: UploadSlot = read_json(what, api.send(what, request).await?).await?;
    let size = submission.csv.len() as u64;
    if let Some(max) = slot.max_bytes.filter(|max| size > *max) {
        return Err(CliError::Refused {
            message: format!("the CSV has {size} bytes, more than the {max} the API takes"),
            problems: vec![],
        });
    }
    api.put_presigned(&slot.upload_url, submission.csv.clone()).await?;
    Ok(Submitted { request_id: slot.request_id, webhook_secret: slot.webhook_secret, way: Way::Presigned })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_limit_decides_the_way_and_a_413_csv_too_large_falls_back() {
        assert_eq!(way_for(0, DEFAULT_INLINE_LIMIT), Way::Inline);
        assert_eq!(way_for(DEFAULT_INLINE_LIMIT, DEFAULT_INLINE_LIMIT), Way::Inline);
        assert_eq!(way_for(DEFAULT_INLINE_LIMIT + 1, DEFAULT_INLINE_LIMIT), Way::Presigned);
        assert_eq!(way_for(100, 10), Way::Presigned, "a lower --inline-limit");
        assert!(is_too_large(413, "csv_too_large"));
        assert!(!is_too_large(413, "payload_too_large"), "only the API's own refusal");
        assert!(!is_too_large(422, "invalid_csv"));
    }
}
