//! API keys: how a caller proves which tenant it is.
//!
//! A key reads `ik_<key id>_<secret>`: the key id (16 hex digits) finds the key's record, the
//! secret (256 random bits, 64 hex digits) proves the caller holds it. The record keeps only the
//! secret's SHA-256: the secret is random, so a fast hash is enough (no dictionary to try), and
//! a leaked table gives nobody a working key. Digests are compared in constant time.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::tenant::TenantId;

const PREFIX: &str = "ik_";
const KEY_ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A key as the caller presents it (`Authorization: Bearer ik_...`). Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    key_id: String,
    secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an API key (expected ik_<16 hex digits>_<64 hex digits>)")]
pub struct MalformedKey;

impl ApiKey {
    /// A new key with random id and secret.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut id = [0u8; KEY_ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        getrandom::fill(&mut id)?;
        getrandom::fill(&mut secret)?;
        Ok(Self { key_id: hex::encode(id), secret: hex::encode(secret) })
    }

    /// The key from an `Authorization` header's value (`Bearer ik_...`, or the bare key).
    pub fn from_authorization(header: &str) -> Result<Self, MalformedKey> {
        let header = header.trim();
        let key = match header.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            Some(_) => return Err(MalformedKey),
            None => header,
        };
        Self::parse(key)
    }

    pub fn parse(text: &str) -> Result<Self, MalformedKey> {
        let rest = text.strip_prefix(PREFIX).ok_or(MalformedKey)?;
        let (key_id, secret) = rest.split_once('_').ok_or(MalformedKey)?;
        let hex = |part: &str, length: usize| {
            part.len() == length && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if hex(key_id, KEY_ID_HEX) && hex(secret, SECRET_HEX) {
            Ok(Self { key_id: key_id.into(), secret: secret.into() })
        } else {
            Err(MalformedKey)
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// What the key's record keeps instead of the secret.
    pub fn secret_digest(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// The whole key, to show its owner once when it is created.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.key_id, self.secret)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, ..)", self.key_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
}

/// A key as the table keeps it: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub tenant_id: TenantId,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub status: KeyStatus,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How often `last_used_at` is written at most: once a minute is precise enough to tell a key in
/// use from one that is not, without a write on every call.
pub const LAST_USED_PRECISION: Duration = Duration::minutes(1);

impl KeyRecord {
    pub fn new(key: &ApiKey, tenant_id: TenantId, now: DateTime<Utc>) -> Self {
        Self {
            key_id: key.key_id.clone(),
            tenant_id,
            secret_sha256: key.secret_digest(),
            status: KeyStatus::Active,
            created_at: now,
            last_used_at: None,
        }
    }

    /// Whether `key` is this record's key and may be used: active, and its secret's digest equal
    /// (compared in constant time).
    pub fn admits(&self, key: &ApiKey) -> bool {
        let digest_matches: bool = self.secret_sha256.as_bytes().ct_eq(key.secret_digest().as_bytes()).into();
        digest_matches && self.key_id == key.key_id && self.status == KeyStatus::Active
    }

    /// Whether a use at `now` should be written down (`LAST_USED_PRECISION`).
    pub fn use_worth_recording(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at.is_none_or(|last| now - last >= LAST_USED_PRECISION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    #[test]
    fn a_generated_key_reads_back_and_its_record_admits_it_only() {
        let key = ApiKey::generate().unwrap();
        let shown = key.reveal();
        assert!(shown.starts_with("ik_") && shown.len() == 3 + 16 + 1 + 64, "{shown}");
        let read = ApiKey::from_authorization(&format!("Bearer {shown}")).unwrap();
        assert_eq!(read, key);
        let record = KeyRecord::new(&key, tenant(), Utc::now());
        assert!(!record.secret_sha256.contains(&shown[20..]), "the secret is not stored");
        assert!(record.admits(&read));
        assert!(!record.admits(&ApiKey::generate().unwrap()));
        let same_id_other_secret = ApiKey::parse(&format!("ik_{}_{}", key.key_id(), "0".repeat(64))).unwrap();
        assert!(!record.admits(&same_id_other_secret));
        let revoked = KeyRecord { status: KeyStatus::Revoked, ..record };
        assert!(!revoked.admits(&read), "a revoked key is refused");
    }

    #[test]
    fn malformed_keys_are_refused() {
        let secret = "a".repeat(64);
        for bad in [
            String::new(),
            "Bearer".into(),
            format!("Basic ik_0123456789abcdef_{secret}"),
            format!("ik_0123456789abcde_{secret}"),
            format!("ik_0123456789abcdef_{}", &secret[1..]),
            format!("ik_0123456789ABCDEF_{secret}"),
            format!("xk_0123456789abcdef_{secret}"),
            format!("ik_0123456789abcdef{secret}"),
        ] {
            assert_eq!(ApiKey::from_authorization(&bad), Err(MalformedKey), "{bad}");
        }
        assert!(ApiKey::from_authorization(&format!("bearer  ik_0123456789abcdef_{secret} ")).is_ok());
    }

    #[test]
    fn last_use_is_written_at_most_once_a_minute() {
        let now = Utc::now();
        let mut record = KeyRecord::new(&ApiKey::generate().unwrap(), tenant(), now);
        assert!(record.use_worth_recording(now), "never used");
        record.last_used_at = Some(now);
        assert!(!record.use_worth_recording(now + Duration::seconds(59)));
        assert!(record.use_worth_recording(now + Duration::seconds(60)));
    }
}
