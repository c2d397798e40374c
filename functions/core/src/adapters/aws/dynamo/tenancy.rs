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
        // The index keeps keys only (template.yaml), so the requests are read from the table.
        let entries = output.items();
        let found = self.read_requests(entries).await?;
        let requests = in_index_order(entries, found)
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        // Where the index stopped, even if its last request has gone from the table since.
        let next = match (output.last_evaluated_key(), entries.last()) {
            (Some(_), Some(last)) => Some(page_end(last)?),
            _ => None,
        };
        Ok((requests, next))
    }
}

/// Keys per BatchGetItem call, DynamoDB's most.
const BATCH_GET_KEYS: usize = 100;

impl DynamoTable {
    /// The request items the index `entries` name, by `pk`, in BatchGetItem calls of at most
    /// 100 keys; the keys DynamoDB leaves unprocessed (when throttled) are asked for again.
    /// Eventually consistent, like the index itself; a request gone meanwhile (TTL) is absent.
    async fn read_requests(&self, entries: &[Item]) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::with_capacity(entries.len());
        let keys = entries.iter().filter_map(|entry| entry.get("pk"));
        let keys: Vec<Item> =
            keys.map(|pk| HashMap::from([("pk".into(), pk.clone()), ("sk".into(), s(REQUEST_SK))])).collect();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut wanted = chunk.to_vec();
            let mut attempt = 1;
            while !wanted.is_empty() {
                let keys = KeysAndAttributes::builder().set_keys(Some(wanted)).build().map_err(refused)?;
                let (items, unprocessed) = self.batch_get(keys).await?;
                for item in items {
                    if let Some(AttributeValue::S(pk)) = item.get("pk") {
                        found.insert(pk.clone(), item);
                    }
                }
                wanted = unprocessed;
                if !wanted.is_empty() {
                    if attempt == CONFLICT_ATTEMPTS {
                        let detail = "part of a listing's read stayed unprocessed".to_string();
                        return Err(StoreError::Unavailable { service: "DynamoDB", detail });
                    }
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(found)
    }
}

/// The items `found` (by `pk`) in the order of the index `entries` that named them (BatchGetItem
/// answers in any order); an entry whose item was not found is left out.
fn in_index_order(entries: &[Item], mut found: HashMap<String, Item>) -> Vec<Item> {
    let pk_of = |entry: &Item| match entry.get("pk") {
        Some(AttributeValue::S(pk)) => Some(pk.clone()),
        _ => None,
    };
    entries.iter().filter_map(|entry| found.remove(&pk_of(entry)?)).collect()
}

/// Where a page ends, from the index entry of its last request (`created_at` and `pk`).
fn page_end(entry: &Item) -> Result<RequestPage, StoreError> {
    let created_at = match entry.get("created_at") {
        Some(AttributeValue::S(text)) => DateTime::parse_from_rfc3339(text).ok().map(|time| time.with_timezone(&Utc)),
        _ => None,
    };
    let request_id = match entry.get("pk") {
        Some(AttributeValue::S(pk)) => pk.strip_prefix("REQ#").and_then(|id| id.parse().ok()),
        _ => None,
    };
    match (created_at, request_id) {
        (Some(created_at), Some(request_id)) => Ok(RequestPage { created_at, request_id }),
        _ => Err(refused("a TenantRequests entry without a request's created_at and pk")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An index entry of the request `id` as the keys-only `TenantRequests` holds it.
    fn entry(id: RequestId, created_at: DateTime<Utc>) -> Item {
        HashMap::from([
            (TENANT_REQUESTS_KEY.into(), s("acme")),
            ("created_at".into(), s(timestamp(created_at))),
            ("pk".into(), pk(id)),
            ("sk".into(), s(REQUEST_SK)),
        ])
    }

    fn request_item(id: RequestId) -> (String, Item) {
        let item = HashMap::from([("pk".into(), pk(id)), ("status".into(), s("processing"))]);
        (format!("REQ#{id}"), item)
    }

    #[test]
    fn requests_read_in_any_order_come_back_in_the_index_order_without_the_missing_ones() {
        let now = Utc::now();
        let ids: Vec<RequestId> = (0..4).map(|_| RequestId::new_random()).collect();
        let entries: Vec<Item> =
            ids.iter().enumerate().map(|(i, id)| entry(*id, now - chrono::Duration::minutes(i as i64))).collect();
        // BatchGetItem's answer, reversed, without the third (removed by TTL meanwhile).
        let found = HashMap::from([request_item(ids[3]), request_item(ids[1]), request_item(ids[0])]);
        let ordered = in_index_order(&entries, found);
        let pks: Vec<&AttributeValue> = ordered.iter().map(|item| &item["pk"]).collect();
        assert_eq!(pks, [&pk(ids[0]), &pk(ids[1]), &pk(ids[3])]);
    }

    #[test]
    fn a_page_ends_at_its_last_index_entry_and_starts_the_next_query_there() {
        let id = RequestId::new_random();
        let created_at = "2026-11-30T11:20:01.123456Z".parse::<DateTime<Utc>>().unwrap();
        let end = page_end(&entry(id, created_at)).unwrap();
        assert_eq!(end, RequestPage { created_at, request_id: id });
        // The next query's ExclusiveStartKey names the same index entry.
        assert_eq!(s(timestamp(end.created_at)), entry(id, created_at)["created_at"]);
    }

    #[test]
    fn an_index_entry_without_a_request_key_is_refused() {
        let mut broken = entry(RequestId::new_random(), Utc::now());
        broken.insert("pk".into(), s("TENANT#acme"));
        assert!(matches!(page_end(&broken), Err(StoreError::Refused { .. })));
        broken.remove("created_at");
        assert!(matches!(page_end(&broken), Err(StoreError::Refused { .. })));
    }
}
