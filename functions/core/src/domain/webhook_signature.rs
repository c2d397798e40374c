//! Signing webhooks the Standard Webhooks way (standardwebhooks.com), so a receiver can check
//! that a POST came from us and was not replayed: each request gets its own secret, shown
//! once in the upload's answer, and every delivery carries `webhook-id`, `webhook-timestamp`
//! and `webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`.
//!
//! The secrets are not stored anywhere: each is derived from one signing key (kept in Secrets
//! Manager, read once at start by the API and the notifier) and the request id,
//! `HMAC-SHA256(signing key, request id)`. The table, its stream and every role that can read
//! them never see one.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::request_id::RequestId;

/// The scheme itself (the secret, signing, verifying) lives in `imgpipe-signature`, which the
/// CLI shares without pulling in the rest of core.
pub use imgpipe_signature::{DEFAULT_TOLERANCE_SECS, Delivery, InvalidSecret, Rejected, WebhookSecret};

/// 32 bytes: inside the 24-64 the standard asks for.
const SECRET_BYTES: usize = 32;

/// The key every request's webhook secret is derived from. Never in logs.
#[derive(Clone)]
pub struct WebhookSigningKey(Vec<u8>);

#[derive(Debug, thiserror::Error)]
#[error("the webhook signing key must have at least 32 bytes")]
pub struct WeakSigningKey;

impl WebhookSigningKey {
    /// From the secret's value as Secrets Manager keeps it (text of at least 32 bytes).
    pub fn new(material: &[u8]) -> Result<Self, WeakSigningKey> {
        if material.len() < SECRET_BYTES { Err(WeakSigningKey) } else { Ok(Self(material.to_vec())) }
    }

    /// The webhook secret of one request: the same every time it is asked for.
    pub fn secret_for(&self, request_id: RequestId) -> WebhookSecret {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(request_id.to_string().as_bytes());
        WebhookSecret::from_bytes(mac.finalize().into_bytes().to_vec())
    }
}

impl fmt::Debug for WebhookSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSigningKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_gets_its_own_secret_derived_again_the_same() {
        let key = WebhookSigningKey::new(&[7; 32]).unwrap();
        let (a, b) = (RequestId::new_random(), RequestId::new_random());
        assert_eq!(key.secret_for(a), key.secret_for(a));
        assert_ne!(key.secret_for(a), key.secret_for(b));
        assert_ne!(WebhookSigningKey::new(&[8; 32]).unwrap().secret_for(a), key.secret_for(a));
        assert_eq!(key.secret_for(a).as_bytes().len(), 32, "inside the 24-64 bytes the standard asks for");
        assert!(WebhookSigningKey::new(&[7; 31]).is_err(), "too short to sign with");
        assert_eq!(format!("{key:?}"), "WebhookSigningKey(..)");
    }
}
