//! Delivering the completion webhook: JSON POST, only 2xx counts, a few quick retries.
//!
//! The URL comes from whoever uploaded the CSV, so it gets the image fetcher's address checks
//! (`crate::adapters::http_fetch::GuardedClient`, enforcing `crate::domain::address_policy`):
//! no loopback, link-local, private or reserved addresses.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::adapters::http_fetch::{GuardedClient, SystemLookup, refused_address};
use crate::domain::address_policy::ExemptHosts;
use crate::domain::http_url::HttpUrl;
use crate::domain::webhook::WebhookPayload;
use crate::domain::webhook_signature::{WebhookSecret, WebhookSigningKey};
use crate::ports::{WebhookError, WebhookSender};

pub struct HttpWebhookSender {
    client: GuardedClient,
    /// Quick tries within one delivery (WEBHOOK_ATTEMPTS); a delivery whose tries all fail is
    /// delivered again later (`use_cases::deliver_webhook`).
    tries_per_delivery: u32,
    /// Of one try.
    timeout: Duration,
    redelivery_base: Duration,
    /// Each request's secret is derived from it.
    signing_key: WebhookSigningKey,
}

/// Why one try failed, and whether another could do better.
enum Failure {
    /// The receiver is not a public address: no retry will change that.
    Refused,
    Failed(String),
}

const REFUSED: &str = "the webhook URL leads to a non-public network address";

impl HttpWebhookSender {
    pub fn new(
        timeout: Duration,
        tries_per_delivery: u32,
        signing_key: WebhookSigningKey,
    ) -> Result<Self, reqwest::Error> {
        Self::with_exempt_hosts(timeout, tries_per_delivery, ExemptHosts::default(), signing_key)
    }

    /// `exempt_hosts`: exact `host:port` pairs delivered to although not public, for the local
    /// stack's receiver on loopback. Empty in production.
    pub fn with_exempt_hosts(
        timeout: Duration,
        tries_per_delivery: u32,
        exempt_hosts: ExemptHosts,
        signing_key: WebhookSigningKey,
    ) -> Result<Self, reqwest::Error> {
        // A 3xx is a failure, not an instruction to post our payload elsewhere: the guarded
        // client never follows redirects, and ignores proxy variables.
        let client = GuardedClient::new(exempt_hosts, Arc::new(SystemLookup), |builder| {
            builder.timeout(timeout).user_agent(concat!("imgpipe/", env!("CARGO_PKG_VERSION")))
        })?;
        let tries_per_delivery = tries_per_delivery.max(1);
        Ok(Self { client, tries_per_delivery, timeout, redelivery_base: Duration::from_secs(60), signing_key })
    }

    /// See `WebhookSender::redelivery_base`; a minute unless set.
    pub fn with_redelivery_base(self, redelivery_base: Duration) -> Self {
        Self { redelivery_base, ..self }
    }

    /// One try, signed afresh: the timestamp is the time of this try.
    async fn try_once(&self, url: &HttpUrl, signed: &Signed) -> Result<(), Failure> {
        let client = self.client.client_for(url).map_err(|_| Failure::Refused)?;
        let timestamp = chrono::Utc::now().timestamp();
        let request = client
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &signed.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed.secret.sign(&signed.message_id, timestamp, &signed.body))
            .body(signed.body.clone());
        let response = request.send().await.map_err(|error| {
            if refused_address(&error) { Failure::Refused } else { Failure::Failed(error.without_url().to_string()) }
        })?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(Failure::Failed(format!("the receiver answered HTTP {}", status.as_u16()))),
        }
    }
}

/// What every try of one delivery shares.
struct Signed {
    /// The same on every try and every delivery, so receivers can drop repeats.
    message_id: String,
    body: Vec<u8>,
    secret: WebhookSecret,
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, url: &HttpUrl, payload: &WebhookPayload) -> Result<(), WebhookError> {
        let secret = self.signing_key.secret_for(payload.request_id);
        let body = serde_json::to_vec(payload).map_err(|e| WebhookError { message: e.to_string(), permanent: true })?;
        let signed = Signed { message_id: format!("msg_{}", payload.request_id), body, secret };
        let mut last_error = String::new();
        for try_number in 0..self.tries_per_delivery {
            if try_number > 0 {
                tokio::time::sleep(wait_before_try(try_number)).await;
            }
            match self.try_once(url, &signed).await {
                Ok(()) => return Ok(()),
                Err(Failure::Refused) => return Err(WebhookError { message: REFUSED.into(), permanent: true }),
                Err(Failure::Failed(error)) => last_error = error,
            }
        }
        Err(WebhookError { message: format!("{} tries: {last_error}", self.tries_per_delivery), permanent: false })
    }

    fn redelivery_base(&self) -> Duration {
        self.redelivery_base
    }

    fn longest_send(&self) -> Duration {
        let waits: Duration = (1..self.tries_per_delivery).map(wait_before_try).sum();
        // Signing and the payload's links take milliseconds; the margin is for a slow machine.
        self.timeout * self.tries_per_delivery + waits + Duration::from_secs(5)
    }
}

/// The wait before try number `try_number` (from 1; the first try, 0, does not wait): 1 s, 2 s, ...
fn wait_before_try(try_number: u32) -> Duration {
    Duration::from_millis(500 << try_number.min(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::request::RequestStatus;
    use crate::domain::request_id::RequestId;

    fn signing_key() -> WebhookSigningKey {
        WebhookSigningKey::new(b"a test signing key of at least 32 bytes").unwrap()
    }

    fn payload() -> WebhookPayload {
        WebhookPayload {
            request_id: RequestId::new_random(),
            status: RequestStatus::Completed,
            total: 1,
            succeeded: 1,
            failed: 0,
            cancelled: 0,
            output_csv_url: Some("https://example.com/out.csv".into()),
            errors_csv_url: None,
            failure_reason: None,
        }
    }

    #[test]
    fn a_send_takes_at_most_every_try_with_the_waits_between() {
        let sender = HttpWebhookSender::new(Duration::from_secs(10), 3, signing_key()).expect("client");
        assert_eq!(sender.longest_send(), Duration::from_secs(10 * 3 + 1 + 2 + 5));
    }

    /// Refused without retrying, and without sending anything: the checks run before
    /// connecting, for IP literals here and for names (`localhost`) in the resolver. A refusal
    /// that was retried would end as the transient "3 tries: ..." error, not this permanent one;
    /// the receiver on loopback sees no connection.
    #[tokio::test]
    async fn internal_receivers_are_refused_without_retrying() {
        let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        receiver.set_nonblocking(true).expect("non-blocking");
        let port = receiver.local_addr().expect("address").port();
        let sender = HttpWebhookSender::new(Duration::from_secs(5), 3, signing_key()).expect("client");
        let urls = [
            format!("http://127.0.0.1:{port}/"),
            "http://169.254.169.254/latest/meta-data/".into(),
            format!("http://localhost:{port}/hook"),
        ];
        for url in urls {
            let url = HttpUrl::parse(&url).expect("valid URL");
            let error = sender.send(&url, &payload()).await.expect_err("refused");
            assert_eq!((error.message.as_str(), error.permanent), (REFUSED, true), "{url}");
        }
        assert!(receiver.accept().is_err(), "nothing connected to the receiver");
    }

    #[tokio::test]
    async fn an_allowed_loopback_receiver_gets_the_payload() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let receiver = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Until the whole JSON body is in: the signature covers all of it.
            while !String::from_utf8_lossy(&request).ends_with('}') {
                let read = socket.read(&mut buffer).await.expect("read");
                assert!(read > 0, "connection closed early");
                request.extend_from_slice(&buffer[..read]);
            }
            socket.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await.expect("write");
            String::from_utf8_lossy(&request).into_owned()
        });
        let exempt = ExemptHosts::parse(&format!("127.0.0.1:{port}")).expect("host:port");
        let sender =
            HttpWebhookSender::with_exempt_hosts(Duration::from_secs(5), 1, exempt, signing_key()).expect("client");
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/hook")).expect("valid URL");
        let payload = payload();
        sender.send(&url, &payload).await.expect("delivered");
        let secret = signing_key().secret_for(payload.request_id);

        let request = receiver.await.expect("receiver");
        assert!(request.starts_with("POST /hook "));
        let header = |name: &str| {
            let line = request.lines().find(|line| line.to_ascii_lowercase().starts_with(&format!("{name}:")));
            line.expect(name).split_once(':').unwrap().1.trim().to_string()
        };
        let body = request.split_once("\r\n\r\n").unwrap().1;
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
        assert!(header("webhook-id").starts_with("msg_"));
        assert_eq!(header("webhook-signature"), secret.sign(&header("webhook-id"), timestamp, body.as_bytes()));
    }
}
