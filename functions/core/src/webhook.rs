//! Delivering the completion webhook: JSON POST, only 2xx counts, a few quick retries.

use std::time::Duration;

use async_trait::async_trait;

use crate::http_url::HttpUrl;
use crate::ports::{WebhookError, WebhookPayload, WebhookSender};

pub struct HttpWebhookSender {
    client: reqwest::Client,
    attempts: u32,
}

impl HttpWebhookSender {
    pub fn new(timeout: Duration, attempts: u32) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A 3xx is a failure, not an instruction to post our payload elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("imgpipe/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, attempts: attempts.max(1) })
    }

    async fn attempt(&self, url: &HttpUrl, payload: &WebhookPayload) -> Result<(), String> {
        let response =
            self.client.post(url.as_str()).json(payload).send().await.map_err(|e| e.without_url().to_string())?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the receiver answered HTTP {}", status.as_u16())),
        }
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, url: &HttpUrl, payload: &WebhookPayload) -> Result<(), WebhookError> {
        let mut last_error = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self.attempt(url, payload).await {
                Ok(()) => return Ok(()),
                Err(error) => last_error = error,
            }
        }
        Err(WebhookError(format!("{} attempts: {last_error}", self.attempts)))
    }
}
