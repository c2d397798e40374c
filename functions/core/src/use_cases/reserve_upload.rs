//! `POST /api/uploads`: a CSV too large for the API goes straight to the bucket. The caller gets
//! the request id its CSV will become and a presigned PUT for the reserved key; the CSV is then
//! accepted like any dropped CSV (`accept_dropped_csv`), with the webhook given here.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::errors::StoreError;
use crate::domain::http_url::{HttpUrl, InvalidUrl};
use crate::domain::tenant::TenantId;
use crate::domain::upload_reservation::UploadReservation;
use crate::ports::{BlobStore, UploadReservations};

pub struct ReservePorts<'a> {
    pub blobs: &'a dyn BlobStore,
    pub reservations: &'a dyn UploadReservations,
}

/// What a reservation is held to.
pub struct ReserveRules {
    /// The longest webhook URL, as for an inline upload.
    pub max_url_length: usize,
    /// How long the presigned PUT works (UPLOAD_URL_TTL_SECS).
    pub url_lifetime: Duration,
}

#[derive(Debug)]
pub struct ReservedUpload {
    pub reservation: UploadReservation,
    pub upload_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("webhook_url is not usable: {0}")]
    WebhookUrl(InvalidUrl),
    #[error("the upload could not be reserved: {0}")]
    Store(#[from] StoreError),
}

/// Checks the webhook URL, records the reservation, then signs the URL: a URL is never handed
/// out for a reservation that was not recorded.
pub async fn reserve_upload(
    ports: ReservePorts<'_>,
    tenant: &TenantId,
    webhook_url: Option<&str>,
    rules: &ReserveRules,
    now: DateTime<Utc>,
) -> Result<ReservedUpload, ReserveError> {
    let webhook_url = webhook_url
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| HttpUrl::parse_at_most(url, rules.max_url_length))
        .transpose()
        .map_err(ReserveError::WebhookUrl)?;
    let reservation = UploadReservation::new(tenant.clone(), webhook_url, now, rules.url_lifetime);
    ports.reservations.reserve(&reservation).await?;
    let upload_url = ports.blobs.presigned_put_url(&reservation.upload_key(), rules.url_lifetime).await?;
    Ok(ReservedUpload { reservation, upload_url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable};
    use crate::test_support::tenant;

    const RULES: ReserveRules = ReserveRules { max_url_length: 2048, url_lifetime: Duration::from_secs(3600) };

    #[tokio::test]
    async fn a_reservation_is_recorded_with_its_webhook_before_its_url_is_given() {
        let (blobs, table) = (MemoryBlobs::default(), MemoryTable::default());
        let now = Utc::now();
        let ports = ReservePorts { blobs: &blobs, reservations: &table };
        let reserved = reserve_upload(ports, &tenant(), Some(" https://hooks.example/x "), &RULES, now).await.unwrap();

        let id = reserved.reservation.request_id;
        assert_eq!(reserved.upload_url, format!("https://blobs.example/incoming/acme/uploads/{id}.csv?put"));
        let stored = table.reservation(id).await.unwrap().expect("recorded");
        assert_eq!(stored.webhook_url.unwrap().as_str(), "https://hooks.example/x");
        assert_eq!(stored.upload_expires_at, now + chrono::Duration::hours(1));
        assert_eq!(stored.refusal, None);
    }

    #[tokio::test]
    async fn a_bad_webhook_url_reserves_nothing() {
        let (blobs, table) = (MemoryBlobs::default(), MemoryTable::default());
        let ports = ReservePorts { blobs: &blobs, reservations: &table };
        let result = reserve_upload(ports, &tenant(), Some("ftp://hooks.example/x"), &RULES, Utc::now()).await;
        assert!(matches!(result, Err(ReserveError::WebhookUrl(_))), "{result:?}");
    }

    #[tokio::test]
    async fn an_outage_hands_out_no_url() {
        let (blobs, table) = (MemoryBlobs::default(), MemoryTable::default());
        table.outage.set(true);
        let ports = ReservePorts { blobs: &blobs, reservations: &table };
        let result = reserve_upload(ports, &tenant(), None, &RULES, Utc::now()).await;
        assert!(matches!(result, Err(ReserveError::Store(_))), "{result:?}");
    }
}
