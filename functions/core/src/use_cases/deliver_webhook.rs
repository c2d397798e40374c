//! Delivering the completion webhook until it is taken: a receiver that is down when a request
//! finishes gets it later. The notifier makes the first delivery once the request is final;
//! when it fails, the request item keeps the next one due at a later time
//! (`domain::webhook::next_delivery_in`), and the sweeper (every minute) makes it when it is
//! due, until it is taken or given up (logged). (The redelivery base is a minute; a second on
//! the local stack, for the tests.)
//!
//! Every delivery carries the same `webhook-id`, so a receiver that got one twice (a sweep that
//! overlapped another) can tell.

use chrono::{DateTime, Utc};

use crate::domain::errors::StoreError;
use crate::domain::locations::{Links, errors_csv_key, errors_csv_path, output_csv_key, output_csv_path};
use crate::domain::request::RequestRecord;
use crate::domain::webhook::{WebhookPayload, next_delivery_in};
use crate::ports::{BlobStore, ReadRequest, WebhookOutbox, WebhookSender};
use crate::use_cases::links::link_url;

pub struct DeliveryPorts<'a> {
    pub requests: &'a dyn ReadRequest,
    pub outbox: &'a dyn WebhookOutbox,
    pub blobs: &'a dyn BlobStore,
    pub webhooks: &'a dyn WebhookSender,
}

/// Delivery number `delivery` (1 from the notifier, more from the sweeper) of the webhook of
/// `request`, final; schedules the next one when it fails and the receiver may come back. Requests
/// without a webhook are left alone.
pub async fn deliver(
    ports: &DeliveryPorts<'_>,
    request: &RequestRecord,
    links: &Links,
    delivery: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (Some(url), Some(secret)) = (&request.webhook_url, &request.webhook_secret) else {
        return Ok(());
    };
    let id = request.request_id;
    let payload = payload(ports, request, links).await?;
    match ports.webhooks.send(url, secret, &payload).await {
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
    if delivery > 1 { ports.outbox.end_webhook(id).await } else { Ok(()) }
}

/// The sweeper's part: every deferred webhook that is due gets its next delivery. Returns how
/// many were tried.
pub async fn deliver_due_webhooks(
    ports: &DeliveryPorts<'_>,
    links: &Links,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut tried = 0;
    for id in ports.outbox.deferred_webhooks().await? {
        let Some(request) = ports.requests.get(id).await? else { continue };
        if request.webhook_next_at.is_none_or(|due| due > now) || !request.status.is_final() {
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
        Some(link_url(ports.blobs, links, errors_csv_path(id), &errors_csv_key(id)).await?)
    } else {
        None
    };
    Ok(WebhookPayload {
        request_id: id,
        status: request.status,
        total: request.total,
        succeeded: request.succeeded,
        failed: request.failed,
        output_csv_url: link_url(ports.blobs, links, output_csv_path(id), &output_csv_key(id)).await?,
        errors_csv_url,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::adapters::memory::{MemoryBlobs, MemoryTable, MemoryWebhooks};
    use crate::domain::http_url::HttpUrl;
    use crate::domain::request::RequestStatus;
    use crate::domain::request_id::RequestId;
    use crate::domain::webhook::MAX_DELIVERIES;
    use crate::domain::webhook_signature::WebhookSecret;
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
            let mut request = RequestRecord::new(RequestId::new_random(), 2, Some(url), Utc::now());
            request.webhook_secret = Some(WebhookSecret::generate().unwrap());
            (request.status, request.succeeded, request.failed, request.remaining) =
                (RequestStatus::CompletedWithErrors, 1, 1, 0);
            request.output_csv_key = Some(output_csv_key(request.request_id));
            self.table.create(&request).await.unwrap();
            request
        }

        async fn first_delivery(&self, request: &RequestRecord, now: DateTime<Utc>) {
            deliver(&self.ports(), request, &links(), 1, now).await.unwrap();
        }

        async fn sweep(&self, now: DateTime<Utc>) -> usize {
            deliver_due_webhooks(&self.ports(), &links(), now).await.unwrap()
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
        assert_eq!(fixture.table.deferred_webhooks().await.unwrap(), vec![request.request_id]);

        fixture.webhooks.down.store(false, Ordering::SeqCst);
        assert_eq!(fixture.sweep(after(now, 30)).await, 0, "not due before a minute");
        assert_eq!(fixture.sweep(after(now, 61)).await, 1);
        let sent = fixture.webhooks.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let payload = &sent[0].1;
        assert_eq!((payload.request_id, payload.status, payload.failed), (request.request_id, request.status, 1));
        assert!(payload.errors_csv_url.is_some(), "an image failed: the report is linked");
        assert!(fixture.table.deferred_webhooks().await.unwrap().is_empty(), "delivered: nothing left to send");
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
        assert!(fixture.table.deferred_webhooks().await.unwrap().is_empty(), "given up");
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
        assert!(fixture.table.deferred_webhooks().await.unwrap().is_empty());
    }
}
