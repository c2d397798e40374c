//! Where a request's artefacts live: its objects in the bucket, its paths on the API, and how
//! the output CSV and the webhook link to what was produced.

use std::time::Duration;

use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

/// How the output CSV and the webhook link to what was produced.
#[derive(Clone, Debug)]
pub enum Links {
    /// Through the API (its base URL), which redirects to a fresh presigned URL each time:
    /// links that last as long as the objects do.
    Api { base_url: String },
    /// Presigned S3 URLs, for deployments without a public API. They expire after
    /// `lifetime` or with the credentials that signed them, whichever comes first.
    Presigned { lifetime: Duration },
}

/// What one link is: a URL already, or an object to presign (`use_cases::links` does that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Url(String),
    Presign { key: String, lifetime: Duration },
}

impl Links {
    /// The link to the artefact at API `path`, stored under `key`.
    pub fn to(&self, path: String, key: &str) -> Link {
        match self {
            Self::Api { base_url } => Link::Url(format!("{}{path}", base_url.trim_end_matches('/'))),
            Self::Presigned { lifetime } => Link::Presign { key: key.into(), lifetime: *lifetime },
        }
    }
}

/// The API path that redirects to an output image. Links in output CSVs use it rather than
/// presigned S3 URLs, which stop working when the credentials that signed them expire.
pub fn image_path(id: RequestId, image_index: u32) -> String {
    format!("/api/requests/{id}/images/{image_index}")
}

/// The API path of a request's state and progress.
pub fn status_path(id: RequestId) -> String {
    format!("/api/status/{id}/")
}

/// The API path of a request's images, a page at a time.
pub fn images_path(id: RequestId) -> String {
    format!("/api/requests/{id}/images")
}

/// The API path that redirects to a request's output CSV.
pub fn output_csv_path(id: RequestId) -> String {
    format!("/api/requests/{id}/output.csv")
}

/// The API path that redirects to a request's errors report (only when images failed).
pub fn errors_csv_path(id: RequestId) -> String {
    format!("/api/requests/{id}/errors.csv")
}

// Every object of a request lives under its tenant's prefix, `tenants/<tenant>/`, so that a
// tenant's data can be listed, exported or removed as a whole, and the functions' S3 policies
// name that prefix. (CSVs dropped into the bucket arrive under `incoming/<tenant>/`, with their
// receipts under `receipts/<tenant>/`: see `domain::dropped_csv`.)

/// Where the errors report is written: beside the output CSV, when images failed.
pub fn errors_csv_key(tenant: &TenantId, id: RequestId) -> String {
    format!("tenants/{tenant}/requests/{id}/errors.csv")
}

/// Where the uploaded CSV is kept.
pub fn input_csv_key(tenant: &TenantId, id: RequestId) -> String {
    format!("tenants/{tenant}/requests/{id}/input.csv")
}

/// Where the output CSV is written when the request finishes.
pub fn output_csv_key(tenant: &TenantId, id: RequestId) -> String {
    format!("tenants/{tenant}/requests/{id}/output.csv")
}

/// Deterministic, so a redelivered job overwrites its own output instead of adding one.
pub fn output_image_key(tenant: &TenantId, id: RequestId, image_index: u32) -> String {
    format!("tenants/{tenant}/output/{id}/{image_index:05}.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keys_are_deterministic() {
        let id: RequestId = "6f1c1f7e-8a3e-4a47-9b7e-0d6b7b0f3a11".parse().unwrap();
        let tenant: TenantId = "acme".parse().unwrap();
        assert_eq!(
            output_image_key(&tenant, id, 7),
            "tenants/acme/output/6f1c1f7e-8a3e-4a47-9b7e-0d6b7b0f3a11/00007.jpg"
        );
    }
}
