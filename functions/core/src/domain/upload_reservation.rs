//! A CSV too large to go through the API (`POST /api/uploads`): the caller gets a request id
//! and a presigned S3 PUT for `incoming/<tenant>/uploads/<request id>.csv`, and the bucket's
//! notification brings the object to the worker like any dropped CSV. The reservation keeps
//! what the caller said before the file existed (tenant, webhook, when the URL expires) and,
//! if the file broke the rules, why: the status answers that until a new upload is made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::csv_rules::CsvProblem;
use crate::domain::dropped_csv::INCOMING_PREFIX;
use crate::domain::http_url::HttpUrl;
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

/// The folder, under a tenant's `incoming/<tenant>/`, that presigned uploads are written to.
const UPLOADS_FOLDER: &str = "uploads";

/// Where the CSV of a reserved upload is PUT: `incoming/<tenant>/uploads/<request id>.csv`.
pub fn reserved_upload_key(tenant: &TenantId, id: RequestId) -> String {
    format!("{INCOMING_PREFIX}{tenant}/{UPLOADS_FOLDER}/{id}.csv")
}

/// The tenant and request id a key names when it is a reserved upload's key; `None` for any
/// other dropped CSV (whose id is derived from its event instead).
pub fn reserved_upload_of(key: &str) -> Option<(TenantId, RequestId)> {
    let rest = key.strip_prefix(INCOMING_PREFIX)?;
    let (tenant, rest) = rest.split_once('/')?;
    let id = rest.strip_prefix(UPLOADS_FOLDER)?.strip_prefix('/')?.strip_suffix(".csv")?;
    Some((tenant.parse().ok()?, id.parse().ok()?))
}

/// Why a reserved upload's CSV was refused, as the inline upload would have answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRefusal {
    /// The stable code an inline upload gets for the same fault (`invalid_csv`, ...).
    pub error: String,
    pub message: String,
    #[serde(default)]
    pub problems: Vec<CsvProblem>,
}

/// One reserved upload, from `POST /api/uploads` until its CSV is accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReservation {
    pub request_id: RequestId,
    pub tenant_id: TenantId,
    /// Checked when the upload was reserved; the request it becomes gets it.
    pub webhook_url: Option<HttpUrl>,
    pub created_at: DateTime<Utc>,
    /// When the presigned PUT stops working.
    pub upload_expires_at: DateTime<Utc>,
    /// Set once, when the CSV that arrived broke the rules. A refused reservation stays refused:
    /// the caller reserves a new upload for the corrected file.
    pub refusal: Option<UploadRefusal>,
}

/// What `GET /api/status/<id>/` says about a reserved upload that has no request (yet).
#[derive(Debug, PartialEq, Eq)]
pub enum ReservedStatus<'a> {
    /// Reserved by another tenant: as unknown to the caller as an id never handed out.
    NotFound,
    /// The CSV has not arrived, or not been accepted yet.
    NotReady {
        upload_expires_at: DateTime<Utc>,
    },
    Refused(&'a UploadRefusal),
}

impl UploadReservation {
    pub fn new(
        tenant_id: TenantId,
        webhook_url: Option<HttpUrl>,
        now: DateTime<Utc>,
        lifetime: std::time::Duration,
    ) -> Self {
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
        Self {
            request_id: RequestId::new_random(),
            tenant_id,
            webhook_url,
            created_at: now,
            upload_expires_at: now + lifetime,
            refusal: None,
        }
    }

    pub fn upload_key(&self) -> String {
        reserved_upload_key(&self.tenant_id, self.request_id)
    }

    /// What the status answers `caller` about this reservation while no request has its id.
    pub fn status_for(&self, caller: &TenantId) -> ReservedStatus<'_> {
        if &self.tenant_id != caller {
            return ReservedStatus::NotFound;
        }
        match &self.refusal {
            Some(refusal) => ReservedStatus::Refused(refusal),
            None => ReservedStatus::NotReady { upload_expires_at: self.upload_expires_at },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_support::tenant;

    #[test]
    fn a_reserved_uploads_key_names_its_tenant_and_request() {
        let reservation = UploadReservation::new(tenant(), None, Utc::now(), Duration::from_secs(3600));
        let key = reservation.upload_key();
        assert_eq!(key, format!("incoming/acme/uploads/{}.csv", reservation.request_id));
        assert_eq!(reserved_upload_of(&key), Some((tenant(), reservation.request_id)));
    }

    #[test]
    fn other_dropped_csvs_are_not_reserved_uploads() {
        let id = RequestId::new_random();
        for key in [
            "incoming/acme/shirts.csv".to_string(),
            "incoming/acme/uploads/shirts.csv".into(),
            format!("incoming/acme/spring/uploads/{id}.csv"),
            format!("incoming/acme/uploads/{id}.txt"),
            format!("incoming/Acme Corp/uploads/{id}.csv"),
            format!("receipts/acme/uploads/{id}.csv"),
        ] {
            assert_eq!(reserved_upload_of(&key), None, "{key}");
        }
    }

    #[test]
    fn the_status_of_a_reservation_is_its_tenants_alone() {
        let now = Utc::now();
        let mut reservation = UploadReservation::new(tenant(), None, now, Duration::from_secs(600));
        let other: TenantId = "initech".parse().unwrap();
        assert_eq!(reservation.status_for(&other), ReservedStatus::NotFound);
        let expires = now + chrono::Duration::seconds(600);
        assert_eq!(reservation.status_for(&tenant()), ReservedStatus::NotReady { upload_expires_at: expires });

        let refusal = UploadRefusal { error: "invalid_csv".into(), message: "bad".into(), problems: Vec::new() };
        reservation.refusal = Some(refusal.clone());
        assert_eq!(reservation.status_for(&tenant()), ReservedStatus::Refused(&refusal));
        assert_eq!(reservation.status_for(&other), ReservedStatus::NotFound);
    }
}
