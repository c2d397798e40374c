//! The API's answers as the CLI reads them: only the fields it uses (docs/api.md has them all).
//! Unknown fields are ignored, so a newer API does not break an older CLI.

use serde::Deserialize;

use crate::errors::Problem;

/// Any error answer: a stable code, a message, and for refused input the problems.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Empty in the answers API Gateway makes itself (the authorizer's 403 `{"message": ...}`).
    #[serde(default)]
    pub error: String,
    pub message: String,
    #[serde(default)]
    pub problems: Option<Vec<Problem>>,
}

/// 202 to an upload (and to a retry, with `retry_of`).
#[derive(Debug, Deserialize)]
pub struct Accepted {
    pub request_id: String,
    pub images: u64,
    pub webhook_secret: Option<String>,
    #[serde(default)]
    pub retry_of: Option<String>,
}

/// 201 to `POST /api/uploads`: where to PUT a CSV too large to send inline.
#[derive(Debug, Deserialize)]
pub struct UploadSlot {
    pub request_id: String,
    pub upload_url: String,
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

/// `GET /api/status/<id>/`, and the answer to a cancel.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub request_id: String,
    pub status: String,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Images without a result when the request was cancelled (issue 13; 0 before it).
    #[serde(default)]
    pub cancelled: u64,
    pub pending: u64,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub output_csv_url: Option<String>,
    pub errors_csv_url: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub failures: Option<Vec<Failure>>,
    #[serde(default)]
    pub retry_of: Option<String>,
}

impl Status {
    /// The states that never change (`cancelled` from issue 13 on).
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "completed_with_errors" | "failed" | "cancelled")
    }

    /// Ended without its results: exit code 5.
    pub fn is_unsuccessful(&self) -> bool {
        matches!(self.status.as_str(), "failed" | "cancelled")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Failure {
    pub image_index: u32,
    pub row: u32,
    pub input_url: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// `GET /api/requests/<id>/images`: one page.
#[derive(Debug, Deserialize)]
pub struct ImagesPage {
    pub images: Vec<Image>,
    pub next_after: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub image_index: u32,
    pub row: u32,
    pub input_url: String,
    pub state: String,
    pub output_url: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
}

/// `GET /api/requests`: one page, newest first.
#[derive(Debug, Deserialize)]
pub struct RequestsPage {
    /// Each entry is the request's progress as its status answer shows it (the links are absent
    /// from a listing, so `None`).
    pub requests: Vec<Status>,
    pub next: Option<String>,
}
