//! Retrying a final request's failed images: a new request (new id, `retry_of` the first) with
//! the same rows and webhook, in which the first one's successes are carried over without being
//! fetched again, and only the other images are processed. It is made like an upload
//! (`accept_upload::store_and_queue`), holding of its tenant's quota only the images it
//! processes; its fan-out (`fan_out`) carries the successes over, then queues the rest.

use std::collections::HashSet;

use chrono::Utc;

use crate::domain::errors::StoreError;
use crate::domain::quota::TenantQuota;
use crate::domain::request::{ImageState, RequestRecord, RequestStatus};
use crate::domain::request_id::RequestId;
use crate::domain::webhook_signature::WebhookSigningKey;
use crate::ports::{CarryOverResults, ReadResults};
use crate::use_cases::accept_upload::{AcceptError, AcceptPorts, Accepted, store_and_queue};

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("the request has not ended yet ({})", .0.as_str())]
    NotFinal(RequestStatus),
    #[error("every image of the request succeeded")]
    NothingToRetry,
    /// The first request's stored CSV is gone (the bucket's retention removed it).
    #[error("the request's input CSV is no longer stored")]
    InputGone,
    #[error("the tenant has too many images in progress (at most {max_open_images})")]
    OverQuota { max_open_images: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Retries `first` (the caller's own); the new request, accepted as an upload is.
pub async fn retry_request(
    ports: AcceptPorts<'_>,
    first: &RequestRecord,
    quota: &TenantQuota,
    signing_key: &WebhookSigningKey,
) -> Result<Accepted, RetryError> {
    if !first.status.is_final() {
        return Err(RetryError::NotFinal(first.status));
    }
    if first.images_to_retry() == 0 {
        return Err(RetryError::NothingToRetry);
    }
    let csv = ports.blobs.get(&first.input_csv_key).await?.ok_or(RetryError::InputGone)?;
    let retry = RequestRecord::retry_of(RequestId::new_random(), first, Utc::now());
    if !quota.admits(0, retry.open_images()) {
        return Err(RetryError::OverQuota { max_open_images: quota.max_open_images });
    }
    match store_and_queue(ports, &retry, &csv, quota).await {
        Ok(()) => {}
        Err(AcceptError::OverQuota { max_open_images }) => return Err(RetryError::OverQuota { max_open_images }),
        Err(AcceptError::Store(error)) => return Err(error.into()),
        Err(other) => unreachable!("store_and_queue validates nothing: {other}"),
    }
    let id = retry.request_id;
    tracing::info!(request_id = %id, retry_of = %first.request_id, stage = "retry", to_process = retry.open_images());
    Ok(Accepted {
        request_id: id,
        image_count: retry.total,
        has_webhook: retry.webhook_url.is_some(),
        webhook_secret: retry.webhook_url.is_some().then(|| signing_key.secret_for(id)),
        replayed: false,
    })
}

/// The retry's part of its fan-out: the successes of `first` become results of `retry` (the
/// same output objects, bytes and notes); their indexes, not to be queued again.
pub(crate) async fn carry_over_successes(
    results: &dyn ReadResults,
    carry: &dyn CarryOverResults,
    retry: &RequestRecord,
    first: RequestId,
) -> Result<HashSet<u32>, StoreError> {
    let mut carried = results.recorded_images(first).await?;
    carried.retain(|image| image.state == ImageState::Done);
    for image in &mut carried {
        image.request_id = retry.request_id;
    }
    if carried.len() as u64 != retry.carried_over {
        // Counted at the retry's creation from the first request's final counts, which never
        // move again; a difference means its results expired meanwhile.
        tracing::error!(request_id = %retry.request_id, stage = "carry_over", found = carried.len(), counted = retry.carried_over);
    }
    carry.carry_over(&carried).await?;
    Ok(carried.iter().map(|image| image.image_index).collect())
}
