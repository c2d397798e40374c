//! Accepting an upload: validate everything first, then store the CSV, record the request
//! (taking its images from the tenant's quota in the same write) and queue its fan-out, so a bad
//! CSV leaves no trace and a good one is answered at once, whatever its size. The fan-out
//! (`fan_out`) queues the image jobs. With an idempotency key, a repeat of an upload answers
//! what the first one did (`domain::idempotency`).

use std::time::Instant;

use chrono::Utc;

use crate::domain::csv_rules::{CsvLimits, CsvRejection, ValidatedCsv};
use crate::domain::errors::StoreError;
use crate::domain::http_url::{HttpUrl, InvalidUrl};
use crate::domain::idempotency::{IdempotencyKey, IdempotencyRecord, Repeat, StoredAnswer, fingerprint};
use crate::domain::quota::TenantQuota;
use crate::domain::request::RequestRecord;
use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;
use crate::domain::webhook_signature::{WebhookSecret, WebhookSigningKey};
use crate::ports::{
    Admission, BlobStore, CreateRequest, IdempotencyKeys, JobQueue, KnownTenants, MoveRequest, ReadRequest,
    UploadReservations,
};
use crate::use_cases::fail_request::{FailPorts, fail_request};

/// One upload, as the caller made it.
pub struct Upload<'a> {
    pub tenant: &'a TenantId,
    pub csv: &'a [u8],
    pub webhook_url: Option<&'a str>,
    pub idempotency_key: Option<&'a IdempotencyKey>,
}

/// What every upload is held to, through the API or dropped into the bucket.
pub struct UploadRules<'a> {
    pub limits: &'a CsvLimits,
    pub quota: TenantQuota,
}

#[derive(Debug)]
pub struct Accepted {
    pub request_id: RequestId,
    pub image_count: u64,
    pub has_webhook: bool,
    /// The secret the webhook will be signed with, when there is a webhook (derived again for a
    /// replayed answer: it is stored nowhere).
    pub webhook_secret: Option<WebhookSecret>,
    /// The answer of an earlier upload with the same idempotency key.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Csv(#[from] CsvRejection),
    #[error("webhook_url is not usable: {0}")]
    WebhookUrl(InvalidUrl),
    /// The tenant's open images plus this upload's would exceed its quota; nothing was stored.
    #[error("the tenant has too many images in progress (at most {max_open_images})")]
    OverQuota { max_open_images: u64 },
    /// The idempotency key was used for another upload (another CSV or webhook URL).
    #[error("this Idempotency-Key was used for a different upload")]
    KeyReused,
    /// The first upload with this idempotency key has not been answered yet.
    #[error("an upload with this Idempotency-Key is in progress")]
    KeyInProgress,
    /// Nothing usable was accepted; the client should upload again later.
    #[error("the request could not be stored: {0}")]
    Store(#[from] StoreError),
}

#[derive(Clone, Copy)]
pub struct AcceptPorts<'a> {
    pub blobs: &'a dyn BlobStore,
    pub new_requests: &'a dyn CreateRequest,
    /// To find the request an earlier delivery of a dropped CSV made, and to fail a request
    /// whose fan-out could not be queued.
    pub requests: &'a dyn ReadRequest,
    pub lifecycle: &'a dyn MoveRequest,
    pub queue: &'a dyn JobQueue,
    pub idempotency: &'a dyn IdempotencyKeys,
    /// Dropped CSVs name their tenant by their key: it must be one we know.
    pub tenants: &'a dyn KnownTenants,
    /// A CSV PUT to a reserved upload's key takes the reservation's id and webhook.
    pub reservations: &'a dyn UploadReservations,
}

impl<'a> AcceptPorts<'a> {
    /// Every table capability from one table (the DynamoDB adapter, or the fake).
    pub fn with_table<T>(blobs: &'a dyn BlobStore, queue: &'a dyn JobQueue, table: &'a T) -> Self
    where
        T: CreateRequest + ReadRequest + MoveRequest + IdempotencyKeys + KnownTenants + UploadReservations,
    {
        Self {
            blobs,
            new_requests: table,
            requests: table,
            lifecycle: table,
            queue,
            idempotency: table,
            tenants: table,
            reservations: table,
        }
    }
}

/// An upload through the API; the answer carries the request's webhook secret, derived with
/// `signing_key`.
pub async fn accept_upload(
    ports: AcceptPorts<'_>,
    upload: &Upload<'_>,
    rules: &UploadRules<'_>,
    signing_key: &WebhookSigningKey,
) -> Result<Accepted, AcceptError> {
    let with_secret = |mut accepted: Accepted| {
        accepted.webhook_secret = accepted.has_webhook.then(|| signing_key.secret_for(accepted.request_id));
        accepted
    };
    let Some(key) = upload.idempotency_key else {
        return accept_csv_as(ports, RequestId::new_random(), upload, rules).await.map(with_secret);
    };
    let now = Utc::now();
    let claim = IdempotencyRecord::start(upload.tenant.clone(), key, fingerprint(upload.csv, upload.webhook_url), now);
    if let Some(existing) = ports.idempotency.claim_key(&claim, now).await? {
        return match existing.meet(&claim.fingerprint, now) {
            Repeat::Replay(answer) => Ok(with_secret(Accepted {
                request_id: answer.request_id,
                image_count: answer.images,
                has_webhook: answer.has_webhook,
                webhook_secret: None,
                replayed: true,
            })),
            Repeat::DifferentBody => Err(AcceptError::KeyReused),
            // Expired between the claim and the read: as busy as a key in progress, for a moment.
            Repeat::InProgress | Repeat::Expired => Err(AcceptError::KeyInProgress),
        };
    }
    match accept_csv_as(ports, RequestId::new_random(), upload, rules).await {
        Ok(accepted) => {
            let answer = StoredAnswer {
                request_id: accepted.request_id,
                images: accepted.image_count,
                has_webhook: accepted.has_webhook,
            };
            ports.idempotency.complete_key(&claim, &answer).await?;
            Ok(with_secret(accepted))
        }
        Err(error) => {
            // No request was made: a corrected upload may use the key.
            ports.idempotency.release_key(&claim).await?;
            Err(error)
        }
    }
}

/// The upload under a given id; `create` refuses an id that exists, so an id is accepted once.
pub(crate) async fn accept_csv_as(
    ports: AcceptPorts<'_>,
    request_id: RequestId,
    upload: &Upload<'_>,
    rules: &UploadRules<'_>,
) -> Result<Accepted, AcceptError> {
    let started = Instant::now();
    let csv = ValidatedCsv::parse(upload.csv, rules.limits)?;
    let webhook_url = upload
        .webhook_url
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| HttpUrl::parse_at_most(url, rules.limits.max_url_length))
        .transpose()
        .map_err(AcceptError::WebhookUrl)?;
    let images = csv.image_count() as u64;
    if !rules.quota.admits(0, images) {
        return Err(AcceptError::OverQuota { max_open_images: rules.quota.max_open_images });
    }

    let request = RequestRecord::new(request_id, upload.tenant.clone(), images, webhook_url, Utc::now());
    log_stage(request_id, "validate", started);
    if store_and_queue(ports, &request, upload.csv, &rules.quota).await? == Admission::OverQuota {
        // The stored CSV is left for the bucket's lifecycle rule: no request points at it.
        return Err(AcceptError::OverQuota { max_open_images: rules.quota.max_open_images });
    }
    log_stage(request_id, "accepted", started);
    let has_webhook = request.webhook_url.is_some();
    Ok(Accepted { request_id, image_count: images, has_webhook, webhook_secret: None, replayed: false })
}

/// Stores the CSV of `request` (accepted), records the request within its tenant's quota and
/// queues its fan-out: every new request, uploaded or a retry, is made this way. `OverQuota`
/// when its images do not fit: then only the CSV was stored.
pub(crate) async fn store_and_queue(
    ports: AcceptPorts<'_>,
    request: &RequestRecord,
    csv: &[u8],
    quota: &TenantQuota,
) -> Result<Admission, StoreError> {
    let request_id = request.request_id;
    ports.blobs.put(&request.input_csv_key, csv.to_vec(), "text/csv").await?;
    if ports.new_requests.create(request, quota).await? == Admission::OverQuota {
        return Ok(Admission::OverQuota);
    }
    if let Err(error) = ports.queue.enqueue_fan_out(request_id).await {
        // The request would wait forever for jobs nobody queues: fail it now, and let the
        // client, told to retry, upload again as a new request.
        let fail = FailPorts { requests: ports.requests, lifecycle: ports.lifecycle };
        fail_request(fail, request_id, "its image jobs could not be queued", Utc::now()).await?;
        return Err(error);
    }
    Ok(Admission::Created)
}

/// One log line per stage with the time since the upload arrived.
fn log_stage(request_id: RequestId, stage: &str, since: Instant) {
    tracing::info!(request_id = %request_id, stage, elapsed_ms = since.elapsed().as_millis() as u64);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryQueue, MemoryTable};
    use crate::domain::locations::input_csv_key;
    use crate::domain::request::RequestStatus;
    use crate::ports::MoveRequest;
    use crate::test_support::{signing_key, tenant};

    const CSV: &str = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.png\"\n\
        2,Shoe,https://img.example/c.webp\n";

    #[derive(Default)]
    pub(crate) struct Fakes {
        pub blobs: MemoryBlobs,
        pub table: MemoryTable,
        pub queue: MemoryQueue,
    }

    impl Fakes {
        pub fn ports(&self) -> AcceptPorts<'_> {
            AcceptPorts::with_table(&self.blobs, &self.queue, &self.table)
        }

        pub async fn accept(&self, csv: &[u8], webhook_url: Option<&str>) -> Result<Accepted, AcceptError> {
            self.accept_with(csv, webhook_url, None, QUOTA).await
        }

        pub async fn accept_with(
            &self,
            csv: &[u8],
            webhook_url: Option<&str>,
            idempotency_key: Option<&str>,
            quota: u64,
        ) -> Result<Accepted, AcceptError> {
            let key = idempotency_key.map(|key| IdempotencyKey::parse(key).unwrap());
            let upload = Upload { tenant: &tenant(), csv, webhook_url, idempotency_key: key.as_ref() };
            let rules = UploadRules { limits: &CsvLimits::default(), quota: TenantQuota { max_open_images: quota } };
            accept_upload(self.ports(), &upload, &rules, &signing_key()).await
        }
    }

    const QUOTA: u64 = 100_000;

    #[tokio::test]
    async fn a_good_csv_is_stored_recorded_and_its_fan_out_queued() {
        let fakes = Fakes::default();
        let accepted = fakes.accept(CSV.as_bytes(), Some("https://hooks.example/x")).await.unwrap();

        assert_eq!(accepted.image_count, 3);
        let id = accepted.request_id;
        assert!(fakes.blobs.objects.lock().unwrap().contains_key(&input_csv_key(&tenant(), id)));
        let request = fakes.table.get(id).await.unwrap().unwrap();
        assert_eq!((request.status, request.total, request.remaining), (RequestStatus::Pending, 3, 3));
        assert_eq!(request.webhook_url.unwrap().as_str(), "https://hooks.example/x");
        assert_eq!(accepted.webhook_secret, Some(signing_key().secret_for(id)), "the client gets the signing secret");
        assert_eq!(*fakes.queue.fan_outs.lock().unwrap(), [id]);
    }

    #[tokio::test]
    async fn a_bad_csv_leaves_nothing_behind() {
        let fakes = Fakes::default();
        let bad = "S. No.,Product Name,Input Image Urls\n1,,ftp://x\n";
        let result = fakes.accept(bad.as_bytes(), None).await;

        assert!(matches!(result, Err(AcceptError::Csv(CsvRejection::Invalid(_)))));
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
        assert!(fakes.queue.fan_outs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_webhook_url_is_refused_before_anything_is_stored() {
        let fakes = Fakes::default();
        let result = fakes.accept(CSV.as_bytes(), Some("file:///etc/passwd")).await;

        assert!(matches!(result, Err(AcceptError::WebhookUrl(_))));
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_webhook_url_over_the_length_limit_is_refused_before_anything_is_stored() {
        let fakes = Fakes::default();
        let base = "https://hooks.example/";
        let at_limit = format!("{base}{}", "h".repeat(2048 - base.len()));
        let accepted = fakes.accept(CSV.as_bytes(), Some(&at_limit)).await;
        assert!(accepted.is_ok(), "a webhook URL of 2048 characters is accepted");

        let fakes = Fakes::default();
        let over = format!("{at_limit}h");
        let result = fakes.accept(CSV.as_bytes(), Some(&over)).await;
        let Err(AcceptError::WebhookUrl(reason)) = result else { panic!("expected a refused webhook URL") };
        assert_eq!(reason.to_string(), "the URL is 2049 characters long, more than the limit of 2048");
        assert!(fakes.blobs.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_queue_outage_fails_the_request_instead_of_leaving_it_waiting() {
        let fakes = Fakes::default();
        fakes.queue.outage.set(true);
        let result = fakes.accept(CSV.as_bytes(), None).await;

        let Err(AcceptError::Store(error)) = result else { panic!("expected a store error") };
        assert!(error.is_transient());
        let key = fakes.blobs.objects.lock().unwrap().keys().next().unwrap().clone();
        let id = key.split('/').nth(3).unwrap().parse().unwrap();
        assert_eq!(fakes.table.get(id).await.unwrap().unwrap().status, RequestStatus::Failed);
    }

    #[tokio::test]
    async fn a_repeated_upload_with_its_key_gets_the_first_answer_and_queues_nothing_again() {
        let fakes = Fakes::default();
        let hook = Some("https://hooks.example/x");
        let first = fakes.accept_with(CSV.as_bytes(), hook, Some("order-7"), QUOTA).await.unwrap();
        let again = fakes.accept_with(CSV.as_bytes(), hook, Some("order-7"), QUOTA).await.unwrap();

        assert_eq!((again.request_id, again.image_count, again.replayed), (first.request_id, 3, true));
        assert_eq!(again.webhook_secret, first.webhook_secret, "derived again, the same");
        assert_eq!(fakes.queue.fan_outs.lock().unwrap().len(), 1, "one fan-out");
        let other = fakes.accept_with(CSV.as_bytes(), None, Some("order-7"), QUOTA).await;
        assert!(matches!(other, Err(AcceptError::KeyReused)), "another body: {other:?}");
        let concurrent = tokio::join!(
            fakes.accept_with(CSV.as_bytes(), None, Some("order-8"), QUOTA),
            fakes.accept_with(CSV.as_bytes(), None, Some("order-8"), QUOTA),
        );
        let ids: std::collections::HashSet<RequestId> =
            [concurrent.0, concurrent.1].into_iter().filter_map(|answer| answer.ok().map(|a| a.request_id)).collect();
        assert_eq!(ids.len(), 1, "one request for one key");
        assert_eq!(fakes.queue.fan_outs.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_upload_refused_under_a_key_frees_it_for_the_corrected_one() {
        let fakes = Fakes::default();
        let bad = "S. No.,Product Name,Input Image Urls\n1,,ftp://x\n";
        let refused = fakes.accept_with(bad.as_bytes(), None, Some("k1"), QUOTA).await;
        assert!(matches!(refused, Err(AcceptError::Csv(_))));
        let corrected = fakes.accept_with(CSV.as_bytes(), None, Some("k1"), QUOTA).await.unwrap();
        assert!(!corrected.replayed);
    }

    #[tokio::test]
    async fn an_upload_over_the_tenants_quota_stores_no_request_until_images_are_given_back() {
        let fakes = Fakes::default();
        let first = fakes.accept_with(CSV.as_bytes(), None, None, 5).await.unwrap();
        let over = fakes.accept_with(CSV.as_bytes(), None, None, 5).await;
        assert!(matches!(over, Err(AcceptError::OverQuota { max_open_images: 5 })), "{over:?}");
        assert_eq!(fakes.queue.fan_outs.lock().unwrap().len(), 1, "nothing queued for it");
        assert_eq!(fakes.table.open_images(&tenant()), 3);

        let request = fakes.table.get(first.request_id).await.unwrap().unwrap();
        let ending = crate::domain::request::FinalState::failed(&request, "test", Utc::now());
        fakes.table.finish(first.request_id, &ending, Utc::now()).await.unwrap();
        assert_eq!(fakes.table.open_images(&tenant()), 0, "given back with the final state");
        fakes.accept_with(CSV.as_bytes(), None, None, 5).await.unwrap();
        let too_big = fakes.accept_with(CSV.as_bytes(), None, None, 2).await;
        assert!(matches!(too_big, Err(AcceptError::OverQuota { .. })), "more images than the whole quota");
    }
}
