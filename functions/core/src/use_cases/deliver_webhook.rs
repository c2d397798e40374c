//! Delivering the completion webhook until it is taken. The write that makes a request final
//! also records that its webhook is owed (`MoveRequest::finish`), so nothing between that write
//! and the POST can lose it: the notifier makes the first delivery at once; if it dies before
//! ending or deferring it, the delivery falls due (`WebhookSender::longest_send` later) and the
//! sweeper makes it. A failed delivery is due again later (`domain::webhook::next_delivery_in`),
//! until it is taken or given up (logged). Requests failed without waiting for their images owe
//! theirs at once, and the sweeper makes it.
//!
//! The sweeper claims each due delivery before making it (a conditional write), so two sweeps
//! never send the same one; every delivery carries the same `webhook-id`, so a receiver can tell
//! a repeat all the same.

use chrono::{DateTime, Utc};

use crate::domain::errors::StoreError;
use crate::domain::locations::{Links, errors_csv_key, errors_csv_path, output_csv_path};
use crate::domain::request::{RequestRecord, Transition};
use crate::domain::webhook::{WebhookPayload, next_delivery_in};
use crate::ports::{BlobStore, ReadRequest, WebhookOutbox, WebhookSender};
use crate::use_cases::links::link_url;

#[derive(Clone, Copy)]
pub struct DeliveryPorts<'a> {
    pub requests: &'a dyn ReadRequest,
    pub outbox: &'a dyn WebhookOutbox,
    pub blobs: &'a dyn BlobStore,
    pub webhooks: &'a dyn WebhookSender,
}

/// When a delivery taken at `now` falls due again if its sender dies with it.
pub fn lost_after(webhooks: &dyn WebhookSender, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(webhooks.longest_send()).unwrap_or(chrono::Duration::MAX)
}

/// Delivery number `delivery` (1 from the notifier, more from the sweeper) of the webhook of
/// `request`, final, already taken by the caller; then ends it, or makes the next one due when
/// it failed and the receiver may come back. Requests without a webhook are left alone.
pub async fn deliver(
    ports: &DeliveryPorts<'_>,
    request: &RequestRecord,
    links: &Links,
    delivery: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(url) = &request.webhook_url else {
        return Ok(());
    };
    let id = request.request_id;
    let payload = payload(ports, request, links).await?;
    match ports.webhooks.send(url, &payload).await {
        Ok(()) => tracing::info!(request_id = %id, stage = "webhook", delivery, "delivered"),
        Err(error) if !error.permanent => match next_delivery_in(delivery, ports.webhooks.redelivery_base()) {
            Some(wait) => {
                tracing::warn!(request_id = %id, stage = "webhook", delivery, retry_in_s = wait.as_secs(), error = %error);
                let next_at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                return ports.outbox.defer_webhook(id, delivery, next_at).await;
            }
            None => tracing::error!(request_id = %id, stage = "webhook", delivery, error = %error, "given up"),
        },
        Err(error) => {
            tracing::error!(request_id = %id, stage = "webhook", delivery, error = %error, "not deliverable")
        }
    }
    ports.outbox.end_webhook(id).await
}

/// The sweeper's part: every owed webhook that is due and not taken by another sender gets its
/// next delivery, until `deadline`. Returns how many were tried; the rest wait for the next run.
pub async fn deliver_due_webhooks(
    ports: &DeliveryPorts<'_>,
    links: &Links,
    now: DateTime<Utc>,
    deadline: std::time::Instant,
) -> Result<usize, StoreError> {
    let mut tried = 0;
    for id in ports.outbox.owed_webhooks().await? {
        if std::time::Instant::now() >= deadline {
            break;
        }
        let Some(request) = ports.requests.get(id).await? else { continue };
        let Some(due_at) = request.webhook_next_at.filter(|due| *due <= now && request.status.is_final()) else {
            continue;
        };
        if ports.outbox.claim_webhook(id, due_at, lost_after(ports.webhooks, now)).await? == Transition::AlreadyDone {
            continue;
        }
        deliver(ports, &request, links, request.webhook_failed_deliveries + 1, now).await?;
        tried += 1;
    }
    Ok(tried)
}

async fn payload(
    ports: &DeliveryPorts<'_>,
    request: &RequestRecord,
    links: &Links,
) -> Result<WebhookPayload, StoreError> {
    let id = request.request_id;
    let errors_csv_url = if request.has_errors_report() {
        Some(link_url(ports.blobs, links, errors_csv_path(id), &errors_csv_key(&request.tenant_id, id)).await?)
    } else {
        None
    };
    let output_csv_url = match &request.output_csv_key {
        Some(key) => Some(link_url(ports.blobs, links, output_csv_path(id), key).await?),
        None => None,
    };
    Ok(WebhookPayload {
        request_id: id,
        status: request.status,
        total: request.total,
        succeeded: request.succeeded,
        failed: request.failed,
        cancelled: request.cancelled,
        output_csv_url,
        errors_csv_url,
        failure_reason: request.failure_reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable, MemoryWebhooks};
    use crate::domain::http_url::HttpUrl;
    use crate::domain::locations::output_csv_key;
    use crate::domain::request::RequestStatus;
    use crate::domain::request_id::RequestId;
    use crate::domain::webhook::MAX_DELIVERIES;
    use crate::test_support::{NO_QUOTA, tenant};

    use crate::ports::{CreateRequest, WebhookOutbox};
    use std::time::Duration;

    #[derive(Default)]
    struct Fixture {
        table: MemoryTable,
        blobs: MemoryBlobs,
        webhooks: MemoryWebhooks,
    }

    impl Fixture {
        fn ports(&self) -> DeliveryPorts<'_> {
            DeliveryPorts { requests: &self.table, outbox: &self.table, blobs: &self.blobs, webhooks: &self.webhooks }
        }

        /// A request that just became final, with a webhook.
        async fn finished_request(&self) -> RequestRecord {
            let url = HttpUrl::parse("https://hooks.example/done").unwrap();
            let mut request = RequestRecord::new(RequestId::new_random(), tenant(), 2, Some(url), Utc::now());
            (request.status, request.succeeded, request.failed, request.remaining) =
                (RequestStatus::CompletedWithErrors, 1, 1, 0);
            request.output_csv_key = Some(output_csv_key(&request.tenant_id, request.request_id));
            // Owed, and taken by its first delivery, as `finish` leaves it.
            request.webhook_next_at = Some(lost_after(&self.webhooks, Utc::now()));
            self.table.create(&request, &NO_QUOTA).await.unwrap();
            request
        }

        async fn first_delivery(&self, request: &RequestRecord, now: DateTime<Utc>) {
            deliver(&self.ports(), request, &links(), 1, now).await.unwrap();
        }

        async fn sweep(&self, now: DateTime<Utc>) -> usize {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            deliver_due_webhooks(&self.ports(), &links(), now, deadline).await.unwrap()
        }

        fn sent(&self) -> usize {
            self.webhooks.sent.lock().unwrap().len()
        }
    }

    fn links() -> Links {
        Links::Api { base_url: "https://api.example".into() }
    }

    fn after(now: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
        now + chrono::Duration::seconds(seconds)
    }

    #[tokio::test]
    async fn a_webhook_the_receiver_missed_is_delivered_by_a_later_sweep() {
        let fixture = Fixture::default();
        let request = fixture.finished_request().await;
        let now = Utc::now();
        fixture.webhooks.down.store(true, Ordering::SeqCst);
        fixture.first_delivery(&request, now).await;
        assert_eq!(fixture.sent(), 0);
        assert_eq!(fixture.table.owed_webhooks().await.unwrap(), vec![request.request_id]);

        fixture.webhooks.down.store(false, Ordering::SeqCst);
        assert_eq!(fixture.sweep(after(now, 30)).await, 0, "not due before a minute");
        assert_eq!(fixture.sweep(after(now, 61)).await, 1);
        let sent = fixture.webhooks.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let payload = &sent[0].1;
        assert_eq!((payload.request_id, payload.status, payload.failed), (request.request_id, request.status, 1));
        assert!(payload.errors_csv_url.is_some(), "an image failed: the report is linked");
        assert!(fixture.table.owed_webhooks().await.unwrap().is_empty(), "delivered: nothing left to send");
        assert_eq!(fixture.sweep(after(now, 3600)).await, 0);
    }

    #[tokio::test]
    async fn a_receiver_that_stays_down_is_given_up_after_the_last_delivery() {
        let fixture = Fixture::default();
        let request = fixture.finished_request().await;
        let mut now = Utc::now();
        fixture.webhooks.down.store(true, Ordering::SeqCst);
        fixture.first_delivery(&request, now).await;
        for delivered in 1..MAX_DELIVERIES {
            now = after(now, next_delivery_in(delivered, Duration::from_secs(60)).unwrap().as_secs() as i64);
            assert_eq!(fixture.sweep(now).await, 1, "delivery {}", delivered + 1);
        }
        assert_eq!(fixture.webhooks.tries.load(Ordering::SeqCst), MAX_DELIVERIES);
        assert!(fixture.table.owed_webhooks().await.unwrap().is_empty(), "given up");
        assert_eq!(fixture.sweep(after(now, 7200)).await, 0);
    }

    #[tokio::test]
    async fn a_refused_receiver_is_not_tried_again_and_a_delivered_one_is_not_kept() {
        let fixture = Fixture::default();
        let refused = fixture.finished_request().await;
        fixture.webhooks.refused.store(true, Ordering::SeqCst);
        fixture.first_delivery(&refused, Utc::now()).await;
        fixture.webhooks.refused.store(false, Ordering::SeqCst);
        let delivered = fixture.finished_request().await;
        fixture.first_delivery(&delivered, Utc::now()).await;
        assert_eq!(fixture.sent(), 1);
        assert!(fixture.table.owed_webhooks().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn two_sweeps_at_once_deliver_a_due_webhook_once() {
        let fixture = Fixture::default();
        let request = fixture.finished_request().await;
        let later = after(Utc::now(), 3600);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (ports, links) = (fixture.ports(), links());
        let (first, second) = tokio::join!(
            deliver_due_webhooks(&ports, &links, later, deadline),
            deliver_due_webhooks(&ports, &links, later, deadline),
        );
        assert_eq!(first.unwrap() + second.unwrap(), 1);
        assert_eq!(fixture.sent(), 1);
        assert!(fixture.table.owed_webhooks().await.unwrap().is_empty());
        assert_eq!(fixture.webhooks.sent.lock().unwrap()[0].1.request_id, request.request_id);
    }
}
