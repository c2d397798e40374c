//! The completion webhook, delivered until it is taken: a receiver that is down when a request
//! finishes gets it later. The notifier sends it once the request is final (a few quick
//! attempts, `webhook.rs`); when those fail, the request item keeps the delivery due at a later
//! time, and the sweeper (every minute) tries again: after 1, 2, 4, ... minutes, at most an hour
//! apart, `MAX_DELIVERIES` deliveries in all (over about 6 hours), then it is given up and logged.
//! (The minute is the sender's `redelivery_base`: a second on the local stack, for the tests.)
//!
//! Every delivery carries the same `webhook-id`, so a receiver that got one twice (a sweep that
//! overlapped another) can tell.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::errors::StoreError;
use crate::finish_request::{FinishPorts, Links};
use crate::ports::WebhookPayload;
use crate::request::{RequestRecord, RequestStatus, errors_csv_key, errors_csv_path, output_csv_key, output_csv_path};

/// Deliveries of one webhook before it is given up, the first one included.
pub const MAX_DELIVERIES: u32 = 12;

/// When delivery number `delivered + 1` is due after `delivered` failed ones: `base`, doubling,
/// at most 60 times `base`; `None` once `MAX_DELIVERIES` have failed.
pub fn next_delivery_in(delivered: u32, base: Duration) -> Option<Duration> {
    (delivered < MAX_DELIVERIES).then(|| (base * (1 << (delivered.clamp(1, 7) - 1))).min(base * 60))
}

/// Delivery number `delivery` (1 from the notifier, more from the sweeper) of a final request's
/// webhook; schedules the next one when it fails and the receiver may come back. Requests
/// without a webhook are left alone.
pub async fn deliver(
    ports: &FinishPorts<'_>,
    request: &RequestRecord,
    status: RequestStatus,
    links: &Links,
    delivery: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (Some(url), Some(secret)) = (&request.webhook_url, &request.webhook_secret) else {
        return Ok(());
    };
    let id = request.request_id;
    let payload = payload(ports, request, status, links).await?;
    match ports.webhooks.send(url, secret, &payload).await {
        Ok(()) => tracing::info!(request_id = %id, stage = "webhook", delivery, "delivered"),
        Err(error) if !error.permanent => match next_delivery_in(delivery, ports.webhooks.redelivery_base()) {
            Some(wait) => {
                tracing::warn!(request_id = %id, stage = "webhook", delivery, retry_in_s = wait.as_secs(), error = %error);
                let next_at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                return ports.table.defer_webhook(id, delivery, next_at).await;
            }
            None => tracing::error!(request_id = %id, stage = "webhook", delivery, error = %error, "given up"),
        },
        Err(error) => {
            tracing::error!(request_id = %id, stage = "webhook", delivery, error = %error, "not deliverable")
        }
    }
    if delivery > 1 { ports.table.end_webhook(id).await } else { Ok(()) }
}

/// The sweeper's part: every deferred webhook that is due gets its next delivery. Returns how
/// many were tried.
pub async fn deliver_due_webhooks(
    ports: &FinishPorts<'_>,
    links: &Links,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut tried = 0;
    for id in ports.table.deferred_webhooks().await? {
        let Some(request) = ports.table.get(id).await? else { continue };
        if request.webhook_next_at.is_none_or(|due| due > now) || !request.status.is_final() {
            continue;
        }
        deliver(ports, &request, request.status, links, request.webhook_attempts + 1, now).await?;
        tried += 1;
    }
    Ok(tried)
}

async fn payload(
    ports: &FinishPorts<'_>,
    request: &RequestRecord,
    status: RequestStatus,
    links: &Links,
) -> Result<WebhookPayload, StoreError> {
    let id = request.request_id;
    let errors_csv_url = if request.failed > 0 {
        Some(links.link(ports.blobs, errors_csv_path(id), &errors_csv_key(id)).await?)
    } else {
        None
    };
    Ok(WebhookPayload {
        request_id: id,
        status,
        total: request.total,
        succeeded: request.succeeded,
        failed: request.failed,
        output_csv_url: links.link(ports.blobs, output_csv_path(id), &output_csv_key(id)).await?,
        errors_csv_url,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::http_url::HttpUrl;
    use crate::memory::{MemoryBlobs, MemoryTable, MemoryWebhooks};
    use crate::ports::RequestTable;
    use crate::request_id::RequestId;
    use crate::webhook_signature::WebhookSecret;

    #[derive(Default)]
    struct Fixture {
        table: MemoryTable,
        blobs: MemoryBlobs,
        webhooks: MemoryWebhooks,
    }

    impl Fixture {
        fn ports(&self) -> FinishPorts<'_> {
            FinishPorts { table: &self.table, blobs: &self.blobs, webhooks: &self.webhooks }
        }

        /// A request that just became final, with a webhook.
        async fn finished_request(&self) -> RequestRecord {
            let url = HttpUrl::parse("https://hooks.example/done").unwrap();
            let mut request = RequestRecord::new(RequestId::new_random(), 2, Some(url), Utc::now());
            request.webhook_secret = Some(WebhookSecret::generate().unwrap());
            (request.status, request.succeeded, request.failed, request.remaining) =
                (RequestStatus::CompletedWithErrors, 1, 1, 0);
            self.table.create(&request).await.unwrap();
            request
        }

        async fn first_delivery(&self, request: &RequestRecord, now: DateTime<Utc>) {
            deliver(&self.ports(), request, request.status, &links(), 1, now).await.unwrap();
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

    #[test]
    fn deliveries_back_off_to_an_hour_and_stop() {
        let minute = Duration::from_secs(60);
        let minutes: Vec<Option<u64>> =
            (1..=MAX_DELIVERIES).map(|n| next_delivery_in(n, minute).map(|d| d.as_secs() / 60)).collect();
        let hour = Some(60);
        let expected = [Some(1), Some(2), Some(4), Some(8), Some(16), Some(32), hour, hour, hour, hour, hour, None];
        assert_eq!(minutes, expected);
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
