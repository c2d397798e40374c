//! What an operator does with keys, without the console: create one for a tenant (shown once),
//! list them (never their secrets), revoke one.

use chrono::Utc;

use crate::domain::api_key::{ApiKey, KeyRecord};
use crate::domain::errors::StoreError;
use crate::domain::request::Transition;
use crate::domain::tenant::TenantId;
use crate::ports::ManageKeys;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no random bytes for the key: {0}")]
    NoRandomness(getrandom::Error),
}

/// A new active key for `tenant`: the returned key is the only time its secret exists outside
/// the caller's hands.
pub async fn create_key(keys: &dyn ManageKeys, tenant: TenantId) -> Result<(ApiKey, KeyRecord), KeyError> {
    let key = ApiKey::generate().map_err(KeyError::NoRandomness)?;
    let record = KeyRecord::new(&key, tenant, Utc::now());
    keys.add_key(&record).await?;
    Ok((key, record))
}

/// Every key, oldest first, of one tenant or of all.
pub async fn list_keys(keys: &dyn ManageKeys, tenant: Option<&TenantId>) -> Result<Vec<KeyRecord>, StoreError> {
    let mut listed: Vec<KeyRecord> =
        keys.keys().await?.into_iter().filter(|key| tenant.is_none_or(|t| &key.tenant_id == t)).collect();
    listed.sort_by_key(|key| key.created_at);
    Ok(listed)
}

pub async fn revoke_key(keys: &dyn ManageKeys, key_id: &str) -> Result<Transition, StoreError> {
    keys.revoke_key(key_id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryTable;
    use crate::domain::api_key::KeyStatus;
    use crate::ports::{AuthenticateKeys, KnownTenants};

    #[tokio::test]
    async fn keys_are_created_listed_by_tenant_and_revoked_once() {
        let table = MemoryTable::default();
        let (acme, globex): (TenantId, TenantId) = ("acme".parse().unwrap(), "globex".parse().unwrap());
        let (first, _) = create_key(&table, acme.clone()).await.unwrap();
        create_key(&table, globex.clone()).await.unwrap();
        create_key(&table, acme.clone()).await.unwrap();

        let listed = list_keys(&table, Some(&acme)).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].key_id, first.key_id());
        assert!(table.is_known(&globex).await.unwrap());
        assert!(!table.is_known(&"initech".parse().unwrap()).await.unwrap());

        assert_eq!(revoke_key(&table, first.key_id()).await.unwrap(), Transition::Applied);
        assert_eq!(revoke_key(&table, first.key_id()).await.unwrap(), Transition::AlreadyDone);
        assert_eq!(table.key(first.key_id()).await.unwrap().unwrap().status, KeyStatus::Revoked);
        assert!(revoke_key(&table, "0123456789abcdef").await.is_err(), "no such key");
    }
}
