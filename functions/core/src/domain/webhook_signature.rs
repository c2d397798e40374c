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

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::request_id::RequestId;

const PREFIX: &str = "whsec_";
/// 32 random bytes: inside the 24-64 the standard asks for.
const SECRET_BYTES: usize = 32;

/// A webhook signing secret. Shown as `whsec_<base64>`; never in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookSecret(Vec<u8>);

#[derive(Debug, thiserror::Error)]
#[error("not a webhook secret (expected whsec_ followed by base64)")]
pub struct InvalidSecret;

impl WebhookSecret {
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0; SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text.strip_prefix(PREFIX).ok_or(InvalidSecret)?;
        STANDARD.decode(encoded).map(Self).map_err(|_| InvalidSecret)
    }

    /// The `webhook-signature` header value for one delivery.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(format!("{message_id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

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
        WebhookSecret(mac.finalize().into_bytes().to_vec())
    }
}

impl fmt::Debug for WebhookSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSigningKey(..)")
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl TryFrom<String> for WebhookSecret {
    type Error = InvalidSecret;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<WebhookSecret> for String {
    fn from(secret: WebhookSecret) -> Self {
        secret.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn signs_like_the_specification_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_random_and_round_trip_as_text() {
        let (a, b) = (WebhookSecret::generate().unwrap(), WebhookSecret::generate().unwrap());
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&a.to_string()).unwrap(), a);
        assert_eq!(format!("{a:?}"), "WebhookSecret(..)", "never printed");
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    }

    #[test]
    fn each_request_gets_its_own_secret_derived_again_the_same() {
        let key = WebhookSigningKey::new(&[7; 32]).unwrap();
        let (a, b) = (RequestId::new_random(), RequestId::new_random());
        assert_eq!(key.secret_for(a), key.secret_for(a));
        assert_ne!(key.secret_for(a), key.secret_for(b));
        assert_ne!(WebhookSigningKey::new(&[8; 32]).unwrap().secret_for(a), key.secret_for(a));
        assert_eq!(key.secret_for(a).0.len(), 32, "inside the 24-64 bytes the standard asks for");
        assert!(WebhookSigningKey::new(&[7; 31]).is_err(), "too short to sign with");
        assert_eq!(format!("{key:?}"), "WebhookSigningKey(..)");
    }
}
