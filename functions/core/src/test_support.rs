//! What unit tests across the core share: one tenant, no quota in the way, a signing key.

use crate::domain::quota::TenantQuota;
use crate::domain::tenant::TenantId;
use crate::domain::webhook_signature::WebhookSigningKey;

pub fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

/// A quota no test reaches, for tests about something else.
pub const NO_QUOTA: TenantQuota = TenantQuota { max_open_images: u64::MAX };

pub fn signing_key() -> WebhookSigningKey {
    WebhookSigningKey::new(b"a test signing key of at least 32 bytes").unwrap()
}
