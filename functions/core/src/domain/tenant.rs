//! A tenant: one caller of the API (a company, a team), owner of its keys and its requests.
//! Its id names its part of the bucket (`tenants/<tenant>/...`, `incoming/<tenant>/...`) and is
//! stamped on every request it makes, so it is kept to characters that are safe in S3 keys and
//! log lines alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// 1-40 characters: lower-case letters, digits and `-`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

pub const MAX_TENANT_ID_LENGTH: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tenant id ({0}): use 1-40 lower-case letters, digits and '-', starting with a letter or digit")]
pub struct InvalidTenantId(String);

impl FromStr for TenantId {
    type Err = InvalidTenantId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = !text.is_empty()
            && text.len() <= MAX_TENANT_ID_LENGTH
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !text.starts_with('-');
        if valid { Ok(Self(text.to_string())) } else { Err(InvalidTenantId(text.chars().take(60).collect())) }
    }
}

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_safe_in_keys_and_logs() {
        for good in ["acme", "acme-retail", "t1", "0day", &"a".repeat(40)] {
            assert!(good.parse::<TenantId>().is_ok(), "{good}");
        }
        for bad in ["", "Acme", "acme/retail", "acme_retail", "-acme", "acme retail", "ac.me", &"a".repeat(41), "é"] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad}");
        }
    }
}
