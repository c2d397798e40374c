//! `imgpipe verify-webhook`: checks one delivery the Standard Webhooks way with the request's
//! secret. The delivery is read as a raw HTTP request (`--request FILE`, `-` for stdin: the
//! request line, `Name: value` header lines, a blank line, the body as sent), or as
//! `--headers FILE` (`Name: value` lines; a request line is skipped) with `--body FILE`.

use imgpipe_signature::{Delivery, WebhookSecret};

use crate::errors::CliError;

/// The three headers a signed delivery carries, read from header lines.
#[derive(Debug, Default, PartialEq)]
pub struct SignatureHeaders {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// Reads `Name: value` lines (names in any case); lines without a colon, such as a request
/// line, are skipped.
pub fn parse_headers(text: &str) -> SignatureHeaders {
    let mut headers = SignatureHeaders::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = Some(value.trim().to_string());
        match name.trim().to_ascii_lowercase().as_str() {
            "webhook-id" => headers.id = value,
            "webhook-timestamp" => headers.timestamp = value,
            "webhook-signature" => headers.signature = value,
            _ => {}
        }
    }
    headers
}

/// A raw HTTP request: its head's lines and its body (after the first blank line, CRLF or LF).
pub fn split_request(raw: &[u8]) -> (String, &[u8]) {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|at| (at, 4));
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2));
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match end {
        Some((at, len)) => (String::from_utf8_lossy(&raw[..at]).into_owned(), &raw[at + len..]),
        None => (String::from_utf8_lossy(raw).into_owned(), &[]),
    }
}

/// `Ok` when valid; the reason, as `CliError::Invalid`, when not.
pub fn check(secret: &str, headers: &SignatureHeaders, body: &[u8], now: i64, tolerance: i64) -> Result<(), CliError> {
    let secret = WebhookSecret::parse(secret).map_err(|error| CliError::Usage(format!("--secret: {error}")))?;
    let missing = |name: &str| CliError::Invalid(format!("invalid: no {name} header"));
    let delivery = Delivery {
        id: headers.id.as_deref().ok_or_else(|| missing("webhook-id"))?,
        timestamp: headers.timestamp.as_deref().ok_or_else(|| missing("webhook-timestamp"))?,
        signature: headers.signature.as_deref().ok_or_else(|| missing("webhook-signature"))?,
        body,
    };
    secret.verify(&delivery, now, tolerance).map_err(|reason| CliError::Invalid(format!("invalid: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SENT: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn request(line_end: &str, body: &[u8]) -> Vec<u8> {
        let head = [
            "POST /hook HTTP/1.1",
            "Host: receiver.example",
            "Webhook-Id: msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp: 1614265330",
            "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ]
        .join(line_end);
        [format!("{head}{line_end}{line_end}").into_bytes(), body.to_vec()].concat()
    }

    #[test]
    fn a_raw_request_with_crlf_or_lf_verifies_and_its_body_is_the_bytes_after_the_blank_line() {
        for line_end in ["\r\n", "\n"] {
            let raw = request(line_end, BODY);
            let (head, body) = split_request(&raw);
            assert_eq!(body, BODY);
            let headers = parse_headers(&head);
            assert_eq!(headers.id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"), "names in any case");
            assert!(check(SECRET, &headers, body, SENT + 10, 300).is_ok());
        }
    }

    #[test]
    fn a_tampered_or_stale_or_unsigned_delivery_says_why() {
        let raw = request("\r\n", BODY);
        let (head, _) = split_request(&raw);
        let headers = parse_headers(&head);
        let reason = |headers: &SignatureHeaders, body: &[u8], now| check(SECRET, headers, body, now, 300).unwrap_err();
        let tampered = reason(&headers, br#"{"test": 1}"#, SENT);
        assert!(matches!(tampered, CliError::Invalid(_)));
        assert_eq!(
            tampered.to_string(),
            "invalid: no signature in webhook-signature matches this secret, id, timestamp and body"
        );
        assert!(
            reason(&headers, BODY, SENT + 3600)
                .to_string()
                .starts_with("invalid: webhook-timestamp is 3600 s in the past")
        );
        let unsigned = SignatureHeaders { signature: None, ..parse_headers(&head) };
        assert_eq!(reason(&unsigned, BODY, SENT).to_string(), "invalid: no webhook-signature header");
        let bad_secret = check("not-a-secret", &headers, BODY, SENT, 300).unwrap_err();
        assert!(matches!(bad_secret, CliError::Usage(_)), "a wrong --secret is a usage error, not an invalid delivery");
    }
}
