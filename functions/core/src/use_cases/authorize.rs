//! The authorizer's one question: which tenant, if any, does this `Authorization` header speak
//! for? A missing or malformed key, an unknown one, a wrong secret and a revoked key all get
//! the same "no" (the caller learns nothing about which it was); the log line says which.

use chrono::{DateTime, Utc};

use crate::domain::api_key::ApiKey;
use crate::domain::errors::StoreError;
use crate::domain::tenant::TenantId;
use crate::ports::AuthenticateKeys;

/// Who a request comes from, once its key is admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub key_id: String,
}

/// `Ok(None)` when the key is refused; `Err` when the table could not be read (the caller is
/// then refused too, by the authorizer's error).
pub async fn authorize(
    keys: &dyn AuthenticateKeys,
    authorization: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Caller>, StoreError> {
    let Some(key) = authorization.and_then(|header| ApiKey::from_authorization(header).ok()) else {
        tracing::info!(stage = "authorize", outcome = "malformed");
        return Ok(None);
    };
    let Some(record) = keys.key(key.key_id()).await? else {
        tracing::info!(stage = "authorize", key_id = key.key_id(), outcome = "unknown");
        return Ok(None);
    };
    if !record.admits(&key) {
        tracing::info!(stage = "authorize", key_id = key.key_id(), outcome = "refused");
        return Ok(None);
    }
    if record.use_worth_recording(now)
        && let Err(error) = keys.record_key_use(key.key_id(), now).await
    {
        // Bookkeeping: the key is good whether or not its last use could be written.
        tracing::warn!(stage = "authorize", key_id = key.key_id(), error = %error, "last use not recorded");
    }
    Ok(Some(Caller { tenant_id: record.tenant_id, key_id: record.key_id }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryTable;
    use crate::domain::api_key::KeyRecord;
    use crate::ports::ManageKeys;

    async fn table_with_key() -> (MemoryTable, ApiKey) {
        let table = MemoryTable::default();
        let key = ApiKey::generate().unwrap();
        table.add_key(&KeyRecord::new(&key, "acme".parse().unwrap(), Utc::now())).await.unwrap();
        (table, key)
    }

    #[tokio::test]
    async fn a_good_key_speaks_for_its_tenant_and_its_use_is_recorded() {
        let (table, key) = table_with_key().await;
        let now = Utc::now();
        let caller = authorize(&table, Some(&format!("Bearer {}", key.reveal())), now).await.unwrap();
        assert_eq!(caller, Some(Caller { tenant_id: "acme".parse().unwrap(), key_id: key.key_id().into() }));
        assert_eq!(table.key(key.key_id()).await.unwrap().unwrap().last_used_at, Some(now));
    }

    #[tokio::test]
    async fn missing_malformed_unknown_wrong_and_revoked_keys_are_all_refused() {
        let (table, key) = table_with_key().await;
        let now = Utc::now();
        let wrong_secret = format!("ik_{}_{}", key.key_id(), "0".repeat(64));
        let unknown = ApiKey::generate().unwrap().reveal();
        for header in [None, Some("Bearer nope"), Some(unknown.as_str()), Some(wrong_secret.as_str())] {
            assert_eq!(authorize(&table, header, now).await.unwrap(), None, "{header:?}");
        }
        table.revoke_key(key.key_id()).await.unwrap();
        assert_eq!(authorize(&table, Some(&key.reveal()), now).await.unwrap(), None, "revoked");
    }
}
