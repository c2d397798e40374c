//! Safe retries of an upload: an `Idempotency-Key` header (per tenant) makes a repeated POST
//! answer what the first one did instead of making a second request.
//!
//! The key's record is written with a conditional put before the request is made (`in_progress`),
//! completed with the answer once the request exists, and lives 24 hours. A repeat with the same
//! body replays the answer; with another body it is refused (422); while the first is still in
//! progress, it waits for it (409). An in-progress record whose upload died is taken over once
//! it is older than `IN_PROGRESS_LEASE` (the API's own timeout is 29 s).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::request_id::RequestId;
use crate::domain::tenant::TenantId;

/// How long a key's first answer is replayed.
pub const IDEMPOTENCY_LIFETIME: Duration = Duration::hours(24);
/// How long an upload may hold its key before another may take it over.
pub const IN_PROGRESS_LEASE: Duration = Duration::seconds(60);
/// Keys are chosen by callers: bounded, printable.
pub const MAX_KEY_LENGTH: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1-255 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

/// A tenant's idempotency key, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, InvalidIdempotencyKey> {
        let valid = !text.is_empty() && text.len() <= MAX_KEY_LENGTH && text.bytes().all(|b| b.is_ascii_graphic());
        if valid { Ok(Self(text.into())) } else { Err(InvalidIdempotencyKey) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a completed upload answered, to answer a repeat the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub request_id: RequestId,
    pub images: u64,
    /// Whether the answer had a webhook secret: derived again from the request id for a replay,
    /// it is never stored.
    pub has_webhook: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub tenant_id: TenantId,
    pub key: String,
    /// Hex SHA-256 of the upload's body (and webhook URL): a repeat must be the same upload.
    pub fingerprint: String,
    /// When the key may be used again: TTL deletes it some time after; reads check it themselves.
    pub replay_until: DateTime<Utc>,
    /// `None` while the first upload is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<StoredAnswer>,
    pub started_at: DateTime<Utc>,
}

/// What to do with an upload that carries a key whose record is `existing`.
#[derive(Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Replay the first answer.
    Replay(StoredAnswer),
    /// The same key with another body: 422.
    DifferentBody,
    /// The first upload with this key is still running: 409.
    InProgress,
    /// The record has expired or its upload died: this upload may take the key.
    Expired,
}

/// The fingerprint of an upload: its CSV bytes and its webhook URL.
pub fn fingerprint(csv: &[u8], webhook_url: Option<&str>) -> String {
    let digest =
        Sha256::new().chain_update(csv).chain_update([0]).chain_update(webhook_url.unwrap_or("").as_bytes()).finalize();
    hex::encode(digest)
}

impl IdempotencyRecord {
    pub fn start(tenant_id: TenantId, key: &IdempotencyKey, fingerprint: String, now: DateTime<Utc>) -> Self {
        Self {
            tenant_id,
            key: key.0.clone(),
            fingerprint,
            replay_until: now + IDEMPOTENCY_LIFETIME,
            answer: None,
            started_at: now,
        }
    }

    /// How an upload with `fingerprint` at `now` meets this record.
    pub fn meet(&self, fingerprint: &str, now: DateTime<Utc>) -> Repeat {
        if self.replay_until <= now {
            return Repeat::Expired;
        }
        match &self.answer {
            _ if self.fingerprint != fingerprint => Repeat::DifferentBody,
            Some(answer) => Repeat::Replay(answer.clone()),
            None if now - self.started_at >= IN_PROGRESS_LEASE => Repeat::Expired,
            None => Repeat::InProgress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(now: DateTime<Utc>) -> IdempotencyRecord {
        let key = IdempotencyKey::parse("order-7").unwrap();
        IdempotencyRecord::start("acme".parse().unwrap(), &key, fingerprint(b"csv", None), now)
    }

    #[test]
    fn a_repeat_replays_waits_or_is_refused_by_what_it_meets() {
        let now = Utc::now();
        let mut first = record(now);
        let same = fingerprint(b"csv", None);
        assert_eq!(first.meet(&same, now), Repeat::InProgress);
        assert_eq!(first.meet(&fingerprint(b"csv", Some("https://h.example/")), now), Repeat::DifferentBody);
        assert_eq!(first.meet(&same, now + IN_PROGRESS_LEASE), Repeat::Expired, "its upload died");
        let answer = StoredAnswer { request_id: RequestId::new_random(), images: 3, has_webhook: false };
        first.answer = Some(answer.clone());
        assert_eq!(first.meet(&same, now + Duration::hours(23)), Repeat::Replay(answer));
        assert_eq!(first.meet(&fingerprint(b"other", None), now), Repeat::DifferentBody);
        assert_eq!(first.meet(&same, now + IDEMPOTENCY_LIFETIME), Repeat::Expired, "checked on read: TTL lags");
    }

    #[test]
    fn keys_are_bounded_and_printable() {
        assert!(IdempotencyKey::parse("9f1c-order/7").is_ok());
        for bad in ["", "has space", "tab\t", &"k".repeat(256), "é"] {
            assert_eq!(IdempotencyKey::parse(bad), Err(InvalidIdempotencyKey), "{bad:?}");
        }
    }
}
