//! The identity of one uploaded CSV and everything made from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A random UUIDv4, so ids cannot be guessed from one another (or, for a CSV dropped into the
/// bucket, a UUIDv8 from a hash that includes S3's sequencer for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(Uuid);

#[derive(Debug, thiserror::Error)]
#[error("not a request id (expected a UUID)")]
pub struct InvalidRequestId;

impl RequestId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// A UUIDv8 from 16 bytes of a hash: for an id that must come out the same every time
    /// (see `dropped_csv`). The version and variant bits overwrite 6 of the 128.
    pub fn from_bytes_v8(bytes: [u8; 16]) -> Self {
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

impl FromStr for RequestId {
    type Err = InvalidRequestId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidRequestId)
    }
}

impl TryFrom<String> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = RequestId::new_random();
        assert_eq!(id.to_string().parse::<RequestId>().unwrap(), id);
    }

    #[test]
    fn rejects_anything_but_a_uuid() {
        assert!("../etc/passwd".parse::<RequestId>().is_err());
        assert!("".parse::<RequestId>().is_err());
    }
}
