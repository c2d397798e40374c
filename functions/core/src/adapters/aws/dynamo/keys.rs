//! API keys (`pk = KEY#<key id>`, `sk = KEY`) and tenants (`pk = TENANT#<tenant>`, `sk = TENANT`)
//! in the request table. Key items carry no `expires_at`: they live until revoked, and revoked
//! ones stay, so an id is never reused.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::*;
use crate::domain::api_key::{KeyRecord, KeyStatus};
use crate::domain::tenant::TenantId;
use crate::ports::{AuthenticateKeys, KnownTenants, ManageKeys};

const KEY_SK: &str = "KEY";
const TENANT_SK: &str = "TENANT";

fn key_key(key_id: &str) -> Item {
    HashMap::from([("pk".into(), s(format!("KEY#{key_id}"))), ("sk".into(), s(KEY_SK))])
}

pub(super) fn tenant_key(tenant: &TenantId) -> Item {
    HashMap::from([("pk".into(), s(format!("TENANT#{tenant}"))), ("sk".into(), s(TENANT_SK))])
}

#[async_trait]
impl AuthenticateKeys for DynamoTable {
    async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let item = self.read_item(key_key(key_id)).await?;
        item.map(|item| serde_dynamo::from_item(item).map_err(corrupt)).transpose()
    }

    async fn record_key_use(&self, key_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_key(key_id)))
            .update_expression("SET last_used_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", s(timestamp(now)))
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(())
    }
}

#[async_trait]
impl ManageKeys for DynamoTable {
    async fn add_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(record).map_err(corrupt)?;
        item.extend(key_key(&record.key_id));
        item.insert("created_at".into(), s(timestamp(record.created_at)));
        let key = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Refused { service: "DynamoDB", detail: e.to_string() })?;
        // The tenant's item makes it known (dropped CSVs name their tenant by their key).
        let mut tenant = tenant_key(&record.tenant_id);
        tenant.insert("tenant_id".into(), s(record.tenant_id.as_str()));
        let tenant = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(tenant))
            .update_expression("SET tenant_id = :tenant, created_at = if_not_exists(created_at, :now)")
            .expression_attribute_values(":tenant", s(record.tenant_id.as_str()))
            .expression_attribute_values(":now", s(timestamp(record.created_at)))
            .build()
            .map_err(|e| StoreError::Refused { service: "DynamoDB", detail: e.to_string() })?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(key).build())
            .transact_items(TransactWriteItem::builder().update(tenant).build())
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(())
    }

    async fn revoke_key(&self, key_id: &str) -> Result<Transition, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_key(key_id)))
            .update_expression("SET #status = :revoked")
            .condition_expression("attribute_exists(pk) AND #status <> :revoked")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":revoked", s("revoked"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                match self.key(key_id).await? {
                    Some(key) if key.status == KeyStatus::Revoked => Ok(Transition::AlreadyDone),
                    _ => Err(StoreError::Refused { service: "DynamoDB", detail: format!("no key {key_id}") }),
                }
            }
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :key")
            .expression_attribute_values(":key", s(KEY_SK))
            .into_paginator()
            .items()
            .send();
        let items: Vec<Item> = pages.try_collect().await.map_err(|e| store_error("DynamoDB", e))?;
        items.into_iter().map(|item| serde_dynamo::from_item(item).map_err(corrupt)).collect()
    }
}

#[async_trait]
impl KnownTenants for DynamoTable {
    async fn is_known(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        Ok(self.read_item(tenant_key(tenant)).await?.is_some())
    }
}
