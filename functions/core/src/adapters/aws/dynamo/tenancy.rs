//! What the table keeps per tenant: its open images against its quota (on the tenant's item,
//! `pk = TENANT#<tenant>`), its requests newest first (the `TenantRequests` index), and its
//! upload idempotency keys (`pk = IDEM#<tenant>#<key>`, `sk = IDEM`, kept 24 hours by TTL and
//! checked on read, since TTL deletion lags).

use super::keys::tenant_key;
use super::*;
use crate::domain::idempotency::{IDEMPOTENCY_LIFETIME, IN_PROGRESS_LEASE, IdempotencyRecord, StoredAnswer};
use crate::domain::quota::TenantQuota;
use crate::domain::tenant::TenantId;
use crate::ports::{Admission, CreateRequest, IdempotencyKeys, ListRequests, RequestPage};

const IDEMPOTENCY_SK: &str = "IDEM";

fn refused(error: impl ToString) -> StoreError {
    StoreError::Refused { service: "DynamoDB", detail: error.to_string() }
}

impl DynamoTable {
    /// The update that gives `images` back to the tenant's quota.
    pub(super) fn give_back_images(&self, tenant: &TenantId, images: u64) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(tenant_key(tenant)))
            .update_expression("ADD open_images :minus")
            .expression_attribute_values(":minus", AttributeValue::N(format!("-{images}")))
            .build()
            .map_err(refused)
    }

    fn idempotency_key(record: &IdempotencyRecord) -> Item {
        let pk = format!("IDEM#{}#{}", record.tenant_id, record.key);
        HashMap::from([("pk".into(), s(pk)), ("sk".into(), s(IDEMPOTENCY_SK))])
    }
}

#[async_trait]
impl CreateRequest for DynamoTable {
    async fn create(&self, request: &RequestRecord, quota: &TenantQuota) -> Result<Admission, StoreError> {
        // A retry holds only the images it processes (`RequestRecord::open_images`).
        let images = request.open_images();
        if !quota.admits(0, images) {
            return Ok(Admission::OverQuota);
        }
        let item = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.request_item(request)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(refused)?;
        // The images are taken from the quota only if they fit: open + total <= max.
        let room = quota.max_open_images - images;
        let take = Update::builder()
            .table_name(&self.table)
            .set_key(Some(tenant_key(&request.tenant_id)))
            .update_expression("ADD open_images :images")
            .condition_expression("attribute_not_exists(open_images) OR open_images <= :room")
            .expression_attribute_values(":images", n(images))
            .expression_attribute_values(":room", n(room))
            .build()
            .map_err(refused)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(item).build())
            .transact_items(TransactWriteItem::builder().update(take).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Admission::Created),
            Err(error) if cancellation_codes(&error).get(1) == Some(&Some("ConditionalCheckFailed")) => {
                Ok(Admission::OverQuota)
            }
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }
}

#[async_trait]
impl ListRequests for DynamoTable {
    async fn requests_of(
        &self,
        tenant: &TenantId,
        after: Option<&RequestPage>,
        limit: u32,
    ) -> Result<(Vec<RequestRecord>, Option<RequestPage>), StoreError> {
        let start = after.map(|page| {
            HashMap::from([
                (TENANT_REQUESTS_KEY.to_string(), s(tenant.as_str())),
                ("created_at".into(), s(timestamp(page.created_at))),
                ("pk".into(), pk(page.request_id)),
                ("sk".into(), s(REQUEST_SK)),
            ])
        });
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TENANT_REQUESTS_INDEX)
            .key_condition_expression("#tenant = :tenant")
            .expression_attribute_names("#tenant", TENANT_REQUESTS_KEY)
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .scan_index_forward(false)
            .limit(limit.max(1) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        let requests: Vec<RequestRecord> = output
            .items()
            .iter()
            .map(|item| serde_dynamo::from_item(item.clone()).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let next = match (output.last_evaluated_key(), requests.last()) {
            (Some(_), Some(last)) => Some(RequestPage { created_at: last.created_at, request_id: last.request_id }),
            _ => None,
        };
        Ok((requests, next))
    }
}

#[async_trait]
impl IdempotencyKeys for DynamoTable {
    async fn claim_key(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut item: Item = serde_dynamo::to_item(record).map_err(corrupt)?;
        item.extend(Self::idempotency_key(record));
        // Timestamps in the one fixed format, compared as strings by the condition below.
        item.insert("replay_until".into(), s(timestamp(record.replay_until)));
        item.insert("started_at".into(), s(timestamp(record.started_at)));
        // TTL removes the record some time after it can no longer be replayed.
        item.insert("expires_at".into(), n((record.started_at + IDEMPOTENCY_LIFETIME).timestamp()));
        // `IdempotencyRecord::meet`'s `Expired`, as a condition: no record, a record past its
        // time, or one whose upload never answered and has held it longer than its lease.
        let condition = "attribute_not_exists(pk) OR replay_until <= :now \\
                         OR (attribute_not_exists(answer) AND started_at <= :lease_start)";
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_values(":now", s(timestamp(now)))
            .expression_attribute_values(":lease_start", s(timestamp(now - IN_PROGRESS_LEASE)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                let item =
                    self.read_item(Self::idempotency_key(record)).await?.ok_or_else(|| StoreError::Unavailable {
                        service: "DynamoDB",
                        detail: "the idempotency record changed while it was read".into(),
                    })?;
                Ok(Some(serde_dynamo::from_item(item).map_err(corrupt)?))
            }
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }

    async fn complete_key(&self, record: &IdempotencyRecord, answer: &StoredAnswer) -> Result<(), StoreError> {
        let answer: AttributeValue = serde_dynamo::to_attribute_value(answer).map_err(corrupt)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::idempotency_key(record)))
            .update_expression("SET answer = :answer")
            .condition_expression("started_at = :started")
            .expression_attribute_values(":answer", answer)
            .expression_attribute_values(":started", s(timestamp(record.started_at)))
            .send()
            .await
            .map_err(|e| store_error("DynamoDB", e))?;
        Ok(())
    }

    async fn release_key(&self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::idempotency_key(record)))
            .update_expression("SET replay_until = started_at")
            .condition_expression("started_at = :started AND attribute_not_exists(answer)")
            .expression_attribute_values(":started", s(timestamp(record.started_at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another upload holds the key now, or this one was answered: nothing to free.
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(error) => Err(store_error("DynamoDB", error)),
        }
    }
}
