//! Standard Webhooks signatures (standardwebhooks.com): the secret a receiver is given, the
//! `webhook-signature` value a sender computes, and the receiver's check. Pure (no I/O, no
//! clock: the caller passes the time) so that the notifier that signs, the tests that check its
//! deliveries and the `imgpipe verify-webhook` command all use this one copy of the scheme.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`:
//! one or more space-separated `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "whsec_";

/// How far a delivery's timestamp may be from the receiver's clock, the standard's default:
/// older deliveries may be replays, newer ones come from a clock that is wrong.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// A webhook signing secret. Shown as `whsec_<base64>`; never in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

#[derive(Debug, thiserror::Error)]
#[error("not a webhook secret (expected whsec_ followed by base64)")]
pub struct InvalidSecret;

/// Why a delivery does not verify, in words a receiver can act on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("webhook-timestamp is not a Unix time in seconds: {0:?}")]
    UnreadableTimestamp(String),
    #[error("webhook-timestamp is {0} s in the past, more than the {1} s allowed (a replay?)")]
    TooOld(i64, i64),
    #[error("webhook-timestamp is {0} s in the future, more than the {1} s allowed (a wrong clock?)")]
    TooNew(i64, i64),
    #[error("webhook-signature has no v1,<base64> signature")]
    NoSignature,
    #[error("no signature in webhook-signature matches this secret, id, timestamp and body")]
    Mismatch,
}

/// What a receiver got: the three headers' values and the raw body.
pub struct Delivery<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
    pub body: &'a [u8],
}

impl WebhookSecret {
    /// A secret of these key bytes (the standard asks for 24 to 64).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(InvalidSecret)?;
        STANDARD.decode(encoded).map(Self).map_err(|_| InvalidSecret)
    }

    /// The `webhook-signature` header value for one delivery.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(message_id, &timestamp.to_string(), body)))
    }

    /// Whether `delivery` was signed with this secret at a time within `tolerance_secs` of
    /// `now` (Unix seconds). Any one matching `v1` signature is enough (senders list several
    /// while they rotate secrets); the comparison takes the same time whatever the bytes.
    pub fn verify(&self, delivery: &Delivery, now: i64, tolerance_secs: i64) -> Result<(), Rejected> {
        let timestamp = delivery.timestamp.trim();
        let sent: i64 = timestamp.parse().map_err(|_| Rejected::UnreadableTimestamp(timestamp.to_string()))?;
        if now - sent > tolerance_secs {
            return Err(Rejected::TooOld(now - sent, tolerance_secs));
        }
        if sent - now > tolerance_secs {
            return Err(Rejected::TooNew(sent - now, tolerance_secs));
        }
        let candidates: Vec<Vec<u8>> = delivery
            .signature
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| STANDARD.decode(encoded).ok())
            .collect();
        if candidates.is_empty() {
            return Err(Rejected::NoSignature);
        }
        let expected = self.mac(delivery.id.trim(), timestamp, delivery.body);
        let matches = candidates.iter().fold(0u8, |any, candidate| any | candidate.ct_eq(&expected).unwrap_u8());
        if matches == 1 { Ok(()) } else { Err(Rejected::Mismatch) }
    }

    fn mac(&self, message_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(format!("{message_id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SENT: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn delivery<'a>(timestamp: &'a str, signature: &'a str, body: &'a [u8]) -> Delivery<'a> {
        Delivery { id: ID, timestamp, signature, body }
    }

    #[test]
    fn signs_like_the_specification_example() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, SENT, BODY), SIGNATURE);
    }

    #[test]
    fn verifies_the_specification_example_within_the_tolerance() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let timestamp = SENT.to_string();
        assert_eq!(secret.verify(&delivery(&timestamp, SIGNATURE, BODY), SENT + 300, 300), Ok(()));
        assert_eq!(secret.verify(&delivery(&timestamp, SIGNATURE, BODY), SENT - 300, 300), Ok(()));
    }

    #[test]
    fn any_one_of_several_signatures_is_enough() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let header = format!("v1,bm90IGl0 v2,whatever {SIGNATURE}");
        assert_eq!(secret.verify(&delivery(&SENT.to_string(), &header, BODY), SENT, 300), Ok(()));
    }

    #[test]
    fn refuses_each_way_a_delivery_can_be_wrong() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let timestamp = SENT.to_string();
        let refused = |timestamp: &str, signature: &str, body: &[u8], now: i64| {
            secret.verify(&delivery(timestamp, signature, body), now, 300).unwrap_err()
        };
        assert_eq!(refused(&timestamp, SIGNATURE, br#"{"test": 1}"#, SENT), Rejected::Mismatch, "tampered body");
        assert_eq!(refused(&(SENT + 1).to_string(), SIGNATURE, BODY, SENT), Rejected::Mismatch, "another time");
        assert_eq!(refused(&timestamp, SIGNATURE, BODY, SENT + 301), Rejected::TooOld(301, 300));
        assert_eq!(refused(&timestamp, SIGNATURE, BODY, SENT - 301), Rejected::TooNew(301, 300));
        assert_eq!(refused("yesterday", SIGNATURE, BODY, SENT), Rejected::UnreadableTimestamp("yesterday".into()));
        assert_eq!(refused(&timestamp, "v2,g0hM9SsE", BODY, SENT), Rejected::NoSignature);
        assert_eq!(refused(&timestamp, "", BODY, SENT), Rejected::NoSignature);
        let other = WebhookSecret::from_bytes(vec![7; 32]);
        let signed_by_other = other.sign(ID, SENT, BODY);
        assert_eq!(refused(&timestamp, &signed_by_other, BODY, SENT), Rejected::Mismatch, "another secret");
    }

    #[test]
    fn secrets_round_trip_as_text_and_never_print() {
        let secret = WebhookSecret::from_bytes(vec![1; 32]);
        assert!(secret.to_string().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&secret.to_string()).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(..)");
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err(), "no prefix");
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
    }
}
