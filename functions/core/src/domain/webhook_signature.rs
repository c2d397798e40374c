//! Signing webhooks the Standard Webhooks way (standardwebhooks.com), so a receiver can check
//! that a POST came from us and was not replayed: each request gets its own secret, shown
//! once in the upload's answer, and every delivery carries `webhook-id`, `webhook-timestamp`
//! and `webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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
}
