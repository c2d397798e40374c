//! The API over HTTP: every call sends the key, every answer other than 2xx becomes a
//! `CliError` with its exit code. Links that redirect to S3 are followed by a second client
//! that never carries the key, whatever host the redirect names.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::answers::ErrorBody;
use crate::config::Settings;
use crate::errors::CliError;

/// An API call that takes longer than this has a problem a retry may fix.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Api {
    /// To the API: no redirects followed, the key added per call.
    http: reqwest::Client,
    /// To presigned S3 URLs: never the key.
    plain: reqwest::Client,
    base: String,
    authorization: String,
}

impl Api {
    pub fn new(settings: &Settings) -> Result<Self, CliError> {
        let build = |redirects| {
            reqwest::Client::builder()
                .dns_resolver(std::sync::Arc::new(LocalhostResolver))
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(redirects)
                .user_agent(concat!("imgpipe-cli/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|error| CliError::Usage(format!("cannot set up HTTP: {error}")))
        };
        reqwest::Url::parse(&settings.api_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| CliError::Usage(format!("the API URL {:?} is not an http(s) URL", settings.api_url)))?;
        Ok(Self {
            http: build(reqwest::redirect::Policy::none())?,
            plain: build(reqwest::redirect::Policy::limited(5))?,
            base: settings.api_url.clone(),
            authorization: format!("Bearer {}", settings.api_key),
        })
    }

    /// A call to the API: `path` starts with `/api/`.
    pub fn call(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .timeout(CALL_TIMEOUT)
    }

    /// Sends a call; a 2xx answer as it came, anything else as its error.
    pub async fn send(&self, what: &str, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|error| unreachable(what, &error))?;
        if response.status().is_success() || response.status().is_redirection() {
            return Ok(response);
        }
        Err(error_of(what, response).await)
    }

    /// A GET whose 2xx JSON answer is read as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let what = format!("GET {path}");
        let response = self.send(&what, self.call(Method::GET, path)).await?;
        read_json(&what, response).await
    }

    /// A GET answered by a JSON body, as raw JSON (for `--json`).
    pub async fn get_raw(&self, path: &str) -> Result<serde_json::Value, CliError> {
        self.get_json(path).await
    }

    /// The bytes behind an API link that redirects (302) to a presigned S3 URL.
    pub async fn download(&self, url: &str) -> Result<bytes::Bytes, CliError> {
        let path = url.strip_prefix(&self.base).unwrap_or(url);
        let what = format!("GET {path}");
        let response = self.send(&what, self.call(Method::GET, path)).await?;
        let response = match response.headers().get(reqwest::header::LOCATION) {
            Some(location) if response.status().is_redirection() => {
                let location =
                    location.to_str().map_err(|_| CliError::Unavailable(format!("{what}: a bad Location")))?;
                let response = self.plain.get(location).send().await.map_err(|error| unreachable(&what, &error))?;
                if !response.status().is_success() {
                    return Err(CliError::Unavailable(format!(
                        "{what}: the storage answered HTTP {}",
                        response.status()
                    )));
                }
                response
            }
            _ => response,
        };
        response.bytes().await.map_err(|error| unreachable(&what, &error))
    }

    /// A plain PUT of `body` to a presigned URL (no key, no extra headers).
    pub async fn put_presigned(&self, url: &str, body: Vec<u8>) -> Result<(), CliError> {
        let what = "PUT <upload_url>";
        let response = self.plain.put(url).body(body).send().await.map_err(|error| unreachable(what, &error))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status @ (StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST) => Err(CliError::Refused {
                message: format!(
                    "{what}: the storage refused the CSV (HTTP {status}; the upload URL may have expired)"
                ),
                problems: vec![],
            }),
            status => Err(CliError::Unavailable(format!("{what}: the storage answered HTTP {status}"))),
        }
    }
}

pub async fn read_json<T: DeserializeOwned>(what: &str, response: Response) -> Result<T, CliError> {
    let body = response.bytes().await.map_err(|error| unreachable(what, &error))?;
    serde_json::from_slice(&body)
        .map_err(|error| CliError::Unavailable(format!("{what}: an answer the CLI cannot read ({error})")))
}

/// The `CliError` of an answer other than 2xx, from its `ErrorAnswer` body when it has one.
pub async fn error_of(what: &str, response: Response) -> CliError {
    let (status, body) = error_body(response).await;
    error_from(what, status, body)
}

/// An answer other than 2xx: its status and its `ErrorAnswer` body, when it is one.
pub async fn error_body(response: Response) -> (u16, Option<ErrorBody>) {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).ok())
}

pub fn error_from(what: &str, status: u16, body: Option<ErrorBody>) -> CliError {
    match body {
        Some(error) => {
            CliError::from_answer(what, status, &error.error, &error.message, error.problems.unwrap_or_default())
        }
        None => CliError::from_answer(what, status, "", "", vec![]),
    }
}

/// The `CliError` of a call that got no answer: the network or the service is down (exit 6).
pub fn unreachable(what: &str, error: &reqwest::Error) -> CliError {
    let cause = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        error.to_string()
    };
    // The innermost cause says what happened ("Connection refused"); reqwest's own layers do not.
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(error);
    while let Some(source) = next {
        innermost = Some(source);
        next = source.source();
    }
    let source = innermost.map(|source| format!(" ({source})")).unwrap_or_default();
    CliError::Unavailable(format!("{what}: {cause}{source}"))
}

/// `localhost` and every `*.localhost` name are the loopback address (RFC 6761, as curl and
/// browsers do): the local stack's API is `http://<api id>.execute-api.localhost:<port>`,
/// which the system resolver may not know. Every other name goes to the system resolver.
struct LocalhostResolver;

impl Resolve for LocalhostResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if is_localhost(&host) {
                let loopback: Addrs = Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
                return Ok(loopback);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost" || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_localhost_names_are_pinned_to_loopback() {
        assert!(is_localhost("localhost"));
        assert!(is_localhost("abc123.execute-api.localhost"));
        assert!(is_localhost("abc123.execute-api.localhost."));
        assert!(!is_localhost("localhost.example.com"));
        assert!(!is_localhost("notlocalhost"));
        assert!(!is_localhost("api.example.com"));
    }
}
