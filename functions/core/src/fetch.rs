//! Downloading images: bounded in time, size and redirects, whatever the server does.

use std::time::Duration;

use async_trait::async_trait;

use crate::errors::FetchError;
use crate::http_url::HttpUrl;
use crate::ports::Fetcher;

#[derive(Clone, Debug)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// For the whole download, body included, so a slow server cannot hold a worker.
    pub total_timeout: Duration,
    pub max_bytes: u64,
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(15),
            max_bytes: 25 * 1024 * 1024,
            max_redirects: 3,
        }
    }
}

pub struct HttpFetcher {
    client: reqwest::Client,
    limits: FetchLimits,
}

impl HttpFetcher {
    pub fn new(limits: FetchLimits) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.total_timeout)
            .redirect(reqwest::redirect::Policy::limited(limits.max_redirects))
            // Proxy variables in a Lambda's environment are not ours to follow.
            .no_proxy()
            .user_agent(concat!("imgpipe/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, limits })
    }

    fn classify(&self, error: reqwest::Error) -> FetchError {
        if error.is_timeout() {
            FetchError::Timeout { seconds: self.limits.total_timeout.as_secs() }
        } else if error.is_redirect() {
            FetchError::TooManyRedirects { limit: self.limits.max_redirects }
        } else if error.is_connect() {
            FetchError::Connect
        } else {
            FetchError::Transfer(without_url(error))
        }
    }
}

/// reqwest puts the URL in its messages; URLs may carry tokens in their query, keep them out.
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

#[async_trait]
impl Fetcher for HttpFetcher {
    async fn fetch(&self, url: &HttpUrl) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .client
            .get(url.as_str())
            .header(reqwest::header::ACCEPT, "image/*")
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let limit = self.limits.max_bytes;
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        // Content-Length can lie or be absent: count while streaming.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
