//! Every failure the pipeline can meet, and the one place that decides what it means:
//! retry it (transient) or record it and move on (permanent). Each failure also has a stable
//! `code` that users see in the status and the output CSV; messages may change, codes don't.

use crate::domain::codec::CodecError;

/// A failure of one of our own backing services (S3, SQS, DynamoDB, the network to them).
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, timeouts, 5xx, connection failures: the same call may succeed later.
    #[error("{service} is unavailable: {detail}")]
    Unavailable { service: &'static str, detail: String },
    /// The service refused the call as made (bad input, missing resource): retrying won't help.
    #[error("{service} refused the call: {detail}")]
    Refused { service: &'static str, detail: String },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Why an image could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("the download did not finish within {seconds} s")]
    Timeout { seconds: u64 },
    #[error("the image is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("more than {limit} redirects")]
    TooManyRedirects { limit: usize },
    #[error("could not connect to the server")]
    Connect,
    #[error("the download failed: {0}")]
    Transfer(String),
    /// The URL, a redirect or the host's DNS led to an address inside a private, local or
    /// reserved network. The address itself is not named: it could map our network for a prober.
    #[error("the URL or one of its redirects leads to a non-public network address")]
    BlockedAddress,
    /// A redirect led away from http/https (`file:`, `ftp:`, ...).
    #[error("a redirect led to a {scheme}: URL; only http and https are fetched")]
    BlockedScheme { scheme: String },
    /// A redirect's `Location` is unusable: unparseable, without host, or with credentials.
    #[error("a redirect led to an unusable URL: {0}")]
    BadRedirect(String),
    /// The host name did not resolve. Transient because the system resolver cannot tell
    /// "no such name" from "DNS unavailable right now"; retries are bounded by the queue.
    #[error("the server's host name could not be resolved")]
    Dns,
}

impl FetchError {
    pub fn code(&self) -> String {
        match self {
            Self::Status(status) => format!("http_status_{status}"),
            Self::Timeout { .. } => "download_timeout".into(),
            Self::TooLarge { .. } => "too_large_bytes".into(),
            Self::TooManyRedirects { .. } => "too_many_redirects".into(),
            Self::Connect => "connect_error".into(),
            Self::Transfer(_) => "download_error".into(),
            Self::BlockedAddress => "blocked_address".into(),
            Self::BlockedScheme { .. } => "blocked_scheme".into(),
            Self::BadRedirect(_) => "bad_redirect".into(),
            Self::Dns => "dns_error".into(),
        }
    }

    /// 408, 429 and 5xx say "not now"; any other 4xx says "never".
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status(status) => *status == 408 || *status == 429 || *status >= 500,
            Self::Timeout { .. } | Self::Connect | Self::Transfer(_) | Self::Dns => true,
            Self::TooLarge { .. }
            | Self::TooManyRedirects { .. }
            | Self::BlockedAddress
            | Self::BlockedScheme { .. }
            | Self::BadRedirect(_) => false,
        }
    }
}

/// Why one image could not be turned into a compressed JPEG in the bucket.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImageError {
    pub fn code(&self) -> String {
        match self {
            Self::Fetch(error) => error.code(),
            Self::Codec(error) => error.code().into(),
            Self::Store(_) => "storage_error".into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fetch(error) => error.is_transient(),
            Self::Codec(_) => false,
            Self::Store(error) => error.is_transient(),
        }
    }
}

/// The code of an image that had no result when its request was cancelled.
pub const CANCELLED: &str = "cancelled";

/// The code recorded when a transient failure outlived its last allowed attempt.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_permanent_except_timeout_and_throttling() {
        assert!(!ImageError::from(FetchError::Status(404)).is_transient());
        assert!(!ImageError::from(FetchError::Status(403)).is_transient());
        assert!(ImageError::from(FetchError::Status(408)).is_transient());
        assert!(ImageError::from(FetchError::Status(429)).is_transient());
        assert!(ImageError::from(FetchError::Status(503)).is_transient());
    }

    #[test]
    fn codes_are_stable_names() {
        assert_eq!(ImageError::from(FetchError::Status(404)).code(), "http_status_404");
        assert_eq!(ImageError::from(FetchError::TooLarge { limit: 1 }).code(), "too_large_bytes");
        assert_eq!(ImageError::from(CodecError::NotAnImage).code(), "not_an_image");
        assert_eq!(FetchError::BlockedAddress.code(), "blocked_address");
        assert_eq!(FetchError::BlockedScheme { scheme: "file".into() }.code(), "blocked_scheme");
        assert_eq!(FetchError::BadRedirect("no host".into()).code(), "bad_redirect");
        assert_eq!(FetchError::Dns.code(), "dns_error");
        assert_eq!(FetchError::TooManyRedirects { limit: 3 }.code(), "too_many_redirects");
    }

    #[test]
    fn refused_destinations_are_permanent_and_dns_failures_transient() {
        assert!(!FetchError::BlockedAddress.is_transient());
        assert!(!FetchError::BlockedScheme { scheme: "ftp".into() }.is_transient());
        assert!(!FetchError::BadRedirect("no host".into()).is_transient());
        assert!(FetchError::Dns.is_transient());
        assert!(FetchError::Connect.is_transient());
    }

    #[test]
    fn image_problems_are_permanent_and_outages_transient() {
        assert!(!ImageError::from(CodecError::NotAnImage).is_transient());
        assert!(!ImageError::from(FetchError::TooLarge { limit: 1 }).is_transient());
        let outage = StoreError::Unavailable { service: "S3", detail: "throttled".into() };
        assert!(ImageError::from(outage).is_transient());
        assert!(ImageError::from(FetchError::Timeout { seconds: 5 }).is_transient());
    }
}
